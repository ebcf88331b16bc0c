"""The burst sender of bench.gitops (c), run in a process of its own: `python -m bench.burst PORT IN_FLIGHT`.

Reads pre-built HTTP/1.1 requests from stdin (each preceded by its length as a decimal line), sends
them on non-blocking sockets from one thread, IN_FLIGHT at a time, each on a fresh connection, and
prints one JSON object: each request's latency (from creating its socket to the last byte of its
answer), each answer's status, when it was sent, and the CPU time spent sending them. One thread,
and no GIL shared with the benchmark's git server (which serves the burst's deploy from the
benchmark's process), keep the sender's own work out of the latencies it measures.
"""

from __future__ import annotations

import json
import resource
import selectors
import socket
import sys
import time
from dataclasses import dataclass, field


@dataclass
class Exchange:
    request: bytes
    started: float
    sock: socket.socket
    sent: int = 0
    answer: list[bytes] = field(default_factory=list)


def read_requests(stream: bytes) -> list[bytes]:
    requests, at = [], 0
    while at < len(stream):
        end = stream.index(b"\n", at)
        size = int(stream[at:end])
        requests.append(stream[end + 1 : end + 1 + size])
        at = end + 1 + size
    return requests


def send_all(port: int, requests: list[bytes], in_flight: int) -> tuple[list[float], list[int], list[float]]:
    """Each request's latency in seconds, its answer's status and when it was sent (seconds from
    the first), in the order they finished."""
    selector = selectors.DefaultSelector()
    waiting = list(reversed(requests))
    latencies: list[float] = []
    statuses: list[int] = []
    sent: list[float] = []
    began = time.perf_counter()

    def start() -> None:
        request = waiting.pop()
        started = time.perf_counter()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        selector.register(sock, selectors.EVENT_WRITE, Exchange(request, started, sock))

    for _ in range(min(in_flight, len(waiting))):
        start()
    while selector.get_map():
        for key, _events in selector.select(timeout=10):
            exchange: Exchange = key.data
            if exchange.sent < len(exchange.request):
                exchange.sent += exchange.sock.send(exchange.request[exchange.sent :])
                if exchange.sent == len(exchange.request):
                    selector.modify(exchange.sock, selectors.EVENT_READ, exchange)
                continue
            chunk = exchange.sock.recv(65536)
            if chunk:
                exchange.answer.append(chunk)
                continue
            latencies.append(time.perf_counter() - exchange.started)
            sent.append(exchange.started - began)
            selector.unregister(exchange.sock)
            exchange.sock.close()
            statuses.append(int(b"".join(exchange.answer).split(b" ", 2)[1]))
            if waiting:
                start()
    return latencies, statuses, sent


def main() -> None:
    port, in_flight = int(sys.argv[1]), int(sys.argv[2])
    requests = read_requests(sys.stdin.buffer.read())
    before = resource.getrusage(resource.RUSAGE_SELF)
    latencies, statuses, sent = send_all(port, requests, in_flight)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    json.dump({"latencies": latencies, "statuses": statuses, "sent": sent, "cpu": cpu}, sys.stdout)


if __name__ == "__main__":
    main()
