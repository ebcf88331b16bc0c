from __future__ import annotations

import socket
import threading

from bench.burst import read_requests, send_all


def test_requests_framed_by_their_length_are_read_back_whole() -> None:
    requests = [b"POST / HTTP/1.1\r\n\r\n{}", b"", b"x\ny\n" * 50]
    stream = b"".join(b"%d\n%s" % (len(request), request) for request in requests)
    assert read_requests(stream) == requests


def test_every_request_is_answered_on_its_own_connection_with_its_status() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    received: list[bytes] = []

    def serve(count: int) -> None:
        for _ in range(count):
            conn, _ = listener.accept()
            with conn:
                received.append(conn.recv(65536))
                conn.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")

    server = threading.Thread(target=serve, args=(5,))
    server.start()
    try:
        latencies, statuses, sent = send_all(port, [b"GET /%d HTTP/1.1\r\n\r\n" % n for n in range(5)], 2)
    finally:
        server.join(timeout=10)
        listener.close()
    assert statuses == [202] * 5
    assert len(latencies) == len(sent) == 5 and all(t > 0 for t in latencies)
    assert sorted(received) == sorted(b"GET /%d HTTP/1.1\r\n\r\n" % n for n in range(5))
