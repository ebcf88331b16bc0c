from __future__ import annotations

import json
from pathlib import Path

import pytest

from drophost.gitops.build import inside_tree
from drophost.pipeline import sandbox
from drophost.pipeline.remotebuild import decode_job, encode_job
from drophost.settings import Settings

LIMITS = sandbox.Limits(cpu_seconds=60, memory_bytes=1 << 30, processes=64, open_files=256, file_bytes=1 << 20)


def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, build_tools="/opt/tools")


def job(tmp_path: Path, **changes: object) -> sandbox.Job:
    builds = settings(tmp_path).builds_dir
    fields: dict[str, object] = {
        "command": ("hugo", "--minify"),
        "tree": builds / "work" / "12",
        "workdir": "site",
        "caches": ((builds / "cache" / "docs" / "0123456789abcdef", "resources/_gen"),),
        "env": (("DROPHOST_SLOT", "docs"),),
        "network": False,
        "tools": (Path("/elsewhere"),),
    }
    fields.update(changes)
    return sandbox.Job(**fields)  # type: ignore[arg-type]


def test_a_job_travels_to_the_builder_and_gets_the_builders_own_tools(tmp_path: Path) -> None:
    sent = job(tmp_path)
    request = decode_job(encode_job(sent, LIMITS, 600), settings(tmp_path))
    assert request.job == job(tmp_path, tools=(Path("/opt/tools"),))
    assert (request.limits, request.timeout) == (LIMITS, 600)


@pytest.mark.parametrize(
    "change",
    [
        {"tree": Path("/etc")},
        {"tree": Path("/tmp/builds/work/x")},
        {"workdir": "../escape"},
        {"workdir": "/abs"},
        {"caches": ((Path("/var/lib/secret/x"), "cache"),)},
        {"caches": ((Path("/tmp"), "../out"),)},
        {"command": ()},
    ],
)
def test_the_builder_binds_only_folders_of_its_builds_area(tmp_path: Path, change: dict[str, object]) -> None:
    body = json.loads(encode_job(job(tmp_path), LIMITS, 600))
    body.update(json.loads(encode_job(job(tmp_path, **change), LIMITS, 600)))
    with pytest.raises(ValueError):
        decode_job(json.dumps(body).encode(), settings(tmp_path))


@pytest.mark.parametrize(
    ("name", "folder", "inside"),
    [
        ("a/b.txt", "", True),
        ("../b", "", False),
        ("/etc/passwd", "", False),
        ("../x", "docs", True),
        ("../../x", "docs", False),
        (".", "docs", True),
    ],
)
def test_inside_tree(name: str, folder: str, inside: bool) -> None:
    assert inside_tree(name, folder) is inside
