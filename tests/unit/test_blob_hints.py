from __future__ import annotations

import hashlib
import os
from pathlib import Path

from drophost.pipeline.artifacts import ArtifactStore, decode_hint, encode_hint


def test_a_hint_names_its_digest_in_43_characters() -> None:
    digest = hashlib.sha256(b"page").hexdigest()
    assert len(encode_hint(digest)) == 43
    assert decode_hint(encode_hint(digest)) == digest
    assert decode_hint(digest) == digest  # stores written before keep working


def test_anything_else_is_not_a_hint() -> None:
    for target in ("", "../blobs/ab", "x" * 42, "!" * 43, "é" * 43, "A" * 44):
        assert decode_hint(target) is None


def test_the_store_finds_a_remembered_digest_through_a_small_symlink(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    store.prepare()
    digest = store.add_stream([b"<p>hello</p>"])
    store.remember_crc(1234, 12, digest)
    assert store.digest_hint(1234, 12) == digest
    assert len(os.readlink(store.crc_index / f"{1234:08x}-12")) < 60
    assert store.digest_hint(1234, 13) is None
