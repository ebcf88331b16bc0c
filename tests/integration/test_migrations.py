"""Migrations that change data: each applied to rows an older version wrote."""

from __future__ import annotations

import psycopg

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
