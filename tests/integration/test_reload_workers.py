from __future__ import annotations

import os
import threading
import time

import httpx2 as httpx

from tests.conftest import AUTH, Stack


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


def test_no_request_fails_while_deploys_and_rollbacks_reload_nginx(stack: Stack) -> None:
    assert stack.deploy({"index.html": "<p>0</p>"}, "load").status_code == 201
    stop = threading.Event()
    failures: list[str] = []
    served = [0]

    def hammer(keep_alive: bool) -> None:
        with httpx.Client(base_url=stack.base_url, timeout=10) as session:
            while not stop.is_set():
                try:
                    if keep_alive:
                        answer = session.get("/d/load/")
                    else:
                        answer = httpx.get(stack.base_url + "/d/load/", timeout=10)
                except httpx.TransportError as exc:
                    failures.append(repr(exc))
                    continue
                served[0] += 1
                if answer.status_code != 200:
                    failures.append(f"{answer.status_code} {answer.text[:80]}")

    threads = [threading.Thread(target=hammer, args=(keep,)) for keep in (True, False)]
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
    assert served[0] > 0
    assert failures == []
