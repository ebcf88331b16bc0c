"""The delivery worker: sends the outbox's rows (commit statuses, notifications), retrying with backoff.

At least once, each call under a stable idempotency key. A worker claims a due row with FOR UPDATE
SKIP LOCKED in a transaction it holds across the call, and marks it sent in that same transaction
after a 2xx. A crash (SIGKILL) before that commit rolls the claim back: the row is still pending
and is sent after the restart. The one window left is a crash after the receiver answered and before
the commit; then the receiver sees the same key twice, which is why every call carries it
(`Idempotency-Key`, and `id` in json bodies). Exactly once needs the receiver to drop a key it
has seen; no sender can promise it over HTTP.

Rows of one stream (one destination; one commit's statuses) go out in order: a row waits while an
earlier one of its stream is pending, so a retried `pending` can never land after its `success`.
Tokens and signing secrets are read from the environment at each call and never stored or logged.
"""

from __future__ import annotations

import http.client
import logging
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from psycopg_pool import ConnectionPool

from drophost.gitops.webhooks import sign
from drophost.pipeline.feedback import host_of
from drophost.pipeline.messages import auth_headers
from drophost.settings import Settings
from drophost.store import outbox
from drophost.store.rows import Row

log = logging.getLogger(__name__)
WORKERS = 2
MAX_BACKOFF = 3600.0
# Only this much of an answer is read: enough for an error message, never a whole page.
MAX_RESPONSE_BYTES = 4096
# Answers that say "try again later"; any other 4xx will not change by itself and fails at once.
RETRYABLE_4XX = {408, 409, 425, 429}


@dataclass(frozen=True)
class Outcome:
    sent: bool
    status: int | None = None
    error: str | None = None
    retry: bool = True


class Delivery:
    def __init__(
        self, settings: Settings, pool: ConnectionPool[Any], environ: Mapping[str, str], stop: threading.Event
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.environ = environ
        self._stop = stop

    def start(self) -> list[threading.Thread]:
        threads = []
        for number in range(WORKERS):
            thread = threading.Thread(target=self._deliver_forever, name=f"drophost-outbox-{number}", daemon=True)
            thread.start()
            threads.append(thread)
        return threads

    def _deliver_forever(self) -> None:
        while not self._stop.is_set():
            try:
                did = self.deliver_once()
            except Exception:  # the worker must survive a database hiccup
                log.exception("outbox delivery failed")
                did = False
            if not did and not self._stop.is_set():  # stopping: no second wait for the database
                self._stop.wait(timeout=self._idle_wait())

    def _idle_wait(self) -> float:
        try:
            with self.pool.connection() as conn:
                due = outbox.seconds_to_next(conn)
        except Exception:  # the worker must survive a database hiccup
            log.exception("outbox delivery failed")
            return 1.0
        # At least 0.1 s: a due row another worker holds (its call in flight) must not make this one spin.
        return 0.5 if due is None else min(0.5, max(due, 0.1))

    def deliver_once(self) -> bool:
        """Send one due row; False when none is due."""
        with self.pool.connection() as conn, conn.transaction():
            row = outbox.claim_due(conn)
            if row is None:
                return False
            outcome = self.send(row)
            if outcome.sent:
                assert outcome.status is not None
                outbox.mark_sent(conn, row["id"], outcome.status)
                return True
            error = outcome.error or "failed"
            attempts = int(row["attempts"]) + 1
            host = host_of(row["url"])
            if not outcome.retry or attempts >= self.settings.outbox_attempts:
                outbox.mark_failed(conn, row["id"], error, outcome.status)
                log.warning("outbox: %s %s to %s failed after %d attempts: %s", *_what(row), host, attempts, error)
            else:
                delay = backoff(self.settings.outbox_backoff, attempts)
                outbox.retry_later(conn, row["id"], error, outcome.status, delay)
                log.info("outbox: %s %s to %s: %s; again in %.1f s", *_what(row), host, error, delay)
        return True

    def send(self, row: Row) -> Outcome:
        body = str(row["body"]).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "DropHost",
            "Idempotency-Key": row["idempotency_key"],
        }
        secret = None
        if row["secret_env"]:
            secret = self.environ.get(row["secret_env"])
            if not secret:
                return Outcome(False, error=f"the variable {row['secret_env']} is not set", retry=False)
        if row["kind"] == "status":
            assert secret is not None
            headers.update(auth_headers(row["target"], secret))
        else:
            headers.update({"X-Event": row["event"], "X-Delivery-Id": row["idempotency_key"]})
            if secret is not None:
                # The scheme DropHost's own generic webhook verifies (webhooks.py).
                headers["X-Signature"] = f"sha256={sign(secret, body)}"
        try:
            status, reason, answer = post(row["url"], body, headers, timeout=self.settings.outbox_timeout)
        except (OSError, http.client.HTTPException) as exc:
            return Outcome(False, error=_scrub(_network_error(exc), secret))
        if 200 <= status < 300:
            return Outcome(True, status=status)
        error = f"{status} {reason}".strip()
        snippet = _printable(answer)
        if snippet:
            error += f": {snippet}"
        if 300 <= status < 400:
            error += " (redirects are not followed)"
        retry = status >= 500 or status in RETRYABLE_4XX
        return Outcome(False, status=status, error=_scrub(error, secret), retry=retry)


def backoff(base: float, attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones: base, 2*base, 4*base ... at most an hour."""
    return float(min(base * (2 ** max(attempts - 1, 0)), MAX_BACKOFF))


def post(url: str, body: bytes, headers: Mapping[str, str], *, timeout: float) -> tuple[int, str, bytes]:
    """The one outgoing HTTP call: POST, a timeout on connect and on each read, no redirects followed,
    at most MAX_RESPONSE_BYTES of the answer read."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    try:
        connection.request("POST", path, body=body, headers=dict(headers))
        response = connection.getresponse()
        return response.status, response.reason, response.read(MAX_RESPONSE_BYTES)
    finally:
        connection.close()


def _what(row: Row) -> tuple[str, str]:
    return str(row["kind"]), str(row["event"])


def _network_error(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    return str(exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)[:200] or type(exc).__name__


def _printable(data: bytes) -> str:
    text = data.decode("utf-8", "replace")
    return "".join(ch if ch.isprintable() else " " for ch in text).strip()[:200]


def _scrub(text: str, secret: str | None) -> str:
    """An answer that echoes the token must not carry it into the outbox or the log."""
    return text.replace(secret, "***") if secret else text
