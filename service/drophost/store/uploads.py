"""SQL of uploads: the file lists of digest deploys waiting for their files."""

from __future__ import annotations

from psycopg.types.json import Jsonb

from drophost.store.rows import Conn, Row, fetch_all, fetch_one


def create_upload(
    conn: Conn,
    *,
    upload_id: str,
    slot: str,
    ttl_seconds: int | None,
    manifest: dict[str, str],
    source_name: str | None = None,
    site: dict[str, object] | None = None,
) -> None:
    conn.execute(
        "INSERT INTO uploads (id, slot, ttl_seconds, manifest, source_name, site) VALUES (%s, %s, %s, %s, %s, %s)",
        (upload_id, slot, ttl_seconds, Jsonb(manifest), source_name, Jsonb(site) if site is not None else None),
    )


def get_upload(conn: Conn, upload_id: str) -> Row | None:
    return fetch_one(
        conn,
        "SELECT id, slot, ttl_seconds, manifest, source_name, site, finalized_at, deployment_id, created_at"
        " FROM uploads WHERE id = %s",
        (upload_id,),
    )


def claim_upload(conn: Conn, upload_id: str) -> bool:
    """Mark an upload as being deployed; False if another request claimed it first."""
    rows = fetch_all(
        conn,
        "UPDATE uploads SET finalized_at = now() WHERE id = %s AND finalized_at IS NULL RETURNING id",
        (upload_id,),
    )
    return bool(rows)


def set_upload_deployment(conn: Conn, upload_id: str, deployment_id: int) -> None:
    conn.execute("UPDATE uploads SET deployment_id = %s WHERE id = %s", (deployment_id, upload_id))


def delete_open_upload(conn: Conn, upload_id: str) -> None:
    """Forget an upload that was never finalized (its request failed before its files were in)."""
    conn.execute("DELETE FROM uploads WHERE id = %s AND finalized_at IS NULL", (upload_id,))


def delete_stale_uploads(conn: Conn, older_than_seconds: int) -> int:
    rows = fetch_all(
        conn,
        "DELETE FROM uploads WHERE finalized_at IS NULL AND created_at < now() - make_interval(secs => %s)"
        " RETURNING id",
        (older_than_seconds,),
    )
    return len(rows)
