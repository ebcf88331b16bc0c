"""SQL of the rows family."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

Row = dict[str, Any]


Conn = psycopg.Connection[Any]


def fetch_all(conn: Conn, query: str, params: dict[str, Any] | tuple[Any, ...] = ()) -> list[Row]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query.encode(), params)
        return cur.fetchall()


def fetch_one(conn: Conn, query: str, params: dict[str, Any] | tuple[Any, ...] = ()) -> Row | None:
    rows = fetch_all(conn, query, params)
    return rows[0] if rows else None
