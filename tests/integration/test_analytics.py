from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2 as httpx
import psycopg
from starlette.testclient import TestClient

from drophost.settings import Settings
from drophost.web.app import create_app
from tests.harness.auth import AUTH
from tests.harness.stacks import Stack
from tests.harness.zips import make_zip


def _deploy(client: TestClient, slot: str, files: dict[str, bytes | str]) -> None:
    answer = client.post(
        "/api/deployments",
        files={"file": (f"{slot}.zip", make_zip(files), "application/zip")},
        data={"slot": slot},
        headers=AUTH,
    )
    assert answer.status_code == 201, answer.text


def _visit(sites: str, path: str, times: int) -> None:
    for _ in range(times):
        httpx.get(sites + path, timeout=10)


def _report(client: TestClient, query: str = "") -> dict[str, Any]:
    answer = client.get(f"/api/analytics{query}", headers=AUTH)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def _report_when(client: TestClient, expected: int, query: str = "") -> dict[str, Any]:
    """nginx logs a request just after answering it: read until the last line is in."""
    deadline = time.monotonic() + 20
    while True:
        result = _report(client, query)
        if result["requests"]["requests"] >= expected or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 20
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_rotation_and_restart_count_every_request_exactly_once(
    stack_factory: Callable[..., Any], settings: Settings
) -> None:
    chosen, nginx, _process = stack_factory(access_log_interval=3600.0)
    sites = f"http://127.0.0.1:{chosen.sites_listen_port}"
    log_path = chosen.nginx_dir / "access.log"
    with TestClient(create_app(chosen), raise_server_exceptions=False) as client:
        # Not text, so nginx does not compress it: its 1,000 bytes are what the log counts.
        _deploy(client, "demo", {"index.html": "<p>demo</p>", "big.bin": "x" * 1000})
        _deploy(client, "other", {"index.html": "other"})
        _visit(sites, "/d/demo/", 5)
        _visit(sites, "/d/demo/missing", 2)
        _visit(sites, "/d/other/", 3)
        # Not visits: the main port's redirect, the API, and the sites origin outside any slot.
        httpx.get(f"http://127.0.0.1:{chosen.port}/d/demo/", timeout=10)
        httpx.get(f"{sites}/nowhere", timeout=10)
        assert _report_when(client, 10)["requests"]["requests"] == 10
        _visit(sites, "/d/demo/big.bin", 4)
        # Rotate as logrotate does: rename, a few requests still land in the old file, then reopen.
        log_path.rename(log_path.with_name("access.log.1"))
        _visit(sites, "/d/other/", 2)
        nginx.reopen_logs()
        _wait_for(log_path)
        _visit(sites, "/d/demo/", 3)
        assert _report_when(client, 19)["requests"]["requests"] == 19
    _visit(sites, "/d/demo/", 2)  # while the service is stopped
    with TestClient(create_app(chosen), raise_server_exceptions=False) as client:
        result = _report_when(client, 21)
        assert _report(client)["requests"] == result["requests"]  # reading again adds nothing
        assert result["requests"]["requests"] == 21
        assert result["requests"]["status_4xx"] == 2 and result["requests"]["status_5xx"] == 0
        assert result["requests"]["bytes"] >= 4000
        per_slot: dict[str, int] = {}
        for row in result["per_day"]:
            per_slot[row["slot"]] = per_slot.get(row["slot"], 0) + row["requests"]
        assert per_slot == {"demo": 16, "other": 5}
        top = {(row["slot"], row["path"]): row["requests"] for row in result["top_paths"]}
        assert top[("demo", "/d/demo/index.html")] == 10 and top[("demo", "/d/demo/big.bin")] == 4
        assert top[("demo", "/d/demo/missing")] == 2  # the path asked for, not the 404 page
        assert result["deployments"]["total"] == 2 and result["deployments"]["live"] == 2
        only_other = _report(client, "?slot=other")
        assert only_other["requests"]["requests"] == 5 and only_other["deployments"]["total"] == 1
    with psycopg.connect(chosen.database_url) as conn:
        stored = conn.execute("SELECT count(*) FROM access_logs").fetchone()
    assert stored == (21,)


def test_the_service_rotates_a_large_log_without_losing_or_repeating_lines(stack: Stack) -> None:
    stack.deploy({"index.html": "x"}, "demo")
    ingester = stack.client.app.state.ingester  # type: ignore[attr-defined]
    log_path = stack.settings.nginx_dir / "access.log"
    _visit(stack.sites_base_url, "/d/demo/", 3)
    assert _report_when(stack.client, 3)["requests"]["requests"] == 3
    before = log_path.stat().st_ino
    assert ingester.rotate_if_larger_than(1, stack.nginx.reopen_logs)
    _wait_for(log_path)
    _visit(stack.sites_base_url, "/d/demo/", 4)
    assert _report_when(stack.client, 7)["requests"]["requests"] == 7
    assert log_path.stat().st_ino != before
    # A second rotation drops the first rotated file, which was read to its end.
    assert ingester.rotate_if_larger_than(1, stack.nginx.reopen_logs)
    _wait_for(log_path)
    _visit(stack.sites_base_url, "/d/demo/", 1)
    assert _report_when(stack.client, 8)["requests"]["requests"] == 8
    assert _report(stack.client)["requests"]["requests"] == 8


def test_retention_deletes_old_rows(settings: Settings, stack_factory: Callable[..., Any]) -> None:
    chosen, _nginx, _process = stack_factory(access_log_retention_days=1)
    with TestClient(create_app(chosen), raise_server_exceptions=False) as client:
        with psycopg.connect(chosen.database_url) as conn:
            conn.execute(
                "INSERT INTO access_logs (slot, at, path, status, bytes) VALUES"
                " ('demo', now() - interval '3 days', '/d/demo/', 200, 1),"
                " ('demo', now() - interval '1 hour', '/d/demo/', 200, 1)"
            )
        start = (datetime.now(UTC) - timedelta(days=10)).date().isoformat()
        result = _report(client, f"?from={start}")
        assert result["requests"]["requests"] == 1


def test_bad_analytics_queries_are_refused(stack: Stack) -> None:
    for query in (
        "?from=yesterday",
        "?to=2026-13-01",
        "?from=2026-02-01&to=2026-01-01",
        "?slot=Bad!",
        "?from=2000-01-01",
    ):
        answer = stack.client.get(f"/api/analytics{query}", headers=AUTH)
        assert answer.status_code == 422, query
        assert isinstance(answer.json()["error"], str)
    assert stack.client.get("/api/analytics").status_code == 401
    day = _report(stack.client, "?from=2026-01-01&to=2026-01-01")
    assert day["from"] == "2026-01-01T00:00:00+00:00" and day["to"] == "2026-01-02T00:00:00+00:00"


def _line(n: int) -> bytes:
    return (
        f'{{"time":"x","msec":"{1767323045 + n}.000","slot":"demo","method":"GET","uri":"/d/demo/{n}",'
        f'"status":200,"bytes":1,"request_time":0.001,"remote":"127.0.0.1","referer":"","user_agent":""}}\n'
    ).encode()


def _stored_paths(database_url: str) -> list[str]:
    with psycopg.connect(database_url) as conn:
        return [row[0] for row in conn.execute("SELECT path FROM access_logs ORDER BY at").fetchall()]


def test_every_kind_of_rotation_counts_each_line_once(database_url: str, tmp_path: Path) -> None:
    from psycopg_pool import ConnectionPool

    from drophost.analytics.accesslog import Ingester
    from drophost.store.migrate import migrate

    log = tmp_path / "access.log"
    with psycopg.connect(database_url, autocommit=True) as conn:
        migrate(conn)
    with ConnectionPool(database_url, min_size=1, max_size=2, kwargs={"autocommit": True}) as pool:

        def fresh() -> Ingester:  # a restart: nothing but the database is kept
            return Ingester(pool, log, chunk_bytes=300)  # small chunks: many batches

        with open(log, "ab") as out:
            out.write(_line(1) + _line(2) + _line(3)[:20])  # a line still being written
        assert fresh().ingest() == 2
        with open(log, "ab") as out:
            out.write(_line(3)[20:] + _line(4))
        # rename rotation; nginx writes a line to the old file before it reopens
        log.rename(tmp_path / "access.log.1")
        assert fresh().ingest() == 2
        with open(tmp_path / "access.log.1", "ab") as out:
            out.write(_line(5))
        log.write_bytes(_line(6))  # reopened
        assert fresh().ingest() == 2
        with open(tmp_path / "access.log.1", "ab") as out:
            out.write(_line(7))  # very late: still found by its inode
        assert fresh().ingest() == 1
        # copytruncate rotation: the file is copied, then emptied in place
        with open(log, "ab") as out:
            out.write(_line(8))
        assert fresh().ingest() == 1
        (tmp_path / "access.log.2").write_bytes(log.read_bytes())
        with open(log, "r+b") as out:
            out.truncate(0)
        assert fresh().ingest() == 0
        with open(log, "ab") as out:
            out.write(_line(9))
        assert fresh().ingest() == 1
        # the log deleted and created again (the inode may be reused)
        log.unlink()
        log.write_bytes(_line(10) + _line(11))
        assert fresh().ingest() == 2
        assert fresh().ingest() == 0
    assert _stored_paths(database_url) == [f"/d/demo/{n}" for n in range(1, 12)]
