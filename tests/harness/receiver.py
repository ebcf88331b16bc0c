"""An HTTP server on 127.0.0.1 standing in for a forge's API or a chat webhook: it records every request
(path, headers, raw body) and answers with the status the test sets; deliveries are counted by key."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # names in lowercase
    body: bytes
    answered: int

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(self) -> None:
        self.status = 201
        self.answer = b'{"ok": true}'
        self.requests: list[Received] = []
        # Cleared: requests wait (arrived, not yet recorded or answered) until it is set again.
        self.gate = threading.Event()
        self.gate.set()
        self.arrived = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.arrived += 1
                receiver.gate.wait(timeout=60)
                status = receiver.status
                headers = {name.lower(): value for name, value in self.headers.items()}
                with receiver._lock:
                    receiver.requests.append(Received("POST", self.path, headers, body, status))
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(receiver.answer)))
                    self.end_headers()
                    self.wfile.write(receiver.answer)
                except OSError:  # the sender is gone (killed while waiting for this answer)
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def received(self) -> list[Received]:
        with self._lock:
            return list(self.requests)

    def accepted(self) -> Counter[str]:
        """Idempotency keys of the requests answered with a 2xx, with how often each came."""
        return Counter(r.headers.get("idempotency-key", "") for r in self.received() if 200 <= r.answered < 300)

    def wait_for(self, count: int, *, path: str = "", limit: float = 60.0) -> list[Received]:
        """Until `count` requests to paths starting with `path` came (a bound, not a timed assertion)."""
        deadline = time.monotonic() + limit
        while True:
            found = [r for r in self.received() if r.path.startswith(path)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
