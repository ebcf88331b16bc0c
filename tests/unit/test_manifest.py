from __future__ import annotations

from pathlib import Path

import pytest

from drophost.errors import ManifestError
from drophost.gitops.manifest import load_file, parse, preview_slot, secret_problems
from drophost.names import is_valid_slot

ROOT = Path(__file__).resolve().parents[2]
CASES = sorted((ROOT / "tests" / "fixtures" / "manifests").glob("*.yaml"))


def test_the_documented_example_is_valid() -> None:
    manifest = load_file(ROOT / "deploy.yaml")
    docs, previews, handbook = manifest.sites
    assert (docs.slot, docs.branch, docs.path) == ("docs", "main", "public")
    assert docs.webhook_secret_env == "DOCS_HOOK_SECRET"
    assert previews.is_preview and previews.ttl_seconds == 7 * 86400
    assert previews.wants("feature/new-nav") and not previews.wants("main") and not previews.wants("feature/a/b")
    assert handbook.repo.hosted_name == "handbook"
    assert manifest.poll_interval == 300
    assert manifest.allows("https://GIT.example.lan/team/blog.git")
    assert not manifest.allows("https://git.example.lan/other/blog.git")
    # The whole URL is matched: the scheme and user the pattern names, and only those.
    assert not manifest.allows("http://git.example.lan/team/blog.git")
    assert not manifest.allows("ssh://git@git.example.lan/team/blog.git")
    assert not manifest.allows("git@git.example.lan:team/blog.git")
    assert secret_problems(manifest, {}) == [
        "deploy.yaml:9 sites[0].webhook_secret_env: DOCS_HOOK_SECRET is not set",
        "deploy.yaml:17 sites[1].webhook_secret_env: DOCS_HOOK_SECRET is not set",
    ]
    assert secret_problems(manifest, {"DOCS_HOOK_SECRET": "s"}) == []


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_invalid_files_name_the_line_and_field(case: Path) -> None:
    expected = case.with_suffix(".error").read_text().strip()
    with pytest.raises(ManifestError) as caught:
        parse(case.read_bytes())
    assert caught.value.message.startswith(expected)
    assert caught.value.status_code == 422


def test_size_and_nesting_are_capped() -> None:
    with pytest.raises(ManifestError, match="is larger than"):
        parse(b"sites: []\n" + b"#" * 300_000)
    with pytest.raises(ManifestError, match="nested deeper"):
        parse(b"sites: " + b"[" * 40 + b"]" * 40)


@pytest.mark.parametrize(
    ("branch", "slot"),
    [
        ("feature/New Nav", "docs-feature-new-nav"),
        ("feature/ünïcode", "docs-feature-n-code"),
        ("---", None),
        ("feature/" + "x" * 100, None),
    ],
)
def test_preview_slots_are_always_valid_slot_names(branch: str, slot: str | None) -> None:
    made = preview_slot("docs-{branch}", branch)
    assert is_valid_slot(made)
    if slot is not None:
        assert made == slot
    assert preview_slot("docs-{branch}", branch) == made


@pytest.mark.parametrize("branch", ["default", "include", "hostnames", "volatile", "Default"])
def test_a_preview_of_a_branch_named_like_a_reserved_word_gets_a_valid_slot(branch: str) -> None:
    made = preview_slot("{branch}", branch)
    assert is_valid_slot(made) and made.startswith(branch.lower() + "-")


def test_site_rules_and_preview_access_are_read() -> None:
    text = b"""
previews:
  access: {basic_auth_env: PREVIEW_USERS}
sites:
  - slot: docs
    repo: https://git.example.lan/team/docs.git
    spa: true
    clean_urls: false
    redirects:
      - {from: /old/*, to: /new/:splat, status: 308, force: true}
    headers:
      - for: /assets/*
        values: {Cache-Control: "public, max-age=31536000, immutable"}
    access: {allow: [10.0.0.0/8]}
  - slot: docs-{branch}
    repo: https://git.example.lan/team/docs.git
    branches: ["feature/*"]
"""
    manifest = parse(text)
    docs = manifest.site_rules("docs", "main")
    assert docs is not None and docs.spa is True and docs.clean_urls is False
    assert docs.redirects[0].status == 308 and docs.redirects[0].force
    assert docs.headers[0].set == (("Cache-Control", "public, max-age=31536000, immutable"),)
    assert docs.access is not None and docs.access.allow == ("10.0.0.0/8",)
    preview = manifest.site_rules("docs-feature-x", "feature/x")
    assert preview is not None and preview.access is not None
    assert preview.access.basic_auth_env == "PREVIEW_USERS"
    assert manifest.site_rules("other", "main") is None
