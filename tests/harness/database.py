"""PostgreSQL for the tests: a server (DATABASE_URL or a private cluster) and fresh databases on it."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

from drophost.localdb import LocalPostgres


@contextmanager
def running_postgres(scratch_root: Path, environ: Mapping[str, str] = os.environ) -> Iterator[str]:
    """A DSN for a maintenance database: DATABASE_URL if given, else a private cluster."""
    if environ.get("DATABASE_URL"):
        yield environ["DATABASE_URL"]
        return
    cluster = LocalPostgres(scratch_root / "pg", run_as="postgres")
    dsn = cluster.start()
    try:
        yield dsn.replace("dbname=drophost", "dbname=postgres")
    finally:
        cluster.stop()


@contextmanager
def fresh_database(server: str, name: str) -> Iterator[str]:
    """An empty database `name` on the server, dropped afterwards even if clients are still connected."""
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield psycopg.conninfo.make_conninfo(server, dbname=name)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
