"""`python -m bench`: every benchmark, one after the other (each prints its own table)."""

from __future__ import annotations

from bench import core

if __name__ == "__main__":
    raise SystemExit(core.main())
