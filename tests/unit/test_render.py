"""Rendered nginx configs against case files: tests/fixtures/render/<case>.json in, <case>.conf out.

A case with "refused" must raise an error containing that text and has no .conf. To add a case,
write the .json, run the test, check the text it prints, and save it as the .conf.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from drophost.errors import DrophostError
from drophost.nginx import render_main_config, render_site_config, template_environment
from drophost.settings import Settings

CASES = Path(__file__).parent.parent / "fixtures" / "render"


def render(spec: dict[str, Any]) -> str:
    env = template_environment()
    args = spec["args"]
    if spec["template"] == "site":
        return render_site_config(
            env,
            slot=args["slot"],
            version=args["version"],
            release_dir=Path(args["release_dir"]),
            deployment_id=args["deployment_id"],
        ).text
    fields = dict(spec["settings"])
    settings = Settings(data_dir=Path(fields.pop("data_dir")), **fields)
    return render_main_config(env, settings, sites_map=args["sites_map"], worker_user=args["worker_user"])


def case_files() -> list[Path]:
    return sorted(CASES.glob("*.json"))


@pytest.mark.parametrize("case", case_files(), ids=lambda path: path.stem)
def test_rendered_config_matches_its_case_file(case: Path) -> None:
    spec = json.loads(case.read_text())
    expected = case.with_suffix(".conf")
    if "refused" in spec:
        with pytest.raises(DrophostError) as caught:
            render(spec)
        assert spec["refused"] in caught.value.message
        assert not expected.exists(), "a refused case has no expected output"
        return
    text = render(spec)
    assert expected.exists(), f"no {expected.name}; the rendered text is:\n{text}"
    assert text == expected.read_text()


def test_every_case_file_is_used() -> None:
    stems = {p.stem for p in case_files()}
    orphans = sorted(p.name for p in CASES.glob("*.conf") if p.stem not in stems)
    assert orphans == []
    assert len(stems) >= 10


def test_site_config_text_is_hashed_as_stored() -> None:
    env = template_environment()
    config = render_site_config(env, slot="demo", version=3, release_dir=Path("/srv/r/demo/3"), deployment_id=9)
    again = render_site_config(env, slot="demo", version=3, release_dir=Path("/srv/r/demo/3"), deployment_id=9)
    assert config.sha256 == again.sha256 and len(config.sha256) == 64
    other = render_site_config(env, slot="demo", version=4, release_dir=Path("/srv/r/demo/3"), deployment_id=9)
    assert other.sha256 != config.sha256
