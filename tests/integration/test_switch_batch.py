from __future__ import annotations

import threading

import pytest

from drophost import store
from drophost.deployer import Deployer
from drophost.errors import DrophostError
from tests.conftest import Stack


def _two_versions(stack: Stack, slots: list[str]) -> dict[str, str]:
    """Deploy version 1 and 2 of each slot; return each slot's stored version-1 config."""
    for number in (1, 2):
        for slot in slots:
            assert stack.deploy({"index.html": f"{slot} v{number}"}, slot).status_code == 201
    deployer: Deployer = stack.client.app.state.deployer  # type: ignore[attr-defined]
    with deployer.pool.connection() as conn:
        return {slot: store.get_version(conn, slot, 1)["config"] for slot in slots}  # type: ignore[index]


def _switch_together(deployer: Deployer, changes: dict[str, str]) -> dict[str, object]:
    """Queue every switch while the lock is held, so that they are applied as one batch."""
    outcome: dict[str, object] = {}

    def switch(slot: str, text: str) -> None:
        try:
            outcome[slot] = deployer._switches.switch(slot, text)
        except DrophostError as exc:
            outcome[slot] = exc

    threads = [threading.Thread(target=switch, args=item) for item in changes.items()]
    with deployer._switch_lock:
        for thread in threads:
            thread.start()
        while len(deployer._switches._pending) < len(changes):
            threading.Event().wait(0.01)
    for thread in threads:
        thread.join(timeout=60)
    return outcome


def test_switches_waiting_together_share_one_reload_and_all_go_live(stack: Stack) -> None:
    slots = ["a", "b", "c"]
    configs = _two_versions(stack, slots)
    deployer: Deployer = stack.client.app.state.deployer  # type: ignore[attr-defined]
    outcome = _switch_together(deployer, configs)
    assert len({outcome[slot] for slot in slots}) == 1  # the same old workers: one reload
    for slot in slots:
        assert deployer.nginx.wait_until_serving(slot, 1)
        assert stack.get(f"/d/{slot}/").text == f"{slot} v1"


def test_a_rejected_config_in_a_batch_fails_alone(stack: Stack) -> None:
    configs = _two_versions(stack, ["good", "bad"])
    deployer: Deployer = stack.client.app.state.deployer  # type: ignore[attr-defined]
    outcome = _switch_together(deployer, {"good": configs["good"], "bad": 'bad "1:/nowhere" extra;\n'})
    assert isinstance(outcome["bad"], DrophostError)
    assert "nginx rejected" in outcome["bad"].message
    assert isinstance(outcome["good"], frozenset)
    assert deployer.nginx.wait_until_serving("good", 1)
    assert stack.get("/d/good/").text == "good v1"
    assert stack.get("/d/bad/").text == "bad v2"
    assert "extra" not in deployer.nginx.sites_path.read_text()


def test_a_lone_rejected_config_changes_nothing(stack: Stack) -> None:
    _two_versions(stack, ["solo"])
    deployer: Deployer = stack.client.app.state.deployer  # type: ignore[attr-defined]
    before = deployer.nginx.sites_path.read_text()
    with pytest.raises(DrophostError):
        deployer._switches.switch("solo", 'solo "1:/nowhere" extra;\n')
    assert deployer.nginx.sites_path.read_text() == before
    assert stack.get("/d/solo/").text == "solo v2"
