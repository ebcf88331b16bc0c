"""Repository URLs: credentials refused, control bytes refused even percent-encoded, and sources.allow
patterns that match the whole URL (scheme, user, host, port and path)."""

from __future__ import annotations

import pytest

from drophost.errors import ValidationError
from drophost.gitops.repourls import check_branch, check_repo_path, parse_repo_url, source_key, source_pattern


@pytest.mark.parametrize(
    "url",
    [
        "https://user:hunter2@git.example.lan/x.git",
        "https://ghp_abcdef@github.com/acme/site.git",
        "http://oauth2:glpat-xyz@gitlab.example.lan/a/b.git",
        "ssh://git:hunter2@git.example.lan/x.git",
    ],
)
def test_urls_with_credentials_are_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_repo_url(url)
    assert caught.value.status_code == 422
    assert "carries credentials" in caught.value.message and "token_env" in caught.value.message
    for secret in ("hunter2", "ghp_abcdef", "glpat-xyz"):
        assert secret not in caught.value.message


@pytest.mark.parametrize("url", ["ssh://git@git.example.lan/x.git", "git@git.example.lan:team/x.git"])
def test_an_ssh_user_name_is_not_a_credential(url: str) -> None:
    assert parse_repo_url(url).text == url


@pytest.mark.parametrize("escape", ["%0a", "%0A", "%0d", "%00", "%1b", "%7f"])
def test_percent_encoded_control_bytes_are_refused(escape: str) -> None:
    with pytest.raises(ValidationError, match="encoded control character"):
        parse_repo_url(f"https://git.example.lan/team/x{escape}y.git")


def test_ordinary_percent_escapes_pass() -> None:
    assert parse_repo_url("https://git.example.lan/team/my%20site.git")


ALLOW = "http://127.0.0.1:8123/*"


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:8123/site.git", True),
        ("http://127.0.0.1:8123/site", True),
        ("http://127.0.0.1:8123//site.git/", True),
        ("ssh://git@127.0.0.1:8123/site.git", False),  # another scheme
        ("https://127.0.0.1:8123/site.git", False),  # https is another scheme too
        ("http://user@127.0.0.1:8123/site.git", False),  # a user the pattern does not name
        ("http://127.0.0.1:8124/site.git", False),  # another port
        ("http://127.0.0.1:8123/team/site.git", False),  # "*" stays within one path part
        ("http://127.0.0.2:8123/site.git", False),
    ],
)
def test_a_source_pattern_allows_exactly_the_scheme_user_host_port_and_path_it_names(url: str, allowed: bool) -> None:
    assert bool(source_pattern(ALLOW).fullmatch(source_key(url))) is allowed


def test_patterns_with_a_user_and_wildcards() -> None:
    pattern = source_pattern("ssh://git@git.example.lan:2222/team/**")
    assert pattern.fullmatch(source_key("ssh://git@git.example.lan:2222/team/a/b.git"))
    assert not pattern.fullmatch(source_key("ssh://bob@git.example.lan:2222/team/a.git"))
    assert not pattern.fullmatch(source_key("ssh://git.example.lan:2222/team/a.git"))
    # The default port is the same address written either way; the host is matched case-insensitively.
    assert source_pattern("https://GIT.example.lan:443/x/*").fullmatch(source_key("https://git.example.lan/x/y"))
    # A wildcard host stays a host: it cannot swallow a user part.
    assert not source_pattern("http://*/x").fullmatch(source_key("http://bob@evil.lan/x"))


@pytest.mark.parametrize("path", ["/etc", "/public", "//etc", "/etc/"])
def test_absolute_repository_paths_are_refused(path: str) -> None:
    with pytest.raises(ValidationError, match="is absolute") as caught:
        check_repo_path(path)
    assert caught.value.status_code == 422 and caught.value.details == {"field": "path"}


@pytest.mark.parametrize("path", [".git", ".git/x", ".hidden", "a/.git", "public/.well-known", "a/.b/c", ".git/"])
def test_repository_paths_through_dot_folders_are_refused(path: str) -> None:
    with pytest.raises(ValidationError, match="names a dot folder") as caught:
        check_repo_path(path)
    assert caught.value.status_code == 422


@pytest.mark.parametrize(
    ("path", "checked"), [(None, ""), ("", ""), (".", ""), ("/", ""), ("public", "public"), ("a/b/", "a/b")]
)
def test_plain_relative_repository_paths_pass(path: str | None, checked: str) -> None:
    assert check_repo_path(path) == checked


@pytest.mark.parametrize("branch", ["", None])
def test_an_empty_branch_is_refused_not_defaulted(branch: str | None) -> None:
    with pytest.raises(ValidationError, match="must be a branch name") as caught:
        check_branch(branch)  # type: ignore[arg-type]
    assert caught.value.status_code == 422
