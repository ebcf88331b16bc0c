"""A git deploy publishes .well-known/ at the top of the site's folder, and no other dotfile (issue 13)."""

from __future__ import annotations

from tests.harness.git import GitHttpServer
from tests.harness.stacks import GitopsFactory
from tests.harness.waiting import wait_for_deployment
from tests.integration.gitops.test_repo_deploys import declared


def test_a_git_deploy_publishes_well_known_and_no_other_dotfile(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    repo = git_server.repo("site")
    repo.commit(
        {
            "public/index.html": "home",
            "public/.well-known/security.txt": "Contact: x",
            "public/.well-known/apple-app-site-association": "{}",
            "public/.well-known/.hidden": "no",
            "public/.env": "SECRET=1",
            "public/a/.well-known/x": "no",
            ".well-known/outside.txt": "not the site's top",
        }
    )
    stack = gitops_stack(declared(git_server, path="public"))
    row = wait_for_deployment(stack, 1)
    assert row["status"] == "live" and row["files"] == 3, row
    assert stack.get("/d/docs/.well-known/security.txt").text == "Contact: x"
    association = stack.get("/d/docs/.well-known/apple-app-site-association")
    assert association.headers["content-type"].startswith("application/json")
    for path in (".well-known/.hidden", ".env", "a/.well-known/x", "a/", ".well-known/outside.txt"):
        assert stack.get(f"/d/docs/{path}").status_code == 404, path
