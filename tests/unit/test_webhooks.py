from __future__ import annotations

import json
from pathlib import Path

import pytest

from drophost.errors import BadRequestError, UnauthorizedError
from drophost.gitops.repourls import repo_key
from drophost.gitops.webhooks import PROVIDERS, RefUpdate, parse_event, verified_secrets

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_githubs_published_test_vector_verifies() -> None:
    signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    secret = "It's a Secret to Everybody"
    headers = {"x-hub-signature-256": signature}
    assert verified_secrets(PROVIDERS["github"], headers, b"Hello, World!", ["other", secret]) == [secret]
    with pytest.raises(UnauthorizedError):
        verified_secrets(PROVIDERS["github"], headers, b"Hello, World!!", [secret])


def test_gitea_bare_hex_signature_of_the_upstream_fixture_verifies() -> None:
    headers = {"x-gitea-signature": "60fe446c74fa0cb9474f98cc557db79e10c7aaf22cf324ad65239600b9e4d915"}
    body = fixture("fixture_go-playground_gitea_push-event.json")
    secret = "IsWishesWereHorsesWedAllBeEatingSteak!"
    assert verified_secrets(PROVIDERS["gitea"], headers, body, [secret]) == [secret]


def test_bitbucket_server_signature_of_the_upstream_fixture_verifies() -> None:
    headers = {"x-hub-signature": "sha256=8a60f7487d167f55886df87d4077192035d76f76a8e0b3a48fd8ae8cad25f391"}
    body = fixture("fixture_go-playground_bitbucket_server_repo-refs-changed.json")
    assert verified_secrets(PROVIDERS["bitbucket"], headers, body, ["secret"]) == ["secret"]


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "has no X-Hub-Signature-256 header"),
        ({"x-hub-signature-256": "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59"}, 'must look like "sha256='),
        ({"x-hub-signature-256": "sha256=" + "0" * 64}, "does not match"),
        ({"x-hub-signature-256": "sha256=\u00e9\u00e9"}, "is not a valid signature"),
    ],
)
def test_bad_signatures_are_401(headers: dict[str, str], message: str) -> None:
    with pytest.raises(UnauthorizedError, match=message):
        verified_secrets(PROVIDERS["github"], headers, b"Hello, World!", ["It's a Secret to Everybody"])


GITHUB_VECTOR = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


@pytest.mark.parametrize(
    ("provider", "header", "signature"),
    [
        ("github", "x-hub-signature-256", "sha256=" + GITHUB_VECTOR.upper()),
        ("github", "x-hub-signature-256", "sha256=" + GITHUB_VECTOR[:10].upper() + GITHUB_VECTOR[10:]),
        ("github", "x-hub-signature-256", "SHA256=" + GITHUB_VECTOR),
        ("github", "x-hub-signature-256", "sha256=" + GITHUB_VECTOR + " "),
        ("github", "x-hub-signature-256", " sha256=" + GITHUB_VECTOR),
        ("gitea", "x-gitea-signature", GITHUB_VECTOR.upper()),
        ("bitbucket", "x-hub-signature", "sha256=" + GITHUB_VECTOR.upper()),
        ("generic", "x-signature", "Sha256=" + GITHUB_VECTOR),
    ],
)
def test_only_the_documented_lowercase_form_verifies(provider: str, header: str, signature: str) -> None:
    secret = "It's a Secret to Everybody"
    exact = ("" if provider == "gitea" else "sha256=") + GITHUB_VECTOR
    assert verified_secrets(PROVIDERS[provider], {header: exact}, b"Hello, World!", [secret]) == [secret]
    with pytest.raises(UnauthorizedError):
        verified_secrets(PROVIDERS[provider], {header: signature}, b"Hello, World!", [secret])


def test_gitlab_token_is_compared_as_is() -> None:
    assert verified_secrets(PROVIDERS["gitlab"], {"x-gitlab-token": "tok"}, b"{}", ["tok"]) == ["tok"]
    with pytest.raises(UnauthorizedError):
        verified_secrets(PROVIDERS["gitlab"], {"x-gitlab-token": "TOK"}, b"{}", ["tok"])


CASES = [
    (
        "github",
        "push",
        "fixture_go-playground_github_push.json",
        "push",
        [RefUpdate("master", False, "fd489864e7642b48eaad6e3f155c10e46810ec72")],
        "github.com/binkkatal/sample_app",
    ),
    (
        "github",
        "push",
        "fixture_argocd_github_push.json",
        "push",
        [RefUpdate("master", False, "63738bb582c8b540af7bcfc18f87c575c3ed66e0")],
        "github.com/jessesuen/test-repo",
    ),
    ("github", "push", "github_push_tag_deleted.json", "ignored", [], ""),
    ("github", "ping", "github_ping.json", "ping", [], ""),
    (
        "gitlab",
        "Push Hook",
        "gitlab_push_hook.json",
        "push",
        [RefUpdate("master", False, "da1560886d4f094c3e6c9ef40349f7d38b5d27d7")],
        "example.com/mike/diaspora",
    ),
    (
        "gitlab",
        "Tag Push Hook",
        "gitlab_tag_push_hook.json",
        "push",
        [RefUpdate("v1.0.0", False, "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7", tag=True)],
        "example.com/jsmith/example",
    ),
    (
        "gitea",
        "push",
        "gitea_push.json",
        "push",
        [RefUpdate("develop", False, "bffeb74224043ba2feb48d137756c8a9331c449a")],
        "localhost:3000/gitea/webhooks",
    ),
    (
        "gitea",
        "push",
        "fixture_go-playground_gitea_push-event.json",
        "push",
        [RefUpdate("master", False, "67b56589a45103f891bdee7c0546e5d40bc02001")],
        "localhost:3000/example/example",
    ),
    (
        "bitbucket",
        "repo:push",
        "fixture_go-playground_bitbucket_cloud_repo-push.json",
        "push",
        None,
        "api.bitbucket.org/bitbucket/bitbucket",
    ),
    (
        "bitbucket",
        "repo:refs_changed",
        "fixture_go-playground_bitbucket_server_repo-refs-changed.json",
        "push",
        [RefUpdate("feature/wip", True)],
        "server.bitbucket.local/scm/~gopher/webhook-test",
    ),
    (
        "bitbucket",
        "repo:refs_changed",
        "fixture_argocd_bitbucket_server_refs_changed.json",
        "push",
        [RefUpdate("master", False, "22671f0349857934857983457983475ec39f196b")],
        "bitbucketserver/scm/myproject/test-repo",
    ),
]


@pytest.mark.parametrize(("provider", "event", "name", "kind", "updates", "repo"), CASES, ids=[c[2] for c in CASES])
def test_real_payloads_are_read(
    provider: str, event: str, name: str, kind: str, updates: list[RefUpdate] | None, repo: str
) -> None:
    p = PROVIDERS[provider]
    parsed = parse_event(p, {p.event_headers[0]: event}, fixture(name))
    assert parsed.kind == kind
    if updates is not None:
        assert list(parsed.updates) == updates
    if repo:
        assert repo in {repo_key(url) for url in parsed.repo_urls}


def test_branch_deletions_are_recognised_in_each_providers_shape() -> None:
    github = fixture("github_push_tag_deleted.json").replace(b'"refs/tags/simple-tag"', b'"refs/heads/feature/x"')
    parsed = parse_event(PROVIDERS["github"], {"x-github-event": "push"}, github)
    assert parsed.updates == (RefUpdate("feature/x", True),)

    gitlab = json.loads(fixture("gitlab_push_hook.json"))
    gitlab["after"] = "0" * 40
    parsed = parse_event(PROVIDERS["gitlab"], {"x-gitlab-event": "Push Hook"}, json.dumps(gitlab).encode())
    assert parsed.updates == (RefUpdate("master", True),)

    gitea = {
        "ref": "feature/x",
        "ref_type": "branch",
        "repository": json.loads(fixture("gitea_push.json"))["repository"],
    }
    parsed = parse_event(PROVIDERS["gitea"], {"x-gitea-event": "delete"}, json.dumps(gitea).encode())
    assert parsed.updates == (RefUpdate("feature/x", True),)

    cloud = json.loads(fixture("fixture_go-playground_bitbucket_cloud_repo-push.json"))
    change = cloud["push"]["changes"][0]
    change["old"], change["new"] = change["new"], None
    parsed = parse_event(PROVIDERS["bitbucket"], {"x-event-key": "repo:push"}, json.dumps(cloud).encode())
    assert parsed.updates == (RefUpdate("name-of-branch", True),)


@pytest.mark.parametrize(
    ("provider", "fixture_name", "says"),
    [
        ("github", "fixture_go-playground_github_push.json", "X-GitHub-Event"),
        ("gitlab", "gitlab_push_hook.json", "X-Gitlab-Event"),
        ("gitea", "gitea_push.json", "X-Gitea-Event"),
        ("bitbucket", "fixture_go-playground_bitbucket_cloud_repo-push.json", "X-Event-Key"),
        ("bitbucket", "fixture_argocd_bitbucket_server_refs_changed.json", "X-Event-Key"),
    ],
)
@pytest.mark.parametrize("value", [None, "", "  "])
def test_a_delivery_without_the_providers_event_header_is_a_400(
    provider: str, fixture_name: str, says: str, value: str | None
) -> None:
    headers = {} if value is None else {PROVIDERS[provider].event_headers[0]: value}
    with pytest.raises(BadRequestError) as caught:
        parse_event(PROVIDERS[provider], headers, fixture(fixture_name))
    assert caught.value.message == f"the delivery has no {says} header saying which event it is"


@pytest.mark.parametrize("header", ["x-gitea-event", "x-forgejo-event", "x-gogs-event"])
def test_forgejo_and_gogs_name_the_event_in_their_own_header(header: str) -> None:
    assert parse_event(PROVIDERS["gitea"], {header: "push"}, fixture("gitea_push.json")).kind == "push"


def test_the_generic_provider_needs_no_event_header() -> None:
    parsed = parse_event(PROVIDERS["generic"], {}, b'{"repo": "https://git.example.lan/x.git", "branch": "main"}')
    assert parsed.kind == "push" and parsed.updates == (RefUpdate("main", False),)
