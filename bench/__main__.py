"""`python -m bench`: every benchmark, one after the other (each starts its own stack)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from bench import core, hosts, rules, scale

# Later benchmarks (git sources, scale) add their entry point here.
BENCHMARKS: list[Callable[[Sequence[str] | None], int]] = [core.main, scale.main, rules.main, hosts.main]


def main(argv: Sequence[str]) -> int:
    return max(run(argv) for run in BENCHMARKS)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
