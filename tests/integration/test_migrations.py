"""Migrations that change data: each applied to rows an older version wrote."""

from __future__ import annotations

import psycopg

from drophost.store import audit
from drophost.store.migrate import migrate


def test_credentials_stored_by_an_older_version_are_removed(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        migrate(conn)
        # As an older version stored them, before such URLs were refused.
        conn.execute("DELETE FROM schema_migrations WHERE name = '0007_no_url_credentials.sql'")
        deployment = conn.execute(
            "INSERT INTO deployments (slot, source, state) VALUES ('docs', 'git', 'queued') RETURNING id"
        ).fetchone()
        assert deployment is not None
        urls = {
            "https://deploy:hunter2@git.example.lan/team/docs.git": "https://git.example.lan/team/docs.git",
            "HTTPS://ghp_token@github.com/acme/docs.git": "HTTPS://github.com/acme/docs.git",
            "ssh://git:hunter2@git.example.lan/x.git": "ssh://git.example.lan/x.git",
            "ssh://git@git.example.lan/x.git": "ssh://git@git.example.lan/x.git",  # a user name is no secret
            "git@git.example.lan:team/x.git": "git@git.example.lan:team/x.git",
        }
        for i, url in enumerate(urls):
            conn.execute(
                "INSERT INTO managed_slots (slot, repo, branch, path) VALUES (%s, %s, 'main', '')", (f"s{i}", url)
            )
        conn.execute(
            "INSERT INTO git_jobs (deployment_id, slot, repo, branch) VALUES (%s, 'docs', %s, 'main')",
            (deployment[0], "https://deploy:hunter2@git.example.lan/team/docs.git"),
        )
        assert migrate(conn) == ["0007_no_url_credentials.sql"]
        stored = [row[0] for row in conn.execute("SELECT repo FROM managed_slots ORDER BY slot").fetchall()]
        assert stored == list(urls.values())
        job = conn.execute("SELECT repo FROM git_jobs").fetchone()
        assert job == ("https://git.example.lan/team/docs.git",)


def test_switches_recorded_as_delete_become_offline_and_the_audit_log_keeps_its_words(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        migrate(conn)
        # As an older version wrote them: taking a slot offline was the activation 'delete'.
        conn.execute("DELETE FROM schema_migrations WHERE name = '0016_words.sql'")
        conn.execute("ALTER TABLE activations DROP CONSTRAINT activations_action_check")
        conn.execute(
            "ALTER TABLE activations ADD CONSTRAINT activations_action_check"
            " CHECK (action IN ('deploy', 'rollback', 'delete', 'expire', 'promote'))"
        )
        conn.execute(
            "INSERT INTO activations (slot, version, action) VALUES ('docs', 1, 'deploy'), ('docs', NULL, 'delete')"
        )
        for action in ("delete_slot", "take_offline", "rollback"):
            audit.record(conn, actor="ann", action=action, target="docs", result="200")
        assert migrate(conn) == ["0016_words.sql"]
        actions = [row[0] for row in conn.execute("SELECT action FROM activations ORDER BY id").fetchall()]
        assert actions == ["deploy", "offline"]
        audit.record(conn, actor="ann", action="offline", target="docs", result="200")
        found = [row["action"] for row in audit.list_entries(conn, action="offline")]
        assert found == ["offline", "take_offline", "delete_slot"]  # append-only: the old rows keep their names
        try:
            conn.execute("INSERT INTO activations (slot, version, action) VALUES ('docs', NULL, 'delete')")
        except psycopg.errors.CheckViolation:
            pass
        else:
            raise AssertionError("'delete' is no activation any more")
