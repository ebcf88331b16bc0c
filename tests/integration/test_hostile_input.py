"""Small hostile inputs through the real app: each a 4xx sentence, nothing recorded, the old site still served."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.auth import AUTH
from tests.harness.stacks import Stack, running_stack, shared_settings
from tests.integration.support import (
    assert_error,
    deploy_site,
    fetch,
    hashes,
    on_disk,
    recorded,
    served,
    site,
    upload,
)
from tests.zipcraft import std_zip

GOOD = site("the version that stays")
# Deeper than json.loads can recurse, and within the 64 KiB cap of a JSON body.
DEEP = b'{"slot": "site", "files": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"


@pytest.fixture(scope="module")
def shared_stack(scratch_root: Path, postgres_server: str) -> Iterator[Stack]:
    with shared_settings(scratch_root, postgres_server) as settings, running_stack(settings) as stack:
        deploy_site(stack, GOOD)
        yield stack


@pytest.fixture
def live(shared_stack: Stack) -> Iterator[Stack]:
    stack = shared_stack
    before = (recorded(stack.settings), on_disk(stack.settings))
    yield stack
    assert (recorded(stack.settings), on_disk(stack.settings)) == before
    assert served(stack, "site", list(GOOD)) == hashes(GOOD)


@pytest.mark.parametrize("path", ["/api/uploads", "/api/gc", "/api/slots/site/rollback", "/api/deployments"])
def test_deeply_nested_json_is_a_400_not_a_recursion_error(live: Stack, path: str) -> None:
    response = live.client.post(path, content=DEEP, headers={**AUTH, "content-type": "application/json"})
    assert "nests JSON deeper than 64 levels" in assert_error(response, 400, live.settings)


@pytest.mark.parametrize(
    ("field", "value"),
    [("slot", "a\r"), ("slot", " x "), ("slot", "x\n"), ("slot", "site\t"), ("slot", "si\x00te"), ("ttl", " 2h"),
     ("ttl", "2h\n"), ("ttl", "2h\r"), ("ttl", "1\u00a0h")],
)  # fmt: skip
def test_form_fields_with_whitespace_or_control_characters_are_refused_not_trimmed(
    live: Stack, field: str, value: str
) -> None:
    fields = {"slot": "site", field: value}
    response = live.client.post(
        "/api/deployments",
        files={"file": ("site.zip", std_zip({"index.html": "must not go live"}), "application/zip")},
        data=fields,
        headers=AUTH,
    )
    assert "carries whitespace or control characters" in assert_error(response, 422, live.settings)
    assert response.json()["field"] == field


@pytest.mark.parametrize("slot", ["default", "include", "hostnames", "volatile"])
def test_the_words_of_nginxs_map_block_are_refused_as_slot_names_from_every_source(live: Stack, slot: str) -> None:
    zip_bytes = std_zip({"index.html": "must not go live"})
    answers = [
        upload(live, zip_bytes, slot=slot),
        upload(live, zip_bytes, slot=None, filename=f"{slot}.zip"),
        live.client.post("/api/uploads", json={"slot": slot, "files": {}}, headers=AUTH),
        live.client.post(
            "/api/deployments", json={"repo": "https://git.example.lan/x.git", "slot": slot}, headers=AUTH
        ),
    ]
    for response in answers:
        assert f'"{slot}" is reserved' in assert_error(response, 422, live.settings)
        assert response.json()["field"] == "slot"
    assert fetch(live, f"/d/{slot}/").status_code == 404
