"""The batch framing: the server's parser fed in pieces of any size, and the client's planner."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from drophost.client.digest import Blob, frame_header, plan_batches
from drophost.errors import BadRequestError, ValidationError
from drophost.pipeline.artifacts import ArtifactStore
from drophost.pipeline.blobbatch import BlobBatch

BLOBS = [b"", b"a", b"hello world\n" * 100, bytes(range(256)) * 40]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def body(blobs: list[bytes]) -> bytes:
    # The client's framing, parsed by the server: both sides must agree on it.
    return b"".join(frame_header(Blob(sha(blob), Path("-"), len(blob))) + blob for blob in blobs)


def store(tmp_path: Path) -> ArtifactStore:
    artifacts = ArtifactStore(tmp_path / "store")
    artifacts.prepare()
    return artifacts


@pytest.mark.parametrize("piece", [1, 7, 64, 4096, 1 << 20])
def test_the_parser_stores_every_blob_whatever_the_pieces(tmp_path: Path, piece: int) -> None:
    artifacts = store(tmp_path)
    data = body(BLOBS)
    batch = BlobBatch(artifacts, frozenset(map(sha, BLOBS)), max_blob_bytes=1 << 20)
    for start in range(0, len(data), piece):
        batch.feed(data[start : start + piece])
    batch.end()
    batch.close()
    assert batch.report() == {"blobs": 4, "stored": 4, "bytes": sum(map(len, BLOBS))}
    for blob in BLOBS:
        assert artifacts.path(sha(blob)).read_bytes() == blob
    assert list(artifacts.tmp.iterdir()) == []


def test_a_stored_blob_is_read_past_and_a_cut_one_leaves_nothing_behind(tmp_path: Path) -> None:
    artifacts = store(tmp_path)
    artifacts.add_stream([BLOBS[2]], expected=sha(BLOBS[2]))
    batch = BlobBatch(artifacts, frozenset(map(sha, BLOBS)), max_blob_bytes=1 << 20)
    batch.feed(body(BLOBS)[:-10])
    with pytest.raises(BadRequestError, match=f"inside blob {sha(BLOBS[3])}: 10230 of its 10240 bytes"):
        batch.end()
    batch.close()
    assert batch.report() == {"blobs": 3, "stored": 2, "bytes": 1 + 1200}
    assert not artifacts.has(sha(BLOBS[3])) and list(artifacts.tmp.iterdir()) == []


def test_a_blob_over_the_limit_is_refused_before_its_bytes(tmp_path: Path) -> None:
    artifacts = store(tmp_path)
    batch = BlobBatch(artifacts, frozenset(map(sha, BLOBS)), max_blob_bytes=1000)
    with pytest.raises(ValidationError, match=f"blob {sha(BLOBS[2])} is 1200 bytes, more than the limit of 1000"):
        batch.feed(body(BLOBS))
    batch.close()
    assert list(artifacts.tmp.iterdir()) == []


def blobs_of(*sizes: int) -> list[Blob]:
    return [Blob(f"{n:064x}", Path(str(n)), size) for n, size in enumerate(sizes)]


def test_batches_keep_the_order_and_split_the_bytes_evenly() -> None:
    blobs = blobs_of(*[100] * 60)
    batches = plan_batches(blobs, target=1000, at_least=3)
    assert [blob for batch in batches for blob in batch] == blobs
    assert [sum(b.size for b in batch) for batch in batches] == [1000] * 6


def test_a_small_upload_still_fills_every_batch_in_flight_and_a_large_file_goes_alone() -> None:
    assert [len(batch) for batch in plan_batches(blobs_of(10, 10, 10, 10), target=1000, at_least=3)] == [2, 1, 1]
    assert [len(batch) for batch in plan_batches(blobs_of(10, 10), target=1000, at_least=3)] == [1, 1]
    assert plan_batches([], target=1000, at_least=3) == []
    sizes = [[b.size for b in batch] for batch in plan_batches(blobs_of(5000, 10, 10, 10), target=1000, at_least=3)]
    assert sizes[0] == [5000] and sum(map(len, sizes)) == 4
