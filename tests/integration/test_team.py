"""A team, not one shared token: users, roles, scoped tokens, the route x role matrix, sign-in limits, audit."""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import psycopg
import pytest
from starlette.testclient import TestClient

from drophost.cli import build_parser
from drophost.client import commands
from drophost.settings import Settings
from drophost.store.migrate import migrate, migration_files
from drophost.useradmin import manage_users
from drophost.web import routes
from tests.harness.auth import AUTH, TOKEN
from tests.harness.stacks import LiveStack, Stack, running_stack
from tests.harness.zips import make_zip

PASSWORD = "a long password"
TEAM_MIGRATION = "0011_team.sql"  # everything before it is today's single-token schema


def add_user(client: TestClient, name: str, role: str, slots: list[str] | None = None) -> None:
    body = {"name": name, "role": role, "slots": slots or [], "password": PASSWORD}
    answer = client.post("/api/users", json=body, headers=AUTH)
    assert answer.status_code == 201, answer.text


def make_token(client: TestClient, user: str, scopes: list[str], **extra: str) -> dict[str, str]:
    answer = client.post(
        "/api/tokens", json={"name": f"{user} ci", "scopes": scopes, "user": user, **extra}, headers=AUTH
    )
    assert answer.status_code == 201, answer.text
    return {"Authorization": f"Bearer {answer.json()['token']}", "X-Token-Id": str(answer.json()["id"])}


def zip_upload(client: TestClient, slot: str, headers: dict[str, str], **data: str) -> int:
    answer = client.post(
        "/api/deployments",
        files={"file": (f"{slot}.zip", make_zip({"index.html": slot}), "application/zip")},
        data={"slot": slot, **data},
        headers=headers,
    )
    return answer.status_code


@pytest.fixture
def team(stack: Stack) -> dict[str, dict[str, str]]:
    add_user(stack.client, "ann", "admin")
    add_user(stack.client, "dee", "deployer", ["docs-*"])
    add_user(stack.client, "vic", "viewer")
    return {
        "admin": make_token(stack.client, "ann", ["admin"]),
        "deployer": make_token(stack.client, "dee", ["read", "deploy:docs-*"]),
        "viewer": make_token(stack.client, "vic", ["read"]),
        "nobody": {},
    }


PATH_VALUES = {
    "slot": "docs-a",
    "id": "999999",
    "version": "999",
    "upload_id": str(uuid.uuid4()),
    "digest": "0" * 64,
    "name": "nobody",
    "provider": "github",
    "rest": "info/refs",
}


def test_every_route_for_every_role(stack: Stack, team: dict[str, dict[str, str]]) -> None:
    """401 without a credential, 403 without the right, anything else with it."""
    checked = 0
    for endpoint in routes.endpoints(stack.settings):
        if endpoint.auth not in ("read", "deploy", "admin"):
            continue
        path = re.sub(r"\{(\w+)(:path)?\}", lambda m: PATH_VALUES[m.group(1)], endpoint.path)
        for role, headers in team.items():
            for slot in ("docs-a", "web") if "{slot}" in endpoint.path else ("docs-a",):
                url = path.replace("docs-a", slot)
                body = {} if endpoint.method in ("POST", "PATCH") else None
                answer = stack.client.request(endpoint.method, url, json=body, headers=headers)
                allowed = {
                    "admin": True,
                    "deployer": endpoint.auth == "read" or (endpoint.auth == "deploy" and slot == "docs-a"),
                    "viewer": endpoint.auth == "read",
                    "nobody": False,
                }[role]
                where = f"{endpoint.method} {url} as {role}"
                if role == "nobody":
                    assert answer.status_code == 401, where
                elif allowed:
                    assert answer.status_code not in (401, 403), f"{where}: {answer.text}"
                else:
                    assert answer.status_code == 403, f"{where}: {answer.text}"
                    assert "error" in answer.json()
                checked += 1
    assert checked > 100
    declared = {(e.method, e.path): e.auth for e in routes.endpoints(stack.settings)}
    assert declared[("POST", "/api/slots/{slot}/promote")] == "deploy"
    assert declared[("POST", "/api/slots/{slot}/rollback")] == "deploy"


def test_a_deployer_token_deploys_only_its_slots(stack: Stack, team: dict[str, dict[str, str]]) -> None:
    assert zip_upload(stack.client, "docs-a", team["deployer"]) == 201
    assert zip_upload(stack.client, "docs2", team["deployer"]) == 403
    assert zip_upload(stack.client, "docs2", team["viewer"]) == 403
    assert zip_upload(stack.client, "docs2", team["admin"]) == 201
    digest = stack.client.post("/api/uploads", json={"slot": "web", "files": {}}, headers=team["deployer"])
    assert digest.status_code == 403
    # Its scopes: no wider than the user's, whoever asks.
    wider = stack.client.post("/api/tokens", json={"name": "x", "scopes": ["deploy:*"]}, headers=team["deployer"])
    assert wider.status_code == 403 and "wider" in wider.json()["error"]
    narrower = stack.client.post(
        "/api/tokens", json={"name": "x", "scopes": ["deploy:docs-api-*"]}, headers=team["deployer"]
    )
    assert narrower.status_code == 201


def test_revoking_a_token_takes_effect_at_once_and_expiry_is_kept(
    stack: Stack, team: dict[str, dict[str, str]]
) -> None:
    headers = team["deployer"]
    assert stack.client.get("/api/slots", headers=headers).status_code == 200
    listed = stack.client.get("/api/tokens", headers=headers).json()["tokens"]
    assert [t["user"] for t in listed] == ["dee"] and listed[0]["last_used_at"] is not None
    assert "token" not in listed[0]
    revoked = stack.client.delete(f"/api/tokens/{headers['X-Token-Id']}", headers=team["admin"])
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert stack.client.get("/api/slots", headers=headers).status_code == 401

    expiring = make_token(stack.client, "vic", ["read"], expires="1d")
    assert stack.client.get("/api/slots", headers=expiring).status_code == 200
    with psycopg.connect(stack.settings.database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = %s", (expiring["X-Token-Id"],)
        )
    assert stack.client.get("/api/slots", headers=expiring).status_code == 401
    # Removing a user ends their tokens too.
    viewer = team["viewer"]
    assert stack.client.delete("/api/users/vic", headers=team["admin"]).status_code == 200
    assert stack.client.get("/api/slots", headers=viewer).status_code == 401


def test_users_are_for_admins_and_never_show_a_password(stack: Stack, team: dict[str, dict[str, str]]) -> None:
    listed = stack.client.get("/api/users", headers=team["admin"])
    assert [u["name"] for u in listed.json()["users"]] == ["ann", "dee", "vic"]
    assert PASSWORD not in listed.text and "scrypt" not in listed.text
    assert stack.client.get("/api/users", headers=team["deployer"]).status_code == 403
    again = stack.client.post("/api/users", json={"name": "ann", "role": "viewer", "password": PASSWORD}, headers=AUTH)
    assert again.status_code == 409
    bad = stack.client.post(
        "/api/users", json={"name": "x", "role": "viewer", "slots": ["docs-*"], "password": PASSWORD}, headers=AUTH
    )
    assert bad.status_code == 422


def test_the_audit_log_names_actor_address_target_and_result(stack: Stack, team: dict[str, dict[str, str]]) -> None:
    assert zip_upload(stack.client, "docs-a", team["deployer"]) == 201
    assert zip_upload(stack.client, "web", team["deployer"]) == 403
    assert stack.client.delete("/api/slots/docs-a", headers=team["admin"]).status_code == 200
    entries = stack.client.get("/api/audit", params={"target": "docs-a"}, headers=team["viewer"]).json()["entries"]
    seen = [(e["actor"], e["action"], e["result"]) for e in entries]
    deployer_id, admin_id = team["deployer"]["X-Token-Id"], team["admin"]["X-Token-Id"]
    assert (f"ann (token {admin_id})", "offline", "200") in seen
    assert (f"dee (token {deployer_id})", "create_deployment", "201") in seen
    assert all(e["address"] for e in entries)
    refused = stack.client.get("/api/audit", params={"target": "web"}, headers=AUTH).json()["entries"]
    assert refused[0]["result"].startswith("403 ")
    by_actor = stack.client.get("/api/audit", params={"actor": "ann"}, headers=AUTH).json()["entries"]
    assert by_actor and all(e["actor"].startswith("ann") for e in by_actor)
    tokens = stack.client.get("/api/audit", params={"action": "create_token"}, headers=AUTH).json()["entries"]
    assert len(tokens) == 3 and all(e["actor"] == "bootstrap" for e in tokens)


def test_a_deploy_to_a_locked_slot_is_a_draft_until_promoted_and_after_unlock_deploys_go_live(
    stack: Stack, team: dict[str, dict[str, str]]
) -> None:
    deployer = team["deployer"]
    live = stack.deploy({"index.html": "one"}, "docs-a").json()
    locked = stack.client.post("/api/slots/docs-a/lock", json={"reason": "release freeze"}, headers=deployer)
    assert locked.status_code == 200 and locked.json()["locked"] is True

    kept = stack.deploy({"index.html": "two"}, "docs-a")
    assert kept.status_code == 201, kept.text
    draft = kept.json()
    assert (draft["status"], draft["config_version"]) == ("draft", 2)
    assert draft["error"].startswith("slot is locked (release freeze, by dee (token")
    assert stack.get("/d/docs-a/").text == "one"
    versions = stack.client.get("/api/slots/docs-a/versions", headers=AUTH).json()
    assert versions["active"] == 1
    assert [(v["version"], v["status"]) for v in versions["versions"]] == [(2, "draft"), (1, "active")]

    # Only a deployer with rights on the slot gets past the lock, and it is audited.
    body = {"deployment_id": draft["id"]}
    assert stack.client.post("/api/slots/docs-a/promote", json=body, headers=team["viewer"]).status_code == 403
    promoted = stack.client.post("/api/slots/docs-a/promote", json=body, headers=deployer)
    assert promoted.status_code == 200, promoted.text
    assert promoted.json() == {"slot": "docs-a", "active": 2, "deployment_id": draft["id"]}
    assert stack.get("/d/docs-a/").text == "two"
    entries = stack.client.get("/api/audit", params={"target": "docs-a"}, headers=AUTH).json()["entries"]
    seen = [(e["actor"], e["action"], e["result"]) for e in entries]
    deployer_id, viewer_id = deployer["X-Token-Id"], team["viewer"]["X-Token-Id"]
    assert (f"dee (token {deployer_id})", "promote", "200") in seen
    assert any(a == f"vic (token {viewer_id})" and act == "promote" and r.startswith("403 ") for a, act, r in seen)

    # Still locked: the next deploy is a draft again; once unlocked, deploys go live directly.
    assert stack.deploy({"index.html": "three"}, "docs-a").json()["status"] == "draft"
    assert stack.get("/d/docs-a/").text == "two"
    assert stack.client.post("/api/slots/docs-a/unlock", headers=deployer).json()["was_locked"] is True
    after = stack.deploy({"index.html": "four"}, "docs-a").json()
    assert (after["status"], after["error"]) == ("live", None)
    assert stack.get("/d/docs-a/").text == "four"
    assert live["status"] == "live"


def test_the_audit_log_is_append_only(stack: Stack, team: dict[str, dict[str, str]]) -> None:
    with psycopg.connect(stack.settings.database_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone() != (0,)
        for statement in ("UPDATE audit_log SET result = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(statement)


# -- the dashboard's sign-in -----------------------------------------------------------------------
@pytest.fixture
def limited(settings: Settings) -> Iterator[Stack]:
    with running_stack(replace(settings, signin_max_failures=3, signin_window=1.5)) as running:
        yield running


def test_a_user_signs_in_with_a_password_and_gets_only_their_rights(stack: Stack) -> None:
    add_user(stack.client, "vic", "viewer")
    answer = stack.client.post("/signin", data={"name": "vic", "password": PASSWORD}, follow_redirects=False)
    assert answer.status_code == 303
    page = stack.client.get("/")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    session = {"X-CSRF-Token": csrf.group(1)}
    assert stack.client.get("/api/slots", headers=session).status_code == 200
    assert stack.client.delete("/api/slots/docs-a", headers=session).status_code == 403
    mine = stack.client.post("/api/tokens", json={"name": "laptop", "scopes": ["read"]}, headers=session)
    assert mine.status_code == 201 and mine.json()["user"] == "vic"


def test_brute_force_gets_429_and_the_right_password_works_after_the_window(limited: Stack) -> None:
    client = limited.client
    add_user(client, "ann", "admin")
    for _ in range(3):
        wrong = client.post("/signin", data={"name": "ann", "password": "guess guess"}, follow_redirects=False)
        assert wrong.status_code == 401 and "do not match" in wrong.text
    refused = client.post("/signin", data={"name": "ann", "password": PASSWORD}, follow_redirects=False)
    assert refused.status_code == 429 and "Too many failed sign-ins" in refused.text
    time.sleep(1.6)
    good = client.post("/signin", data={"name": "ann", "password": PASSWORD}, follow_redirects=False)
    assert good.status_code == 303
    failures = client.get("/api/audit", params={"action": "signin"}, headers=AUTH).json()["entries"]
    assert len(failures) == 3 and {e["actor"] for e in failures} == {"ann"}
    assert all(e["result"] == "401 wrong password" for e in failures)


# -- migrations --------------------------------------------------------------------------------------
def test_a_single_token_database_keeps_every_deployment_and_version(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_migrations (name text PRIMARY KEY, applied_at timestamptz DEFAULT now())")
        for name, text in migration_files():
            if name < TEAM_MIGRATION:
                conn.execute(text.encode())
                conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
        deployment = conn.execute(
            "INSERT INTO deployments (slot, source, state) VALUES ('docs', 'zip', 'ready') RETURNING id"
        ).fetchone()
        assert deployment is not None
        conn.execute(
            "INSERT INTO config_versions (slot, version, deployment_id, release_dir, config, sha256, status)"
            " VALUES ('docs', 1, %s, 'docs/1', 'docs live;', 'x', 'active')",
            (deployment[0],),
        )
        before = (
            conn.execute("SELECT * FROM deployments").fetchall(),
            conn.execute("SELECT * FROM config_versions").fetchall(),
        )
        applied = migrate(conn)
        assert TEAM_MIGRATION in applied and applied == [n for n, _ in migration_files() if n >= TEAM_MIGRATION]
        after = (
            conn.execute("SELECT * FROM deployments").fetchall(),
            conn.execute("SELECT * FROM config_versions").fetchall(),
        )
        assert after == before
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (0,)  # the bootstrap token is not a row


# -- the command line ------------------------------------------------------------------------------
def test_drophost_user_add_works_before_anyone_can_sign_in(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {"DATABASE_URL": stack.settings.database_url}
    args = build_parser().parse_args(
        ["user", "add", "zed", "--role", "deployer", "--slots", "docs-*", "--password-stdin"]
    )
    out = io.StringIO()
    assert (
        manage_users(
            args, Settings.from_env(environ, data_dir=str(stack.settings.data_dir)), io.StringIO(PASSWORD + "\n"), out
        )
        == 0
    )
    assert out.getvalue() == "added zed (deployer: docs-*)\n"
    answer = stack.client.post("/signin", data={"name": "zed", "password": PASSWORD}, follow_redirects=False)
    assert answer.status_code == 303
    listed = io.StringIO()
    assert (
        manage_users(build_parser().parse_args(["user", "list"]), Settings.from_env(environ), io.StringIO(), listed)
        == 0
    )
    assert listed.getvalue() == "zed  deployer  docs-*\n"
    entries = stack.client.get("/api/audit", params={"action": "create_user"}, headers=AUTH).json()["entries"]
    assert entries[0]["actor"].startswith("cli:") and entries[0]["target"] == "user zed"


def test_token_lock_unlock_and_audit_commands(live: LiveStack, capsys: pytest.CaptureFixture[str]) -> None:
    add_user(live.client, "dee", "deployer", ["docs-*"])

    def drophost(*argv: str, token: str = TOKEN) -> tuple[int, str, str]:
        code = commands.main(
            list(argv), {"DROPHOST_URL": live.base_url, "DROPHOST_API_TOKEN": token, "HOME": "/nonexistent"}
        )
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    code, out, err = drophost("token", "create", "--user", "dee", "--scope", "deploy:docs-*", "--expires", "90d")
    assert code == 0 and out.startswith("dht_") and "shown only now" in err
    token = out.strip()
    code, out, _ = drophost("lock", "docs-a", "--reason", "freeze", token=token)
    assert (code, out) == (0, "docs-a is locked: freeze\n")
    code, _, err = drophost("lock", "web", token=token)
    assert code == 4 and "no deploy right" in err
    assert drophost("unlock", "docs-a", token=token)[:2] == (0, "docs-a is unlocked\n")
    code, out, _ = drophost("token", "list", token=token)
    assert code == 0 and "deploy:docs-*" in out and "dee" in out
    code, out, _ = drophost("audit", "--slot", "docs-a")
    assert code == 0 and "lock_slot" in out and "unlock_slot" in out and "dee (token" in out
    token_id = json.loads(drophost("token", "list", "--json")[1])["tokens"][0]["id"]
    assert drophost("token", "revoke", str(token_id))[0] == 0
    assert drophost("list", token=token)[0] == 4


def test_the_tokens_and_audit_pages(stack: Stack) -> None:
    add_user(stack.client, "dee", "deployer", ["docs-*"])
    assert (
        stack.client.post("/signin", data={"name": "dee", "password": PASSWORD}, follow_redirects=False).status_code
        == 303
    )
    page = stack.client.get("/tokens")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert page.status_code == 200 and csrf is not None
    made = stack.client.post(
        "/tokens", data={"csrf": csrf.group(1), "name": "laptop", "scopes": "read deploy:docs-a", "expires": "1d"}
    )
    shown = re.search(r'id="new-token">(dht_[^<]+)<', made.text)
    assert made.status_code == 200 and shown is not None
    assert stack.client.get("/api/slots", headers={"Authorization": f"Bearer {shown.group(1)}"}).status_code == 200
    wider = stack.client.post("/tokens", data={"csrf": csrf.group(1), "name": "x", "scopes": "admin"})
    assert wider.status_code == 403 and "wider" in wider.text
    audit_page = stack.client.get("/audit", params={"action": "dashboard_create_token"})
    assert audit_page.status_code == 200 and audit_page.text.count("<td>dee</td>") == 2
    assert "403 scope admin is wider" in audit_page.text
