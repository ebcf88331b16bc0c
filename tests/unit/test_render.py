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
from drophost.pipeline.nginxconfig import (
    release_link_target,
    render_main_config,
    render_site_config,
    site_entry,
    template_environment,
)
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


def test_versions_of_a_slot_share_one_entry_so_switching_them_moves_only_the_link() -> None:
    env = template_environment()
    one = render_site_config(env, slot="demo", version=1, release_dir=Path("/srv/r/demo/1"), deployment_id=1)
    two = render_site_config(env, slot="demo", version=2, release_dir=Path("/srv/r/demo/7"), deployment_id=7)
    assert one.text != two.text
    assert site_entry(one.text) == site_entry(two.text) == "demo live;\n"
    assert site_entry('# a comment\n\n  other "1:/x";  \n') == 'other "1:/x";\n'


@pytest.mark.parametrize(
    ("stored", "target"),
    [("/srv/r/demo/7", "../releases/demo/7"), ("/moved/elsewhere/releases/a-b/12", "../releases/a-b/12")],
)
def test_a_release_link_is_relative_and_built_only_from_checked_parts(stored: str, target: str) -> None:
    assert release_link_target(stored) == target


@pytest.mark.parametrize("stored", ["/srv/r/Demo/7", "/srv/r/demo/..", "/srv/r/demo/7x", "7", "/srv/r/.incoming/7"])
def test_a_release_link_refuses_anything_else(stored: str) -> None:
    with pytest.raises(DrophostError):
        release_link_target(stored)
