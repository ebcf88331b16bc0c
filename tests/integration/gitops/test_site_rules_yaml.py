"""deploy.yaml's site rule keys reach the slot's nginx config: spa, redirects, headers, previews' access."""

from __future__ import annotations

import base64
import hashlib

from tests.harness.git import GitHttpServer
from tests.harness.stacks import GitopsFactory
from tests.harness.waiting import wait_for_deployment, wait_until


def test_deploy_yaml_rules_and_preview_access_are_served(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    repo = git_server.repo("site")
    repo.commit({"index.html": "<p>home</p>", "_redirects": "/from-file /x 302\n"}, branch="main")
    repo.commit({"index.html": "<p>preview</p>"}, branch="feature/a")
    users = f"ann:{{SHA}}{base64.b64encode(hashlib.sha1(b'pw').digest()).decode()}"
    stack = gitops_stack(
        f"""poll_interval: 1s
previews:
  access: {{basic_auth_env: PREVIEW_USERS}}
sites:
  - slot: docs
    repo: {git_server.url("site")}
    branch: main
    spa: true
    redirects:
      - {{from: /old, to: /new, status: 308}}
    headers:
      - for: /*
        values: {{X-Team: docs}}
  - slot: "docs-{{branch}}"
    repo: {git_server.url("site")}
    branches: ["feature/*"]
""",
        {"PREVIEW_USERS": users},
    )
    assert wait_for_deployment(stack, 1)["status"] == "live"
    old = stack.get("/d/docs/old", follow_redirects=False)
    assert (old.status_code, old.headers["location"]) == (308, "/d/docs/new")
    assert stack.get("/d/docs/from-file", follow_redirects=False).headers["location"] == "/d/docs/x"
    route = stack.get("/d/docs/client/route")
    assert (route.status_code, route.text, route.headers["x-team"]) == (200, "<p>home</p>", "docs")
    assert wait_until(lambda: stack.get("/d/docs-feature-a/").status_code == 401)
    assert stack.get("/d/docs-feature-a/", auth=("ann", "pw")).text == "<p>preview</p>"
