"""The SQL of analytics: the ingestion cursor, access-log rows, and the report's figures."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from drophost.store.rows import Conn, Row, fetch_all, fetch_one

# Columns written by the ingestion, in COPY order.
ACCESS_LOG_COLUMNS = (
    "slot",
    "at",
    "method",
    "path",
    "status",
    "bytes",
    "duration_ms",
    "remote",
    "referer",
    "user_agent",
)


def lock_cursor(conn: Conn, log_path: str) -> Row:
    """The cursor row of one log, locked until the transaction ends (one ingester at a time)."""
    conn.execute("INSERT INTO access_log_cursors (log_path) VALUES (%s) ON CONFLICT DO NOTHING", (log_path,))
    row = fetch_one(conn, "SELECT * FROM access_log_cursors WHERE log_path = %s FOR UPDATE", (log_path,))
    assert row is not None
    return row


def get_cursor(conn: Conn, log_path: str) -> Row | None:
    return fetch_one(conn, "SELECT * FROM access_log_cursors WHERE log_path = %s", (log_path,))


def save_cursor(conn: Conn, log_path: str, cursor: dict[str, Any]) -> None:
    conn.execute(
        "UPDATE access_log_cursors SET device = %(device)s, inode = %(inode)s, head = %(head)s,"
        " position = %(position)s, prev_device = %(prev_device)s, prev_inode = %(prev_inode)s,"
        " prev_head = %(prev_head)s, prev_position = %(prev_position)s, updated_at = now()"
        " WHERE log_path = %(log_path)s",
        {**cursor, "log_path": log_path},
    )


def insert_access_logs(conn: Conn, rows: Iterable[tuple[Any, ...]]) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY access_logs ({', '.join(ACCESS_LOG_COLUMNS)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def delete_access_logs_before(conn: Conn, cutoff: datetime) -> int:
    cur = conn.execute("DELETE FROM access_logs WHERE at < %s", (cutoff,))
    return cur.rowcount


# -- the report --------------------------------------------------------------------------------
_RANGE = "at >= %(start)s AND at < %(end)s AND (%(slot)s::text IS NULL OR slot = %(slot)s)"


def deployment_counts(conn: Conn, *, start: datetime, end: datetime, slot: str | None) -> Row:
    row = fetch_one(
        conn,
        "SELECT count(*) AS total,"
        " count(*) FILTER (WHERE status = 'live') AS live,"
        " count(*) FILTER (WHERE status = 'expired') AS expired,"
        " count(*) FILTER (WHERE status = 'offline') AS offline,"
        " count(*) FILTER (WHERE status = 'failed') AS failed,"
        " count(*) FILTER (WHERE status = 'superseded') AS superseded"
        " FROM (SELECT CASE WHEN d.state <> 'ready' THEN d.state WHEN s.deployment_id = d.id THEN s.status"
        " ELSE 'superseded' END AS status FROM deployments d LEFT JOIN slots s ON s.slot = d.slot"
        " WHERE d.created_at >= %(start)s AND d.created_at < %(end)s"
        " AND (%(slot)s::text IS NULL OR d.slot = %(slot)s)) shown",
        {"start": start, "end": end, "slot": slot},
    )
    assert row is not None
    return row


def request_totals(conn: Conn, *, start: datetime, end: datetime, slot: str | None) -> Row:
    row = fetch_one(
        conn,
        "SELECT count(*) AS requests, COALESCE(sum(bytes), 0)::bigint AS bytes,"
        " count(*) FILTER (WHERE status BETWEEN 400 AND 499) AS status_4xx,"
        " count(*) FILTER (WHERE status BETWEEN 500 AND 599) AS status_5xx"
        f" FROM access_logs WHERE {_RANGE}",
        {"start": start, "end": end, "slot": slot},
    )
    assert row is not None
    return row


def requests_per_day(conn: Conn, *, start: datetime, end: datetime, slot: str | None) -> list[Row]:
    return fetch_all(
        conn,
        "SELECT (at AT TIME ZONE 'UTC')::date AS day, slot, count(*) AS requests,"
        " COALESCE(sum(bytes), 0)::bigint AS bytes,"
        " count(*) FILTER (WHERE status BETWEEN 400 AND 499) AS status_4xx,"
        " count(*) FILTER (WHERE status BETWEEN 500 AND 599) AS status_5xx"
        f" FROM access_logs WHERE {_RANGE} GROUP BY 1, 2 ORDER BY 1, 2",
        {"start": start, "end": end, "slot": slot},
    )


def top_paths(conn: Conn, *, start: datetime, end: datetime, slot: str | None, limit: int = 10) -> list[Row]:
    return fetch_all(
        conn,
        "SELECT path, slot, count(*) AS requests, COALESCE(sum(bytes), 0)::bigint AS bytes"
        f" FROM access_logs WHERE {_RANGE} GROUP BY path, slot ORDER BY requests DESC, path LIMIT %(limit)s",
        {"start": start, "end": end, "slot": slot, "limit": limit},
    )


def visitors_per_day(conn: Conn, *, start: datetime, end: datetime, slot: str | None) -> list[Row]:
    """Distinct visitors (an address with a user agent) per slot per UTC day."""
    return fetch_all(
        conn,
        "SELECT (at AT TIME ZONE 'UTC')::date AS day, slot,"
        " count(DISTINCT (COALESCE(remote, ''), COALESCE(user_agent, ''))) AS visitors"
        f" FROM access_logs WHERE {_RANGE} GROUP BY 1, 2 ORDER BY 1, 2",
        {"start": start, "end": end, "slot": slot},
    )


def top_paths_by_status(
    conn: Conn, *, start: datetime, end: datetime, slot: str | None, not_found: bool, limit: int = 10
) -> list[Row]:
    """The most requested paths with their answer's status: the 404s alone, or everything else."""
    return fetch_all(
        conn,
        "SELECT path, slot, status, count(*) AS requests, COALESCE(sum(bytes), 0)::bigint AS bytes"
        f" FROM access_logs WHERE {_RANGE} AND (status = 404) = %(not_found)s"
        " GROUP BY path, slot, status ORDER BY requests DESC, path, status LIMIT %(limit)s",
        {"start": start, "end": end, "slot": slot, "not_found": not_found, "limit": limit},
    )
