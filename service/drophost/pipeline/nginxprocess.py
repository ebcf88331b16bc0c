"""nginx as the kernel and the network show it: a master's workers (/proc), the graceful stop of
an old worker, and the requests that ask whether nginx listens and which slot it serves."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl

from drophost.pipeline.nginxconfig import PROBE_USER_AGENT


def children(parent: int) -> frozenset[int]:
    """Child processes of `parent` (nginx's workers of the master)."""
    try:
        # The kernel's own list: far cheaper than reading every process's stat, which matters
        # because the reload wait polls this every few milliseconds while nginx needs the CPU.
        found: set[int] = set()
        for task in os.scandir(f"/proc/{parent}/task"):
            with open(f"/proc/{parent}/task/{task.name}/children", "rb") as handle:
                found.update(int(pid) for pid in handle.read().split())
        return frozenset(found)
    except (OSError, ValueError):
        return _children_by_scan(parent)


def _children_by_scan(parent: int) -> frozenset[int]:
    """Child processes of `parent`, from every process's stat (kernels without task/*/children)."""
    found = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses; the fields after the last ")" do not.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == parent:
            found.add(int(entry.name))
    return frozenset(found)


def accepting_worker(pid: int) -> bool:
    """Is this (old) worker still running and not yet shutting down?"""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            title = handle.read()
    except OSError:
        return False
    # nginx retitles a worker just before it closes its listening sockets on a graceful stop.
    return b"shutting down" not in title and b"worker process" in title


def stop_old_worker(pid: int, master: int) -> None:
    """Graceful stop of one old worker (in-flight requests finish), as the master would send it."""
    if _parent_of(pid) != master:
        return  # gone already, and the number may belong to another process by now
    try:
        os.kill(pid, signal.SIGQUIT)
    except (ProcessLookupError, PermissionError):
        pass  # the master stops it a moment later anyway


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    return int(stat[stat.rfind(b")") + 2 :].split()[1])


def served_slot(host: str, port: int, slot: str, host_header: str = "", *, tls: bool = False) -> str | None:
    """The slot nginx says it served /d/<slot>/ from (None: it has no such slot)."""
    conn: http.client.HTTPConnection
    if tls:
        # Our own nginx on the loopback, asked only which slot it serves: the certificate is for the
        # names browsers use, not for the probe's address, so it is not checked here.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(_loopback(host), port, timeout=2, context=context)
    else:
        conn = http.client.HTTPConnection(_loopback(host), port, timeout=2)
    try:
        headers = {"User-Agent": PROBE_USER_AGENT, **({"Host": host_header} if host_header else {})}
        conn.request("HEAD", f"/d/{slot}/", headers=headers)
        response = conn.getresponse()
        response.read()
        return response.getheader("X-Drophost-Slot")
    except OSError:
        return "unreachable"
    finally:
        conn.close()


def accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((_loopback(host), port), timeout=0.5):
            return True
    except OSError:
        return False


def _loopback(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host in ("::", "[::]") else host.strip("[]"))
