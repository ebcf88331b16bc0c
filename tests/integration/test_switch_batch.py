from __future__ import annotations

import threading

import pytest

from drophost.errors import DrophostError
from drophost.pipeline import nginxprocess
from drophost.pipeline.deployer import Deployer
from drophost.store import versions
from tests.harness.stacks import Stack


def _first_versions(stack: Stack, slots: list[str]) -> dict[str, tuple[str, str]]:
    """Deploy each slot once, take it offline; return its version-1 config and release."""
    deployer: Deployer = stack.client.app.state.deployer  # type: ignore[attr-defined]
    for slot in slots:
        assert stack.deploy({"index.html": f"{slot} v1"}, slot).status_code == 201
        deployer.take_offline(slot)
    with deployer.pool.connection() as conn:
        rows = {slot: versions.get_version(conn, slot, 1) for slot in slots}
    return {slot: (row["config"], row["release_dir"]) for slot, row in rows.items() if row}


def _switch_together(deployer: Deployer, changes: dict[str, tuple[str, str]]) -> dict[str, object]:
    """Queue every switch while the lock is held, so that they are applied as one batch."""
    outcome: dict[str, object] = {}

    def switch(slot: str, change: tuple[str, str]) -> None:
        try:
            outcome[slot] = deployer.activator.switch(slot, *change)
        except DrophostError as exc:
            outcome[slot] = exc

    threads = [threading.Thread(target=switch, args=item) for item in changes.items()]
    with deployer.activator.lock:
        for thread in threads:
            thread.start()
        while len(deployer.activator._pending) < len(changes):
            threading.Event().wait(0.01)
    for thread in threads:
        thread.join(timeout=60)
    return outcome


def test_slots_added_together_share_one_reload_and_all_go_live(stack: Stack) -> None:
    slots = ["a", "b", "c"]
    configs = _first_versions(stack, slots)
    deployer: Deployer = stack.client.app.state.deployer  # type: ignore[attr-defined]
    outcome = _switch_together(deployer, configs)
    assert len({outcome[slot] for slot in slots}) == 1  # the same old workers: one reload
    for slot in slots:
        old_workers = outcome[slot]
        assert isinstance(old_workers, frozenset)
        assert deployer.nginx.wait_for_reload(old_workers, slot, True)
        assert stack.get(f"/d/{slot}/").text == f"{slot} v1"


def test_a_new_version_of_a_live_slot_moves_its_link_without_a_reload(stack: Stack) -> None:
    for number in (1, 2):
        assert stack.deploy({"index.html": f"v{number}"}, "moving").status_code == 201
    deployer: Deployer = stack.client.app.state.deployer  # type: ignore[attr-defined]
    sites_before = deployer.nginx.sites_path.read_text()
    master = deployer.nginx.pid()
    assert master is not None
    workers = nginxprocess.children(master)
    with deployer.pool.connection() as conn:
        one = versions.get_version(conn, "moving", 1)
    assert one is not None
    assert deployer.activator.switch("moving", one["config"], one["release_dir"]) is None
    assert stack.get("/d/moving/").text == "v1"
    # nginx was not touched: the same workers, the same sites map.
    assert nginxprocess.children(master) <= workers  # no new workers (old ones of the first deploy may still exit)
    assert deployer.nginx.sites_path.read_text() == sites_before


def test_a_rejected_config_in_a_batch_fails_alone(stack: Stack) -> None:
    configs = _first_versions(stack, ["good", "bad"])
    deployer: Deployer = stack.client.app.state.deployer  # type: ignore[attr-defined]
    bad = ('bad "1:/nowhere" extra;\n', configs["bad"][1])
    outcome = _switch_together(deployer, {"good": configs["good"], "bad": bad})
    assert isinstance(outcome["bad"], DrophostError)
    assert "nginx rejected" in outcome["bad"].message
    assert isinstance(outcome["good"], frozenset)
    assert deployer.nginx.wait_for_reload(outcome["good"], "good", True)
    assert stack.get("/d/good/").text == "good v1"
    assert stack.get("/d/bad/").status_code == 404
    assert "extra" not in deployer.nginx.sites_path.read_text()
    assert deployer.nginx.pointed("bad") is None


def test_a_lone_rejected_config_changes_nothing(stack: Stack) -> None:
    for number in (1, 2):
        assert stack.deploy({"index.html": f"solo v{number}"}, "solo").status_code == 201
    deployer: Deployer = stack.client.app.state.deployer  # type: ignore[attr-defined]
    before = deployer.nginx.sites_path.read_text()
    link = deployer.nginx.pointed("solo")
    with deployer.pool.connection() as conn:
        one = versions.get_version(conn, "solo", 1)
    assert one is not None
    with pytest.raises(DrophostError):
        deployer.activator.switch("solo", 'solo "1:/nowhere" extra;\n', one["release_dir"])
    assert deployer.nginx.sites_path.read_text() == before
    assert deployer.nginx.pointed("solo") == link
    assert stack.get("/d/solo/").text == "solo v2"
