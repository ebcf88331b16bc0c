"""A batch of blobs in one request body, stored blob by blob as the bytes arrive.

The framing, repeated for each blob: one line `<sha256 hex> <size in bytes>\\n`, then exactly that
many bytes. Each blob is hashed while it is written to the artifact store's tmp folder and adopted
as soon as its last byte arrives, so a batch cut short keeps every blob it completed, and the
memory used is one piece of the body, never a blob or the batch.
"""

from __future__ import annotations

from typing import Any

from drophost.digests import is_digest
from drophost.errors import BadRequestError, ValidationError
from drophost.pipeline.artifacts import ArtifactStore, ArtifactWriter

# 64 hex digits, a space, up to 20 decimal digits, the newline.
MAX_HEADER = 64 + 1 + 20 + 1


def frame_header(digest: str, size: int) -> bytes:
    """The line that opens a blob in a batch (pure)."""
    return f"{digest} {size}\n".encode()


class BlobBatch:
    """Fed the body piece by piece (`feed`), then `end`; `close` always, to drop a half-written blob."""

    def __init__(self, artifacts: ArtifactStore, wanted: frozenset[str], *, max_blob_bytes: int) -> None:
        self.artifacts = artifacts
        self.wanted = wanted
        self.max_blob_bytes = max_blob_bytes
        self.complete = 0  # blobs received whole, stored now or before
        self.stored = 0  # of those, blobs this batch added to the store
        self.bytes = 0
        self._header = bytearray()
        self._digest: str | None = None  # the blob being received
        self._size = 0
        self._left = 0
        self._writer: ArtifactWriter | None = None  # None while dropping the bytes of a stored blob

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._digest is None:
                view = self._read_header(view)
                continue
            take = view[: self._left]
            if self._writer is not None:
                self._writer.write(bytes(take))
            self._left -= len(take)
            view = view[len(take) :]
            if not self._left:
                self._finish_blob()

    def end(self) -> None:
        """The body is over: a blob or header left unfinished makes the batch fail (its complete blobs stay)."""
        kept = f"the {self.complete} complete blobs before it were kept"
        if self._digest is not None:
            arrived = self._size - self._left
            raise BadRequestError(
                f"the batch ended inside blob {self._digest}: {arrived} of its {self._size} bytes arrived; {kept}",
                digest=self._digest,
                kept=self.complete,
            )
        if self._header:
            raise BadRequestError(f"the batch ended inside a blob's header line; {kept}", kept=self.complete)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def report(self) -> dict[str, Any]:
        return {"blobs": self.complete, "stored": self.stored, "bytes": self.bytes}

    def _read_header(self, view: memoryview) -> memoryview:
        newline = bytes(view[: MAX_HEADER - len(self._header)]).find(b"\n")
        if newline < 0:
            self._header += view[: MAX_HEADER - len(self._header)]
            if len(self._header) >= MAX_HEADER:
                raise self._malformed()
            return view[len(view) :]
        self._header += view[:newline]
        line = bytes(self._header)
        self._header.clear()
        self._start_blob(line)
        return view[newline + 1 :]

    def _start_blob(self, line: bytes) -> None:
        digest, _, size_text = line.decode("ascii", "replace").partition(" ")
        if not is_digest(digest) or not size_text.isdigit() or not size_text.isascii():
            raise self._malformed()
        size = int(size_text)
        if digest not in self.wanted:
            raise ValidationError(
                f"blob {digest} is not part of this upload's file list; {self._kept()}", digest=digest
            )
        if size > self.max_blob_bytes:
            raise ValidationError(
                f"blob {digest} is {size} bytes, more than the limit of {self.max_blob_bytes}; {self._kept()}",
                digest=digest,
            )
        self._digest, self._size, self._left = digest, size, size
        # Already stored (an earlier deploy, another batch, a broken attempt): its bytes are dropped.
        self._writer = None if self.artifacts.has(digest) else self.artifacts.writer(limit=size)
        if not size:
            self._finish_blob()

    def _finish_blob(self) -> None:
        digest, writer = self._digest, self._writer
        assert digest is not None
        self._digest, self._writer = None, None
        if writer is not None:
            try:
                writer.finish(digest)
            except ValidationError:
                raise ValidationError(
                    f"blob {digest}: its bytes do not match its sha256, so it was not stored; {self._kept()}",
                    digest=digest,
                ) from None
            finally:
                writer.close()
            self.stored += 1
        self.complete += 1
        self.bytes += self._size

    def _kept(self) -> str:
        return f"the {self.complete} blobs before it in this batch were kept"

    def _malformed(self) -> BadRequestError:
        return BadRequestError(
            f"the batch is malformed after {self.complete} blobs: each blob starts with a line "
            "'<sha256 hex> <size>' and a newline; " + self._kept(),
            kept=self.complete,
        )
