"""20 deploys and rollbacks while a load generator hits the slot through nginx: zero failed requests."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx2 as httpx
import pytest

from tests.harness.auth import AUTH
from tests.harness.stacks import Stack
from tests.integration.support import deploy_site

THREADS = 4


def page(version: int) -> bytes:
    return f"<!doctype html><h1>version {version}</h1>".encode() + bytes(2000 + version)


@dataclass
class Expectation:
    """Which versions a request may see: what was live when it started or when it ended."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    allowed: frozenset[int] = frozenset()
    # Counts every change of `allowed`, so the test can wait until each thread saw the latest.
    generation: int = 0

    def set(self, *versions: int) -> int:
        with self.lock:
            self.allowed = frozenset(versions)
            self.generation += 1
            return self.generation

    def get(self) -> tuple[int, frozenset[int]]:
        with self.lock:
            return self.generation, self.allowed


@dataclass
class Tally:
    requests: int = 0
    seen: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    # The newest generation in which one of this thread's requests started (and then succeeded).
    generation: int = 0


def hammer(url: str, expectation: Expectation, stop: threading.Event, tally: Tally) -> None:
    contents = {page(v): v for v in range(1, 40)}
    # No keep-alive: a reload closes old workers' idle connections, and a request sent on one at that
    # instant is lost; browsers retry those (RFC 9112, 9.3.1), httpx does not. Nothing DropHost can change.
    with httpx.Client(timeout=10, trust_env=False, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        while not stop.is_set():
            started, before = expectation.get()
            try:
                response = client.get(url)
            except httpx.HTTPError as exc:
                tally.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            allowed = before | expectation.get()[1]
            tally.requests += 1
            version = contents.get(response.content)
            if response.status_code != 200 or version is None:
                tally.failures.append(f"status {response.status_code}, {len(response.content)} bytes")
            elif version not in allowed:
                tally.failures.append(f"served version {version} while {sorted(allowed)} were live")
            else:
                tally.seen[version] += 1
                tally.generation = started


def wait_until_every_thread_saw(generation: int, tallies: list[Tally], workers: list[threading.Thread]) -> None:
    deadline = time.monotonic() + 60
    while any(t.generation < generation for t in tallies):
        if any(t.failures for t in tallies):
            return  # reported at the end
        assert all(w.is_alive() for w in workers), "a load thread died"
        assert time.monotonic() < deadline, "the load generator stalled"
        time.sleep(0.002)


@pytest.mark.slow
def test_deploys_and_rollbacks_under_load_fail_no_request(stack: Stack) -> None:
    rng = random.Random(20)
    deploy_site(stack, {"index.html": page(1)})
    live, latest = 1, 1
    expectation = Expectation()
    expectation.set(live)
    stop = threading.Event()
    tallies = [Tally() for _ in range(THREADS)]
    workers = [
        threading.Thread(target=hammer, args=(f"{stack.sites_base_url}/d/site/", expectation, stop, tally), daemon=True)
        for tally in tallies
    ]
    for worker in workers:
        worker.start()
    live_versions = []
    try:
        wait_until_every_thread_saw(expectation.get()[0], tallies, workers)
        for step in range(20):
            if step % 2 == 0:
                target = latest + 1
                expectation.set(live, target)
                body = deploy_site(stack, {"index.html": page(target), "other.css": b"x" * target})
                assert body["config_version"] == target
                latest = target
            else:
                target = rng.choice([v for v in range(1, latest + 1) if v != live])
                expectation.set(live, target)
                response = stack.client.post("/api/slots/site/rollback", json={"version": target}, headers=AUTH)
                assert response.json() == {"slot": "site", "active": target}, response.text
            live = target
            live_versions.append(live)
            # Every load thread gets a request answered by the new version before the next switch.
            wait_until_every_thread_saw(expectation.set(live), tallies, workers)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)

    failures = [f for tally in tallies for f in tally.failures]
    assert failures == [], f"{len(failures)} failed requests, e.g. {failures[:5]}"
    seen = sum((t.seen for t in tallies), Counter())
    assert set(live_versions) <= set(seen)
