"""sha256 digests of files and streams: the one loop the server and the CLI's client share."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

CHUNK = 1024 * 1024
_HEX_DIGITS = "0123456789abcdef"


def is_digest(text: str) -> bool:
    """64 lowercase hex characters: the name of a file in the artifact store."""
    # A deploy checks each digest of its file list about three times: stripping the hex digits is a
    # third of the cost of building a set of the characters.
    return len(text) == 64 and not text.strip(_HEX_DIGITS)


def stream_digest(chunks: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def file_chunks(path: Path) -> Iterable[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def file_digest(path: Path) -> str:
    return stream_digest(file_chunks(path))
