"""A subreaper's orphans that have exited are reaped; its own children and live orphans are not."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Run in a process of its own: making pytest a subreaper would hand it every test's orphans.
SCRIPT = textwrap.dedent(
    """
    import os, subprocess, time
    from drophost.processes import become_subreaper, reap_zombies, _children

    def zombies():
        out = []
        for pid in _children():
            with open(f"/proc/{pid}/stat", "rb") as handle:
                if handle.read().rpartition(b")")[2].split()[0] == b"Z":
                    out.append(pid)
        return out

    become_subreaper()
    mine = subprocess.Popen(["sleep", "30"])
    # Each shell exits at once, leaving its background child to us: two exit (zombies), one lives.
    for command in ("true & exit 0", "true & exit 0", "sleep 30 & exit 0"):
        subprocess.run(["sh", "-c", command], check=True)
    deadline = time.monotonic() + 10
    while len(zombies()) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    before = len(zombies())
    reaped = reap_zombies({mine.pid})
    alive = sorted(_children() - {mine.pid})
    print(before, len(reaped), len(zombies()), len(alive), mine.poll() is None)
    for pid in alive:
        os.kill(pid, 9)
    mine.kill()
    """
)


def test_exited_orphans_are_reaped_and_nothing_else() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True)
    before, reaped, left, alive, mine_running = done.stdout.split()
    assert (before, reaped, left) == ("2", "2", "0")
    assert alive == "1"  # the live orphan (sleep) is not touched
    assert mine_running == "True"
