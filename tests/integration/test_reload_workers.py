from __future__ import annotations

import http.client
import os
import threading
import time

from tests.harness.auth import AUTH
from tests.harness.stacks import Stack


def _workers(master: int) -> set[int]:
    """nginx worker processes of `master` that still accept (not shutting down)."""
    found = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read()
            with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                title = handle.read()
        except OSError:
            continue
        parent = int(stat[stat.rfind(b")") + 2 :].split()[1])
        if parent == master and b"worker process" in title and b"shutting down" not in title:
            found.add(int(entry.name))
    return found


def test_deploys_replace_every_nginx_worker_without_leaving_extra_ones(stack: Stack) -> None:
    master = stack.nginx.pid()
    assert master is not None
    before = _workers(master)
    assert before
    for number in range(1, 5):
        answer = stack.deploy({"index.html": f"<p>{number}</p>"}, "workers")
        assert answer.status_code == 201, answer.text
        assert stack.get("/d/workers/").text == f"<p>{number}</p>"
    # DropHost stops the old workers itself; nginx's master must not respawn them as extra workers.
    deadline = time.monotonic() + 10
    while len(_workers(master)) != len(before) and time.monotonic() < deadline:
        time.sleep(0.05)
    after = _workers(master)
    assert len(after) == len(before)
    assert not after & before


def _get(conn: http.client.HTTPConnection) -> int:
    conn.request("GET", "/d/load/")
    answer = conn.getresponse()
    answer.read()
    return answer.status


def test_no_request_fails_while_deploys_and_rollbacks_reload_nginx(stack: Stack) -> None:
    """Fresh connections never fail; kept-alive ones only see the idle close every reload brings.

    A gracefully stopping nginx worker closes its idle keep-alive connections (with or without
    DropHost stopping it early); HTTP clients retry a request that a reused connection dropped
    before any answer (RFC 9112, 9.3.1), as browsers do, so the keep-alive client does that once.
    """
    assert stack.deploy({"index.html": "<p>0</p>"}, "load").status_code == 201
    port = stack.settings.sites_listen_port
    stop = threading.Event()
    failures: list[str] = []
    served = [0, 0]

    def fresh_connections() -> None:
        while not stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                status = _get(conn)
            except (OSError, http.client.HTTPException) as exc:
                failures.append(f"fresh connection: {exc!r}")
                continue
            finally:
                conn.close()
            served[0] += 1
            if status != 200:
                failures.append(f"fresh connection: {status}")

    def kept_alive() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        reused = False
        while not stop.is_set():
            try:
                status = _get(conn)
            except (ConnectionError, http.client.RemoteDisconnected) as exc:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                if not reused:
                    failures.append(f"keep-alive, new connection: {exc!r}")
                reused = False
                continue
            reused = True
            served[1] += 1
            if status != 200:
                failures.append(f"keep-alive: {status}")
        conn.close()

    threads = [threading.Thread(target=fresh_connections), threading.Thread(target=kept_alive)]
    for thread in threads:
        thread.start()
    try:
        for number in range(1, 11):
            assert stack.deploy({"index.html": f"<p>{number}</p>"}, "load").status_code == 201
            rolled = stack.client.post("/api/slots/load/rollback", json={"version": number}, headers=AUTH)
            assert rolled.status_code == 200, rolled.text
            assert stack.get("/d/load/").text == f"<p>{number - 1}</p>"
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert served[0] > 0 and served[1] > 0
    assert failures == []
