"""Sites following tags: version order, tag pushes of each provider, and no roll back."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from drophost.gitops import targets
from drophost.gitops.check import check
from drophost.gitops.manifest import parse
from drophost.gitops.plan import plan
from drophost.gitops.refs import matching_tags, newest, sorted_tags
from drophost.gitops.webhooks import PROVIDERS, Event, RefUpdate, parse_event

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"

# Oldest first: the order the README documents.
ORDERED = [
    "release",  # no digits at all: first
    "v0.9",
    "v1.0-alpha",
    "v1.0-alpha.2",
    "v1.0-alpha.10",
    "v1.0-beta",
    "v1.0-rc1",
    "v1.0",
    "v1.0.1",
    "v1.2",
    "v1.9",
    "v1.10",
    "v2.0-rc1",
    "v2.0-rc2",
    "v2.0-rc10",
    "v2.0",
    "v2.0.1",
    "v10.0",
]


def test_tags_sort_by_version() -> None:
    shuffled = ORDERED[:]
    random.Random(7).shuffle(shuffled)
    assert sorted_tags(shuffled) == ORDERED


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["v1.9", "v1.10"], "v1.10"),
        (["v2.0-rc1", "v2.0"], "v2.0"),
        (["v2.0", "v2.0-rc1"], "v2.0"),
        (["v2.0-rc2", "v2.0-rc10"], "v2.0-rc10"),
        (["v2.0rc1", "v1.99"], "v2.0rc1"),
        (["v3", "v2.9.9"], "v3"),
        (["v1.0+build.7", "v1.0.1"], "v1.0.1"),
        ([], None),
    ],
)
def test_the_newest_tag(tags: list[str], expected: str | None) -> None:
    assert newest(tags) == expected


def test_equal_versions_are_ordered_by_name() -> None:
    assert sorted_tags(["v2.0.0", "v2", "v2.0"]) == ["v2", "v2.0", "v2.0.0"]


def test_patterns_match_within_one_path_component() -> None:
    tags = ["v1.0", "v2.0-rc1", "docs/v1", "x1.0", "v1/beta"]
    assert matching_tags(tags, "v*") == ["v1.0", "v2.0-rc1"]
    assert matching_tags(tags, "docs/*") == ["docs/v1"]
    assert matching_tags(tags, "**") == tags


def read(provider: str, event: str, body: bytes) -> Event:
    p = PROVIDERS[provider]
    return parse_event(p, {p.event_headers[0]: event}, body)


def test_tag_pushes_of_each_provider_are_read() -> None:
    gitlab = read("gitlab", "Tag Push Hook", (FIXTURES / "gitlab_tag_push_hook.json").read_bytes())
    assert gitlab.updates == (RefUpdate("v1.0.0", False, "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7", tag=True),)

    # GitHub's published push example deletes a tag: never acted on.
    deleted = read("github", "push", (FIXTURES / "github_push_tag_deleted.json").read_bytes())
    assert deleted.kind == "ignored" and "never roll back" in deleted.reason
    created = json.loads((FIXTURES / "github_push_tag_deleted.json").read_bytes())
    created.update(deleted=False, created=True, after="a" * 40)
    github = read("github", "push", json.dumps(created).encode())
    assert github.updates == (RefUpdate("simple-tag", False, "a" * 40, tag=True),)

    gitea = json.loads((FIXTURES / "gitea_push.json").read_bytes())
    gitea["ref"] = "refs/tags/v1.2"
    assert read("gitea", "push", json.dumps(gitea).encode()).updates[0] == RefUpdate(
        "v1.2", False, gitea["after"], tag=True
    )

    cloud = json.loads((FIXTURES / "fixture_go-playground_bitbucket_cloud_repo-push.json").read_bytes())
    change = cloud["push"]["changes"][0]
    change["new"]["type"] = "tag"
    change["new"]["name"] = "v3.1"
    updates = read("bitbucket", "repo:push", json.dumps(cloud).encode()).updates
    assert updates[0].tag and updates[0].branch == "v3.1"

    server = json.loads((FIXTURES / "fixture_argocd_bitbucket_server_refs_changed.json").read_bytes())
    server["changes"][0]["ref"].update(type="TAG", id="refs/tags/v4")
    server["changes"][0]["refId"] = "refs/tags/v4"
    updates = read("bitbucket", "repo:refs_changed", json.dumps(server).encode()).updates
    assert updates[0] == RefUpdate("v4", False, server["changes"][0]["toHash"], tag=True)


SITES = parse(
    b'sites:\n  - slot: rel\n    repo: https://git.example.lan/a/b\n    tags: "v*"\n'
    b"  - slot: main\n    repo: https://git.example.lan/a/b\n"
).sites


def push(*updates: RefUpdate) -> Event:
    return Event("push", ("https://git.example.lan/a/b",), updates)


def test_a_tag_push_deploys_the_tag_site_only_when_it_is_not_older() -> None:
    given = {"rel": ["refs/tags/v1.9", "refs/tags/other-9.0"]}
    decision = targets.for_push(push(RefUpdate("v1.10", False, tag=True)), SITES, lambda s: given.get(s, []))
    assert [(t.slot, t.branch, t.ref) for t in decision.deploys] == [("rel", "refs/tags/v1.10", "refs/tags/v1.10")]
    decision = targets.for_push(push(RefUpdate("v1.8", False, tag=True)), SITES, lambda s: given.get(s, []))
    assert decision.deploys == () and decision.matched
    assert decision.refused == ("tag v1.8 is older than v1.9, which slot rel was given: a site following tags never"
                                " rolls back",)  # fmt: skip
    # The same tag again (moved to another commit) deploys again.
    decision = targets.for_push(push(RefUpdate("v1.9", False, tag=True)), SITES, lambda s: given.get(s, []))
    assert [t.slot for t in decision.deploys] == ["rel"]


def test_branches_and_tags_do_not_mix() -> None:
    decision = targets.for_push(push(RefUpdate("main", False)), SITES, lambda s: [])
    assert [t.slot for t in decision.deploys] == ["main"]
    decision = targets.for_push(push(RefUpdate("main", False, tag=True)), SITES, lambda s: [])
    assert decision.deploys == () and not decision.matched


def test_check_and_plan_show_tag_and_pull_request_sites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "deploy.yaml"
    file.write_text(
        'sites:\n  - slot: "docs-pr-{pr}"\n    repo: https://git.example.lan/a/b\n'
        '  - slot: releases\n    repo: https://git.example.lan/a/b\n    tags: "v*"\n'
    )
    assert check(str(file), {}) == 0
    assert capsys.readouterr().out.splitlines() == [
        "deploy.yaml:2 pull requests docs-pr-{pr}: https://git.example.lan/a/b pull requests",
        "deploy.yaml:4 slot releases: https://git.example.lan/a/b tags v* (the newest by version)",
        "deploy.yaml: OK, 2 site(s)",
    ]
    manifest = parse(file.read_bytes())
    managed = [
        {"slot": "releases", "repo": "https://git.example.lan/a/b", "branch": "main", "path": "", "template": None},
        {"slot": "docs-pr-3", "repo": "https://git.example.lan/a/b", "branch": "refs/pull/3/head", "path": "",
         "template": "docs-pr-{pr}"},
    ]  # fmt: skip
    assert plan(manifest, managed, {}).render().splitlines() == [
        "~ releases      branch main -> tags v*",
        "= docs-pr-{pr}  previews https://git.example.lan/a/b pull requests: one slot per open pull request",
        "= docs-pr-3     preview of pull request refs/pull/3/head",
        "Plan: 0 to deploy, 1 to change, 0 to take offline.",
    ]
