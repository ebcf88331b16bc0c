"""A burst of deliveries: group-committed answers, replays within a burst, and the settle hold.

Real PostgreSQL everywhere; the settle hold uses an hour so that no assertion depends on timing.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2 as httpx
import psycopg
import pytest
from psycopg_pool import ConnectionPool

from drophost.errors import ConflictError
from drophost.gitops.controller import GitOps
from drophost.gitops.intake import Push
from drophost.gitops.targets import branch_target
from drophost.store import gitjobs
from drophost.store.groupcommit import GroupCommit
from drophost.store.migrate import migrate
from drophost.store.rows import Conn
from tests.harness.git import GitHttpServer
from tests.harness.gitjobs import queue_webhook_deploy
from tests.harness.stacks import GitopsFactory, Served
from tests.harness.waiting import wait_until
from tests.harness.webhooks import ENV, hex_hmac, site_yaml

HOUR = 3600.0


@pytest.fixture
def pool(database_url: str) -> Iterator[ConnectionPool[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        migrate(conn)
        conn.execute("CREATE TABLE written (name text PRIMARY KEY)")
    opened: ConnectionPool[Any] = ConnectionPool(database_url, min_size=1, max_size=4, kwargs={"autocommit": True})
    with opened:
        yield opened


def written(pool: ConnectionPool[Any]) -> list[str]:
    with pool.connection() as conn:
        return [row[0] for row in conn.execute("SELECT name FROM written ORDER BY name").fetchall()]


def test_concurrent_callers_share_one_commit_and_each_gets_its_own_outcome(pool: ConnectionPool[Any]) -> None:
    batches: list[list[str]] = []
    first_batch_entered = threading.Event()
    release_first_batch = threading.Event()

    def write(conn: Conn, names: Sequence[str]) -> list[str | BaseException]:
        batches.append(list(names))
        if len(batches) == 1:
            first_batch_entered.set()
            release_first_batch.wait(timeout=30)
        outcomes: list[str | BaseException] = []
        for name in names:
            if name.startswith("replay"):
                outcomes.append(ConflictError(f"{name} was already received"))
                continue
            conn.execute("INSERT INTO written (name) VALUES (%s)", (name,))
            outcomes.append(f"{name} written")
        return outcomes

    commits: GroupCommit[str, str] = GroupCommit(pool, write)
    with ThreadPoolExecutor(max_workers=6) as threads:
        first = threads.submit(commits.run, "a")
        assert first_batch_entered.wait(timeout=30)
        # These arrive while "a" is being written: they wait, and go together in the next commit.
        rest = [threads.submit(commits.run, name) for name in ("b", "c", "replay-d", "e")]
        assert wait_until(lambda: len(commits._waiting) == 4)
        release_first_batch.set()
        assert first.result(timeout=30) == "a written"
        assert [f.result(timeout=30) for f in rest if not f.exception(timeout=30)] == [
            "b written",
            "c written",
            "e written",
        ]
        refused = rest[2].exception(timeout=30)
    assert isinstance(refused, ConflictError) and "replay-d" in refused.message
    assert batches == [["a"], ["b", "c", "replay-d", "e"]]
    assert written(pool) == ["a", "b", "c", "e"]


def test_a_failed_commit_answers_every_caller_of_the_batch_with_the_error(pool: ConnectionPool[Any]) -> None:
    def write(conn: Conn, names: Sequence[str]) -> list[str | BaseException]:
        for name in names:
            conn.execute("INSERT INTO written (name) VALUES (%s)", (name,))  # "twice" fails the second time
        return [name for name in names]

    commits: GroupCommit[str, str] = GroupCommit(pool, write)
    assert commits.run("twice") == "twice"
    with pytest.raises(psycopg.errors.UniqueViolation):
        commits.run("twice")
    assert commits.run("after") == "after"  # the next batch is not affected
    assert written(pool) == ["after", "twice"]


def queue(conn: Conn, *, settle: float = HOUR, max_settle: float = 2 * HOUR) -> gitjobs.Queued:
    return queue_webhook_deploy(
        conn, slot="site", repo="https://git.example.lan/site.git", pusher="ann", settle=settle, max_settle=max_settle
    )


def test_pushes_during_a_running_deploy_wait_to_settle_in_one_pending_deploy(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        migrate(conn)
        running = queue(conn)
        assert running.new
        job = gitjobs.claim_next(conn)  # nothing was running: the first push starts at once
        assert job is not None and job.deployment_id == running.deployment_id

        burst = [queue(conn) for _ in range(50)]
        assert len({q.deployment_id for q in burst}) == 1
        assert [q.new for q in burst] == [True] + [False] * 49
        pending = burst[0].deployment_id
        assert gitjobs.claim_next(conn) is None  # one running, one pending: never two at once

        gitjobs.fail_job(conn, running.deployment_id, "done")
        assert gitjobs.claim_next(conn) is None  # the pushes have not settled yet
        wait = gitjobs.seconds_to_next_job(conn)
        assert wait is not None and 0 < wait <= HOUR

        # Held no longer than max_settle after it was queued, however many pushes keep coming.
        assert queue(conn, max_settle=0).deployment_id == pending
        job = gitjobs.claim_next(conn)
        assert job is not None and job.deployment_id == pending
        assert gitjobs.seconds_to_next_job(conn) is None


def test_a_push_to_an_idle_slot_is_not_held(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        migrate(conn)
        first = queue(conn)
        assert queue(conn).deployment_id == first.deployment_id  # absorbed before any worker took it
        assert gitjobs.seconds_to_next_job(conn) == 0
        job = gitjobs.claim_next(conn)
        assert job is not None and job.deployment_id == first.deployment_id


def test_the_same_delivery_twice_in_one_commit_is_acted_on_once(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    git_server.repo("site").commit({"index.html": "x"})
    stack = gitops_stack(site_yaml(git_server, "site", "main"), ENV)
    gitops: GitOps = stack.client.app.state.gitops  # type: ignore[attr-defined]
    site = gitops.manifest.sites[0]
    push = Push("github", "delivery-1", (branch_target(site, "main"),), "ann")
    unsigned = Push("generic", None, (branch_target(site, "main"),), "bob")  # no delivery id: never a replay
    with gitops.intake.pool.connection() as conn, conn.transaction():
        first, again, other = gitops.intake._record_pushes(conn, [push, push, unsigned])
    assert isinstance(first, list) and isinstance(other, list)
    assert [q.deployment_id for q in first] == [q.deployment_id for q in other]  # one deploy for both
    assert isinstance(again, ConflictError) and "delivery-1 was already received" in again.message
    with gitops.intake.pool.connection() as conn:
        rows = conn.execute("SELECT provider, delivery_id, deployment_ids FROM webhook_deliveries").fetchall()
    assert rows == [("github", "delivery-1", [first[0].deployment_id])]


def test_a_burst_of_signed_deliveries_through_nginx_is_acknowledged_durably_and_ends_on_the_newest_commit(
    git_server: GitHttpServer, served_stack: Callable[..., Served], database_url: str
) -> None:
    repo = git_server.repo("site")
    repo.commit({"index.html": "0"})
    served = served_stack(site_yaml(git_server, "site", "main"), ENV)
    head = repo.commit({"index.html": "burst"})
    body = json.dumps({"repo": git_server.url("site"), "branch": "main", "pusher": "ann"}).encode()
    signature = "sha256=" + hex_hmac(body)
    deliveries = [str(uuid.uuid4()) for _ in range(40)]

    def deliver(delivery: str) -> httpx.Response:
        headers = {"X-Signature": signature, "X-Delivery-Id": delivery}
        return httpx.post(f"{served.base_url}/api/webhooks/generic", content=body, headers=headers, timeout=60)

    with ThreadPoolExecutor(max_workers=8) as threads:
        answers = list(threads.map(deliver, deliveries))
    assert [a.status_code for a in answers] == [202] * len(deliveries)
    queued = {i for a in answers for i in a.json()["queued"]}

    # Acknowledged means committed: each delivery is recorded with the deploy that covers it.
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT delivery_id, deployment_ids FROM webhook_deliveries").fetchall()
    assert {delivery: ids for delivery, ids in rows} == {
        delivery: answer.json()["queued"] for delivery, answer in zip(deliveries, answers, strict=True)
    }
    replay = deliver(deliveries[7])
    assert replay.status_code == 409 and "already received" in replay.json()["error"]

    def settled() -> bool:
        listed = served.api("GET", "/api/deployments?slot=site").json()["deployments"]
        return all(row["status"] not in ("queued", "building") for row in listed)

    assert wait_until(settled, limit=120)
    listed = served.api("GET", "/api/deployments?slot=site").json()["deployments"]
    assert queued <= {row["id"] for row in listed}
    newest = max(listed, key=lambda row: row["id"])
    assert (newest["status"], newest["commit_sha"]) == ("live", head)
    assert httpx.get(f"{served.sites_url}/d/site/", timeout=10).text == "burst"
