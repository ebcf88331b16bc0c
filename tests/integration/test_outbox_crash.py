"""The outbox across a SIGKILL (issue 17): the service is killed after its state changes committed and
before their notifications were delivered; after the restart each idempotency key is delivered once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import httpx2 as httpx
import psycopg
import pytest

from drophost.settings import Settings
from tests.harness.auth import AUTH
from tests.harness.processes import start_nginx, stop_process
from tests.harness.receiver import Receiver
from tests.harness.waiting import wait_until
from tests.integration.service_process import ServiceProcess
from tests.integration.support import site
from tests.zipcraft import std_zip

SECRET = "crash-test-signing-secret"


def api(settings: Settings) -> Callable[..., httpx.Response]:
    def call(method: str, path: str, **kwargs: object) -> httpx.Response:
        url = f"http://127.0.0.1:{settings.port}{path}"
        return httpx.request(method, url, headers=AUTH, timeout=60, trust_env=False, **kwargs)  # type: ignore[arg-type]

    return call


def outbox_rows(settings: Settings) -> list[tuple[str, str, int]]:
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute("SELECT idempotency_key, state, attempts FROM outbox ORDER BY id").fetchall()
    return [(str(key), str(state), int(attempts)) for key, state, attempts in rows]


@pytest.mark.slow
def test_a_restart_after_sigkill_delivers_each_key_exactly_once(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = Receiver()
    receiver.status = 503  # down while the changes happen: nothing is delivered before the kill
    config = tmp_path / "deploy.yaml"
    config.write_text(
        "sites: []\nnotifications:\n"
        f"  - url: {receiver.url('/hook')}\n    format: json\n    events: [live, rollback, offline]\n"
        "    secret_env: NOTIFY_SECRET\n"
    )
    monkeypatch.setenv("NOTIFY_SECRET", SECRET)
    chosen = replace(settings, config=str(config), poll_interval=0, outbox_backoff=0.2, outbox_attempts=1000)
    _, nginx_process = start_nginx(chosen)
    service = ServiceProcess(chosen, tmp_path / "service.log")
    call = api(chosen)
    try:
        service.start()
        for label in ("one", "two"):
            zipped = std_zip(site(label))
            answer = call("POST", "/api/deployments", files={"file": ("s.zip", zipped)}, data={"slot": "s"})
            assert answer.status_code == 201, answer.text
        assert call("POST", "/api/slots/s/rollback", json={"version": 1}).status_code == 200
        assert call("DELETE", "/api/slots/s").status_code == 200
        # Committed with the changes; the first tried and refused by the destination, the others
        # waiting behind it (one destination's rows go out in order): nothing delivered.
        assert wait_until(lambda: [a > 0 for _, _, a in outbox_rows(chosen)] == [True, False, False, False])
        service.kill()
        keys = [key for key, state, _ in outbox_rows(chosen)]
        assert [state for _, state, _ in outbox_rows(chosen)] == ["pending"] * 4
        assert receiver.accepted() == {}

        receiver.status = 200
        service.start()
        assert wait_until(lambda: [s for _, s, _ in outbox_rows(chosen)] == ["sent"] * 4)
        assert receiver.accepted() == {key: 1 for key in keys}
        delivered = [r.json()["event"] for r in receiver.received() if r.answered == 200]
        assert delivered == ["live", "live", "rollback", "offline"]
        # A second restart sends nothing again.
        service.kill()
        service.start()
        assert call("GET", "/api/outbox").json()["deliveries"][0]["state"] == "sent"
        assert receiver.accepted() == {key: 1 for key in keys}
    finally:
        service.kill()
        stop_process(nginx_process)
        receiver.close()


@pytest.mark.slow
def test_a_call_cut_by_sigkill_is_sent_again_after_the_restart_under_the_same_key(
    settings: Settings, tmp_path: Path
) -> None:
    # At least once: the receiver processed the call but the service died before recording the
    # answer, so the restart sends it again, and the repeated key is what lets a receiver drop it.
    receiver = Receiver()
    receiver.status = 200
    receiver.gate.clear()  # the call arrives and waits for its answer
    config = tmp_path / "deploy.yaml"
    config.write_text(
        f"sites: []\nnotifications:\n  - url: {receiver.url('/hook')}\n    format: json\n    events: [live]\n"
    )
    chosen = replace(settings, config=str(config), poll_interval=0, outbox_backoff=0.2)
    _, nginx_process = start_nginx(chosen)
    service = ServiceProcess(chosen, tmp_path / "service.log")
    call = api(chosen)
    try:
        service.start()
        answer = call("POST", "/api/deployments", files={"file": ("s.zip", std_zip(site("one")))}, data={"slot": "s"})
        assert answer.status_code == 201, answer.text
        assert wait_until(lambda: receiver.arrived == 1)
        service.kill()
        # The claim died with the service's transaction: pending, no attempt recorded.
        ((key, state, attempts),) = outbox_rows(chosen)
        assert (state, attempts) == ("pending", 0)
        receiver.gate.set()
        service.start()
        assert wait_until(lambda: [s for _, s, _ in outbox_rows(chosen)] == ["sent"])
        assert receiver.accepted() == {key: 2}
        first, second = receiver.received()
        assert first.body == second.body and first.headers["x-delivery-id"] == second.headers["idempotency-key"] == key
        assert outbox_rows(chosen) == [(key, "sent", 1)]
    finally:
        receiver.gate.set()
        service.kill()
        stop_process(nginx_process)
        receiver.close()
