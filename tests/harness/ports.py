"""Free TCP ports on the loopback interface."""

from __future__ import annotations

import socket
import threading

# Ports already handed out by this process: the kernel may give a just-closed port again, and two
# calls in a row (the main and the sites port of one stack) must never get the same one.
_given: set[int] = set()
_lock = threading.Lock()


def free_port() -> int:
    with _lock:
        while True:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port not in _given:
                _given.add(port)
                return port
