"""Apply the numbered SQL files in db/ once each, in order, recording them in a table."""

from __future__ import annotations

from importlib import resources

import psycopg

_LOCK_KEY = 0x64726F70  # "drop": one migrator at a time across processes


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("drophost.sql")
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".sql"))
    return [(name, folder.joinpath(name).read_text()) for name in names]


def migrate(conn: psycopg.Connection[object]) -> list[str]:
    """Apply what is missing; return the names applied now."""
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT name FROM schema_migrations").fetchall()}  # type: ignore[index]
        for name, sql in migration_files():
            if name in done:
                continue
            conn.execute(sql.encode())
            conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
            applied_now.append(name)
    return applied_now
