"""Group commit: the writes of concurrent callers share one transaction and one WAL flush.

A burst of webhook deliveries would otherwise queue up behind each other, each paying its own
round trips and its own commit (an fsync) while holding its slot's lock. Here the first caller to
find no commit in progress leads: it hands every waiting caller's request to `write` at once, in
one transaction, commits, and gives each caller its own outcome. Nothing is answered before the
commit that makes it durable has returned; if that commit fails, every caller of the batch gets
the error and none is acknowledged. A batch's statements are pipelined: an error in one fails the
batch as any other error does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from psycopg_pool import ConnectionPool

from drophost.store.rows import Conn

In = TypeVar("In")
Out = TypeVar("Out")


class _Waiting(Generic[In, Out]):
    def __init__(self, request: In) -> None:
        self.request = request
        self.done = False
        self.outcome: Out | BaseException | None = None


class GroupCommit(Generic[In, Out]):
    def __init__(
        self, pool: ConnectionPool[Any], write: Callable[[Conn, Sequence[In]], list[Out | BaseException]]
    ) -> None:
        """`write(conn, requests)` returns one outcome per request: its result, or the error to raise."""
        self.pool = pool
        self.write = write
        self._changed = threading.Condition()
        self._waiting: list[_Waiting[In, Out]] = []
        self._leading = False

    def run(self, request: In) -> Out:
        """Write `request` with whatever else is waiting; return its result once that is committed."""
        me: _Waiting[In, Out] = _Waiting(request)
        with self._changed:
            self._waiting.append(me)
            while self._leading and not me.done:
                self._changed.wait()
            lead = not me.done
            if lead:
                self._leading = True
                batch, self._waiting = self._waiting, []
        if lead:
            try:
                self._commit(batch)
            finally:
                with self._changed:
                    self._leading = False
                    self._changed.notify_all()
        if isinstance(me.outcome, BaseException):
            raise me.outcome
        return me.outcome  # type: ignore[return-value]

    def _commit(self, batch: list[_Waiting[In, Out]]) -> None:
        try:
            # Pipeline mode: statements whose results `write` does not read go out with the next
            # one that it does (BEGIN with the first, COMMIT with the last), halving the round
            # trips of a batch; each is a wait for the GIL too, behind the event loop under a burst.
            with self.pool.connection() as conn, conn.pipeline(), conn.transaction():
                outcomes = self.write(conn, [waiting.request for waiting in batch])
            for waiting, outcome in zip(batch, outcomes, strict=True):
                waiting.outcome = outcome
        except BaseException as exc:  # nothing was committed: every caller gets the error
            for waiting in batch:
                waiting.outcome = exc
        finally:
            for waiting in batch:
                waiting.done = True
