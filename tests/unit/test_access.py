"""Roles, scopes and slot patterns, password hashing, the sign-in limiter: pure, no database."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from drophost import access
from drophost.errors import ForbiddenError, ValidationError
from drophost.settings import Settings
from drophost.web import routes


def test_docs_star_matches_docs_slots_but_not_docs2() -> None:
    assert access.matches("docs-*", "docs-a")
    assert access.matches("docs-*", "docs-")
    assert not access.matches("docs-*", "docs2")
    assert not access.matches("docs-*", "docs")
    assert access.matches("docs", "docs") and not access.matches("docs", "docs-a")
    assert access.matches("*", "anything")


def test_a_deployer_may_deploy_only_where_its_patterns_say() -> None:
    scopes = access.role_scopes("deployer", ["docs-*"])
    assert access.permits(scopes, "read")
    assert access.permits(scopes, "deploy", "docs-a")
    assert not access.permits(scopes, "deploy", "docs2")
    assert not access.permits(scopes, "admin")
    viewer = access.role_scopes("viewer", [])
    assert access.permits(viewer, "read") and not access.permits(viewer, "deploy", "docs-a")
    admin = access.role_scopes("admin", [])
    assert all(access.permits(admin, need, "x") for need in access.NEEDS)


def test_a_token_gets_no_scope_wider_than_its_user() -> None:
    deployer = access.role_scopes("deployer", ["docs-*"])
    assert access.check_scopes(["deploy:docs-api-*", "read"], deployer) == {"deploy:docs-api-*", "read"}
    for wider in (["deploy:*"], ["deploy:doc*"], ["admin"], ["deploy:web"]):
        with pytest.raises(ForbiddenError):
            access.check_scopes(wider, deployer)
    with pytest.raises(ForbiddenError):
        access.check_scopes(["deploy:docs-*"], access.role_scopes("viewer", []))
    for bad in ([], "read", ["deploy:docs-?"], ["deploy:Docs"], ["write"]):
        with pytest.raises(ValidationError):
            access.check_scopes(bad, deployer)


def test_expiry_is_a_number_with_m_h_or_d() -> None:
    assert access.parse_expiry("90d") == 90 * 86400
    assert access.parse_expiry("12h") == 12 * 3600
    assert access.parse_expiry(None) is None and access.parse_expiry("") is None
    for bad in ("0d", "1y", "-1d", "d", True):
        with pytest.raises(ValidationError):
            access.parse_expiry(bad)


def test_passwords_are_scrypt_hashes_with_a_salt() -> None:
    stored = access.hash_password("correct horse")
    assert stored.startswith(f"scrypt${access.SCRYPT_N}$8$1$") and "correct" not in stored
    assert stored != access.hash_password("correct horse")
    assert access.verify_password("correct horse", stored)
    assert not access.verify_password("wrong horse", stored)
    assert not access.verify_password("correct horse", None)  # an unknown user: still one scrypt
    with pytest.raises(ValidationError):
        access.hash_password("short")


def test_tokens_are_random_and_only_their_sha256_is_kept() -> None:
    token = access.new_token()
    assert token.startswith(access.TOKEN_PREFIX) and len(token) > 40 and token != access.new_token()
    assert len(access.token_digest(token)) == 64


def test_the_limiter_refuses_after_the_limit_until_the_window_passed() -> None:
    now = [100.0]
    limiter = access.FailureLimiter(3, 60, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.wait_for(["address 1.2.3.4"]) == 0
        limiter.failed(["address 1.2.3.4", "user ann"])
    assert limiter.wait_for(["address 1.2.3.4"]) == 60
    assert limiter.wait_for(["address 5.6.7.8", "user ann"]) == 60  # the user name is limited too
    assert limiter.wait_for(["address 5.6.7.8"]) == 0
    now[0] += 60
    assert limiter.wait_for(["address 1.2.3.4", "user ann"]) == 0


def test_every_route_declares_what_it_needs(tmp_path: Path) -> None:
    endpoints = routes.endpoints(Settings(data_dir=tmp_path))
    undeclared = [f"{e.method} {e.path}" for e in endpoints if e.auth is None]
    assert undeclared == []
    known = {"public", "webhook", "basic", "read", "deploy", "admin"}
    assert {e.auth for e in endpoints} <= known
    # Deploy is decided per slot: from the path, or (these) from the body or the upload.
    body_slot = {
        "/api/deployments",
        "/api/uploads",
        "/api/uploads/{upload_id}",
        "/api/uploads/{upload_id}/batch",
        "/api/uploads/{upload_id}/blobs/{digest}",
        "/api/uploads/{upload_id}/finalize",
        "/api/uploads/deploy",
    }
    assert {e.path for e in endpoints if e.auth == "deploy" and "{slot}" not in e.path} == body_slot


def test_a_route_without_a_declaration_is_refused(tmp_path: Path) -> None:
    endpoint = routes.endpoints(Settings(data_dir=tmp_path))[0]
    with pytest.raises(TypeError, match="declares no auth"):
        routes.starlette_route(replace(endpoint, auth=None))
