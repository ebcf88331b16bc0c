from __future__ import annotations

import base64
import stat

import psycopg
import pytest
from psycopg import sql

from drophost.pipeline import releases
from tests.harness.auth import AUTH
from tests.harness.git import GitHttpServer
from tests.harness.stacks import GitopsFactory
from tests.harness.waiting import wait_for_deployment


def declared(server: GitHttpServer, name: str = "site", **fields: str) -> str:
    extra = "".join(f"\n    {key}: {value}" for key, value in fields.items())
    return f"sites:\n  - slot: docs\n    repo: {server.url(name)}\n    branch: main{extra}\n"


def test_declared_site_is_deployed_at_start_from_the_branch_head(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    repo = git_server.repo("site")
    sha = repo.commit({"public/index.html": "<h1>docs</h1>", "README.md": "not published"})
    stack = gitops_stack(declared(git_server, path="public"))
    rows = stack.client.get("/api/deployments", headers=AUTH).json()["deployments"]
    assert len(rows) == 1 and rows[0]["trigger"] == "config"
    row = wait_for_deployment(stack, rows[0]["id"])
    assert row["status"] == "live", row
    assert row["source"] == "git" and row["commit_sha"] == sha and row["branch"] == "main"
    assert stack.get("/d/docs/").text == "<h1>docs</h1>"
    assert stack.get("/d/docs/README.md").status_code == 404


def test_repo_url_deploy_answers_202_and_goes_live(git_server: GitHttpServer, gitops_stack: GitopsFactory) -> None:
    repo = git_server.repo("other")
    repo.commit({"index.html": "one"})
    stack = gitops_stack(f'sites: []\nsources:\n  allow: ["http://127.0.0.1:{git_server.port}/*"]\n')
    answer = stack.client.post(
        "/api/deployments",
        json={"repo": git_server.url("other"), "branch": "main", "path": "", "slot": "other"},
        headers=AUTH,
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] in ("queued", "building")
    row = wait_for_deployment(stack, answer.json()["id"])
    assert row["status"] == "live" and row["trigger"] == "api"
    assert stack.get("/d/other/").text == "one"
    second_sha = repo.commit({"index.html": "two"})
    again = stack.client.post(
        "/api/deployments",
        json={"repo": git_server.url("other"), "branch": "main", "slot": "other", "ttl": "2h"},
        headers=AUTH,
    )
    row = wait_for_deployment(stack, again.json()["id"])
    assert row["commit_sha"] == second_sha and row["config_version"] == 2 and row["ttl_seconds"] == 7200
    assert stack.get("/d/other/").text == "two"
    # Only a missing branch means main ("branch": "" is a 422, see HOSTILE).
    third_sha = repo.commit({"index.html": "three"})
    default = stack.client.post(
        "/api/deployments", json={"repo": git_server.url("other"), "slot": "other"}, headers=AUTH
    )
    row = wait_for_deployment(stack, default.json()["id"])
    assert row["commit_sha"] == third_sha and row["branch"] == "main"


def test_symlinks_and_dotfiles_are_not_published(git_server: GitHttpServer, gitops_stack: GitopsFactory) -> None:
    repo = git_server.repo("site")
    repo.commit(
        {"index.html": "ok", ".env": "SECRET=1", "sub/page.html": "page"},
        symlinks={"passwd": "/etc/passwd", "up": "../../..", "sub/loop": "../index.html"},
    )
    stack = gitops_stack(declared(git_server))
    row = wait_for_deployment(stack, 1)
    assert row["status"] == "live" and row["files"] == 2
    assert stack.get("/d/docs/sub/page").text == "page"
    for path in ("passwd", "up/", "sub/loop", ".env"):
        assert stack.get(f"/d/docs/{path}").status_code == 404, path
    release = stack.settings.releases_dir / "docs" / str(row["id"])
    assert releases.is_sealed(release)
    assert sorted(p.relative_to(release).as_posix() for p in release.rglob("*")) == [
        "index.html",
        "sub",
        "sub/page.html",
    ]
    # The blob cache the release links into is read-only too: a file cannot change under a release.
    assert {stat.S_IMODE(p.stat().st_mode) for p in release.rglob("*.html")} == {0o444}


def test_a_path_that_is_a_symlink_out_of_the_tree_fails_and_changes_nothing(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    repo = git_server.repo("site")
    repo.commit({"index.html": "first"})
    stack = gitops_stack(declared(git_server))
    assert wait_for_deployment(stack, 1)["status"] == "live"
    repo.commit({}, symlinks={"public": "/etc"})
    answer = stack.client.post(
        "/api/deployments",
        json={"repo": git_server.url("site"), "branch": "main", "path": "public", "slot": "escape"},
        headers=AUTH,
    )
    row = wait_for_deployment(stack, answer.json()["id"])
    assert row["status"] == "failed"
    assert row["error"] == 'path "public" is not a folder in the commit'
    assert stack.get("/d/escape/").status_code == 404
    assert stack.get("/d/docs/").text == "first"


HOSTILE = [
    ({"repo": "ext::sh -c touch% /tmp/pwned"}, 422, "is not a URL DropHost will fetch from"),
    ({"repo": "file:///etc"}, 422, "only https, http, ssh and hosted: are allowed"),
    ({"repo": "/srv/git/site.git"}, 422, "is not allowed"),
    ({"repo": "--upload-pack=touch /tmp/pwned"}, 422, "is not a URL DropHost will fetch from"),
    ({"repo": "--upload-pack=touch"}, 422, "starts with '-'"),
    ({"repo": "ssh://-oProxyCommand=touch/x"}, 422, "is not a URL DropHost will fetch from"),
    ({"repo": "-oProxyCommand=x:y"}, 422, "starts with '-'"),
    ({"repo": "https://user:hunter2@example.lan/x.git"}, 422, "carries credentials"),
    ({"repo": "https://ghp_token@example.lan/x.git"}, 422, "carries credentials"),
    ({"repo": "http://127.0.0.1:1/x%0a.git"}, 422, "encoded control character"),
    ({"repo": "http://127.0.0.1:1/x%0d%0a.git"}, 422, "encoded control character"),
    ({"repo": "http://127.0.0.1:1/x%00.git"}, 422, "encoded control character"),
    ({"branch": "-b"}, 422, "is not a valid branch name"),
    ({"branch": "--upload-pack=x"}, 422, "is not a valid branch name"),
    ({"branch": "main..x"}, 422, "is not a valid branch name"),
    ({"path": "../../etc"}, 422, "escapes the repository"),
    ({"path": "public/../../x"}, 422, "escapes the repository"),
    ({"branch": ""}, 422, "branch must be a branch name"),
    ({"branch": None}, 422, "branch must be a branch name"),
    ({"path": "/etc"}, 422, "is absolute"),
    ({"path": ".git"}, 422, "names a dot folder"),
    ({"path": ".git/x"}, 422, "names a dot folder"),
    ({"path": ".hidden"}, 422, "names a dot folder"),
    ({"path": "a/.git"}, 422, "names a dot folder"),
    ({"slot": "Docs!"}, 422, "is not a valid slot name"),
    ({"slot": "docs"}, 409, "is declared in deploy.yaml"),
    ({"ttl": "forever"}, 422, "is not a duration"),
    ({"unknown": "x"}, 422, "unknown field"),
]


@pytest.mark.parametrize(("change", "status", "message"), HOSTILE)
def test_hostile_repo_deploys_are_refused_and_nothing_changes(
    git_server: GitHttpServer, gitops_stack: GitopsFactory, change: dict[str, str], status: int, message: str
) -> None:
    git_server.repo("site").commit({"index.html": "x"})
    stack = gitops_stack(declared(git_server))
    assert wait_for_deployment(stack, 1)["status"] == "live"
    body = {"repo": git_server.url("site"), "branch": "other", "path": "", "slot": "new", **change}
    answer = stack.client.post("/api/deployments", json=body, headers=AUTH)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]
    assert "hunter2" not in answer.text
    assert len(stack.client.get("/api/deployments", headers=AUTH).json()["deployments"]) == 1
    assert not list((stack.settings.git_dir / "mirrors").glob("*/refs/heads/other"))


def test_fetch_errors_carry_no_credentials_paths_or_git_output(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    git_server.repo("site").commit({"index.html": "x"})
    base = f"http://127.0.0.1:{git_server.port}"
    stack = gitops_stack(
        "sites:\n"
        f"  - slot: missing\n    repo: {base}/missing.git\n"
        f"  - slot: moved\n    repo: {base}/moved/site.git\n"
        f"  - slot: nobranch\n    repo: {base}/site.git\n    branch: gone\n"
    )
    rows = {row["slot"]: row for row in (wait_for_deployment(stack, i) for i in (1, 2, 3))}
    assert rows["missing"]["error"] == f"the repository http://127.0.0.1:{git_server.port}/missing.git was not found"
    assert rows["moved"]["error"] == f"{base}/moved/site.git answered with a redirect, which DropHost does not follow"
    assert rows["nobranch"]["error"] == f'branch "gone" does not exist in {base}/site.git'
    listing = stack.client.get("/api/deployments", headers=AUTH).text
    assert str(stack.settings.data_dir) not in listing and "fatal" not in listing
    assert all(row["status"] == "failed" for row in rows.values())
    assert stack.get("/d/moved/").status_code == 404


def test_unchanged_files_are_not_written_again(git_server: GitHttpServer, gitops_stack: GitopsFactory) -> None:
    repo = git_server.repo("site")
    repo.commit({"index.html": "one", "same.css": "body{}"})
    stack = gitops_stack(declared(git_server))
    assert wait_for_deployment(stack, 1)["status"] == "live"
    repo.commit({"index.html": "two"})
    answer = stack.client.post(
        "/api/deployments", json={"repo": git_server.url("site"), "branch": "main", "slot": "docs"}, headers=AUTH
    )
    assert wait_for_deployment(stack, answer.json()["id"])["status"] == "live"
    first, second = (stack.settings.releases_dir / "docs" / str(i) for i in (1, answer.json()["id"]))
    assert (first / "same.css").stat().st_ino == (second / "same.css").stat().st_ino
    assert (first / "index.html").stat().st_ino != (second / "index.html").stat().st_ino
    assert not (second / "same.css").is_symlink()
    assert stack.get("/d/docs/same.css").text == "body{}" and stack.get("/d/docs/").text == "two"


def test_a_private_https_repository_is_fetched_with_its_token_env_and_the_token_goes_nowhere_else(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    token = "glpat-s3cr3t-t0ken"
    expected = "Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()
    git_server.private["private"] = expected
    git_server.repo("private").commit({"index.html": "<h1>private</h1>"})
    environ = {"UNRELATED": "x"}
    stack = gitops_stack(declared(git_server, "private", token_env="DOCS_TOKEN"), environ)
    # Without the variable the deploy fails with a sentence naming it, and no anonymous fetch succeeds.
    row = wait_for_deployment(stack, 1)
    assert row["status"] == "failed"
    assert row["error"] == "the token variable DOCS_TOKEN (token_env of slot docs) is not set"

    environ["DOCS_TOKEN"] = token
    body = {"repo": git_server.url("private"), "slot": "docs"}
    answer = stack.client.post("/api/deployments", json=body, headers=AUTH)
    assert answer.status_code == 202, answer.text
    assert wait_for_deployment(stack, answer.json()["id"])["status"] == "live"
    assert stack.get("/d/docs/").text == "<h1>private</h1>"
    assert expected in git_server.authorizations
    # Not in PostgreSQL, the API, the mirror's config or git's command line (only in git's environment).
    listing = stack.client.get("/api/deployments", headers=AUTH).text
    assert token not in listing and expected.split()[1] not in listing
    data = stack.settings.data_dir
    for path in (data / "git").rglob("config"):
        assert token not in path.read_text(errors="replace")
    with psycopg.connect(stack.settings.database_url) as conn:
        dump = " ".join(
            str(row)
            for table in ("deployments", "git_jobs", "managed_slots")
            for row in conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table))).fetchall()
        )
    assert token not in dump and expected.split()[1] not in dump


def test_a_wrong_token_fails_with_a_sentence_that_does_not_show_it(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    git_server.private["private"] = "Basic " + base64.b64encode(b"x-access-token:right").decode()
    git_server.repo("private").commit({"index.html": "x"})
    stack = gitops_stack(declared(git_server, "private", token_env="DOCS_TOKEN"), {"DOCS_TOKEN": "wrong-token"})
    row = wait_for_deployment(stack, 1)
    assert row["status"] == "failed"
    assert "wrong-token" not in row["error"] and "Authorization" not in row["error"]
    assert stack.get("/d/docs/").status_code == 404


def test_a_refused_commit_is_not_deployed_again_by_a_reload_only_by_a_new_one(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    repo = git_server.repo("site")
    repo.commit({f"page{i}.html": f"page {i}" for i in range(8)})  # over the entry cap set below
    stack = gitops_stack(declared(git_server), max_entries=5)
    row = wait_for_deployment(stack, 1)
    assert row["status"] == "failed" and "more than 5 entries" in row["error"]
    # Applying deploy.yaml again (as every start and reload does) does not fetch the same commit again.
    requests = git_server.requests
    answer = stack.client.post("/api/reload", headers=AUTH)
    assert answer.status_code == 200 and answer.json()["queued"] == [], answer.text
    listed = stack.client.get("/api/deployments?slot=docs", headers=AUTH).json()["deployments"]
    assert [d["id"] for d in listed] == [1]
    assert git_server.requests <= requests + 2  # the head was asked for (ls-remote), nothing fetched
    # A new commit is deployed by the next apply.
    for i in range(8):
        (repo.work / f"page{i}.html").unlink()
    repo.commit({"index.html": "fixed"})
    answer = stack.client.post("/api/reload", headers=AUTH)
    assert answer.status_code == 200 and len(answer.json()["queued"]) == 1, answer.text
    assert wait_for_deployment(stack, answer.json()["queued"][0])["status"] == "live"
    assert stack.get("/d/docs/").text == "fixed"
