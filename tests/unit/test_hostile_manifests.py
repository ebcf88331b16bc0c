"""Every hostile deploy.yaml is one ManifestError sentence, and `drophost check` prints just that line."""

from __future__ import annotations

from pathlib import Path

import pytest

from drophost.cli import main
from drophost.errors import ManifestError
from drophost.gitops.manifest import parse
from tests.harness.manifests import HOSTILE, Hostile


@pytest.mark.parametrize("case", HOSTILE, ids=[case.name for case in HOSTILE])
def test_a_hostile_file_is_one_sentence_with_its_line(case: Hostile) -> None:
    with pytest.raises(ManifestError) as caught:
        parse(case.raw)
    assert caught.value.message.startswith(case.starts), caught.value.message
    assert case.says in caught.value.message
    assert caught.value.status_code == 422
    assert caught.value.message.isprintable()  # never the offending byte itself


@pytest.mark.parametrize("case", HOSTILE, ids=[case.name for case in HOSTILE])
def test_drophost_check_prints_one_line_and_no_traceback(
    case: Hostile, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "deploy.yaml"
    file.write_bytes(case.raw)
    assert main(["check", str(file)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith(case.starts), captured.err
    assert "Traceback" not in captured.err


def test_a_utf8_bom_is_accepted() -> None:
    assert parse(b"\xef\xbb\xbfsites: []\n").sites == ()
