"""The pieces of a hosted push deployed in pre-receive that need no git server: the quarantine folder a
hook may name, secrets masked in build lines, how long a push waits, and which drafts the refs git
moved make live."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from drophost.errors import ValidationError
from drophost.gitops import manifest
from drophost.gitops.build import mask
from drophost.gitops.hosted import HostedRepos, hook_text
from drophost.gitops.intake import push_timeouts
from drophost.gitops.landing import moved_targets
from drophost.gitops.mirror import GitSource
from drophost.settings import Settings


@pytest.fixture
def hosted(tmp_path: Path) -> HostedRepos:
    settings = Settings(data_dir=tmp_path)
    hosted = HostedRepos(settings, GitSource(settings))
    for name in ("handbook", "other"):
        (hosted.path(name) / "objects" / "tmp_objdir-incoming-AbC123").mkdir(parents=True)
    (hosted.path("handbook") / "objects" / "pack").mkdir()
    return hosted


def test_the_quarantine_of_the_repositorys_own_push_is_accepted(hosted: HostedRepos) -> None:
    folder = hosted.path("handbook") / "objects" / "tmp_objdir-incoming-AbC123"
    assert hosted.quarantine("handbook", str(folder)) == folder.resolve()
    # git names it through the repository folder's "./": the same folder
    dotted = f"{hosted.path('handbook')}/./objects/tmp_objdir-incoming-AbC123"
    assert hosted.quarantine("handbook", dotted) == folder.resolve()


@pytest.mark.parametrize(
    "named",
    [
        "{other}/objects/tmp_objdir-incoming-AbC123",  # another repository's push
        "{handbook}/objects/pack",  # not a quarantine
        "{handbook}/objects/tmp_objdir-incoming-missing",
        "{handbook}/objects/tmp_objdir-incoming-AbC123/../../../other/objects/tmp_objdir-incoming-AbC123",
        "objects/tmp_objdir-incoming-AbC123",  # relative
        "",
    ],
)
def test_any_other_folder_is_refused(hosted: HostedRepos, named: str) -> None:
    raw = named.format(handbook=hosted.path("handbook"), other=hosted.path("other"))
    with pytest.raises(ValidationError, match="quarantine folder"):
        hosted.quarantine("handbook", raw)


def test_a_quarantine_that_is_not_text_is_refused(hosted: HostedRepos) -> None:
    with pytest.raises(ValidationError):
        hosted.quarantine("handbook", ["/"])


def test_secret_values_are_masked_in_build_lines_longest_first() -> None:
    assert mask("token=abc123 and abc123 again", ["abc123"]) == "token=*** and *** again"
    assert mask("abc123456", ["abc", "abc123456"]) == "***"
    assert mask("nothing here", []) == "nothing here"


def test_a_push_waits_for_a_worker_then_for_a_whole_build(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, build_max_timeout=600, git_timeout=300)
    queued, total = push_timeouts(settings)
    assert queued == 600 + 2 * 300
    assert total == queued + 600 + 2 * 300 + 60


MOVED = """
sites:
  - slot: handbook
    repo: hosted:handbook
    branch: main
  - slot: "handbook-{branch}"
    repo: hosted:handbook
    branches: ["feature/*"]
  - slot: releases
    repo: hosted:handbook
    tags: "v*"
"""


def test_the_refs_git_moved_name_the_drafts_pre_receive_made() -> None:
    sites = manifest.parse(MOVED.encode(), "deploy.yaml").sites
    a, b, c, d = ("a" * 40, "b" * 40, "c" * 40, "d" * 40)
    updates = [
        ("0" * 40, a, "refs/heads/main"),
        ("0" * 40, b, "refs/heads/feature/x"),
        ("0" * 40, c, "refs/tags/v1.9"),
        ("0" * 40, d, "refs/tags/v1.10"),
        (a, "0" * 40, "refs/heads/feature/gone"),  # deleted: post-receive takes its preview offline
        ("0" * 40, a, "refs/heads/elsewhere"),  # no site follows it
    ]
    moved = [(target.slot, target.branch, target.ref, pushed) for target, pushed in moved_targets(sites, updates)]
    assert moved == [
        ("releases", "refs/tags/v1.10", "refs/tags/v1.10", d),  # only the newest pushed tag
        ("handbook", "main", None, a),
        ("handbook-feature-x", "feature/x", None, b),
    ]


HOOK = '#!/usr/bin/env python3\n"""A hook."""\nimport sys\n'


def test_hooks_are_installed_to_run_with_the_services_own_python_isolated() -> None:
    installed = hook_text(HOOK, "/opt/drophost/.venv/bin/python")
    assert installed == HOOK.replace("/usr/bin/env python3", "/opt/drophost/.venv/bin/python -IS")


@pytest.mark.parametrize(
    "interpreter",
    ["", "python3", "/opt/my tools/python", "/" + "x" * 200 + "/python"],  # unknown, relative, a space, too long
)
def test_an_interpreter_a_shebang_cannot_name_keeps_the_packaged_line(interpreter: str) -> None:
    assert hook_text(HOOK, interpreter) == HOOK


def test_the_installed_hooks_are_the_packaged_ones_after_their_first_line(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    hosted = HostedRepos(settings, GitSource(settings))
    path = hosted.ensure("handbook")
    for hook in ("pre-receive", "post-receive"):
        packaged = (Path(__file__).parents[2] / "hooks" / hook).read_text()
        installed = (path / "hooks" / hook).read_text()
        assert installed.partition("\n")[2] == packaged.partition("\n")[2]
        assert installed.startswith(f"#!{sys.executable} -IS\n")
        assert (path / "hooks" / hook).stat().st_mode & 0o777 == 0o755
