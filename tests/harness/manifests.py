"""Hostile deploy.yaml files: each must be refused with one sentence (file:line where there is one)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Hostile:
    name: str
    raw: bytes
    # The start of the error sentence: the file, and its line where there is one.
    starts: str
    says: str


HOSTILE = [
    Hostile(
        "control byte in a comment",
        b"sites: []\n# a \x07 bell\n",
        "deploy.yaml:2: ",
        "control character (U+0007)",
    ),
    Hostile("NUL", b"sites: []\n\x00\n", "deploy.yaml:2: ", "control character (U+0000)"),
    Hostile("invalid UTF-8", b"sites: []\n# caf\xe9\n", "deploy.yaml:2: ", "is not UTF-8 text (byte 0xe9)"),
    Hostile("UTF-16 BOM", "sites: []\n".encode("utf-16"), "deploy.yaml: ", "is UTF-16 text; save it as UTF-8"),
    Hostile("2 MB", b"sites: []\n" + b"# " + b"x" * (2 * 1024 * 1024) + b"\n", "deploy.yaml: ", "is larger than"),
    Hostile(
        "10,000 nested lists",
        b"sites: " + b"[" * 10_000 + b"]" * 10_000 + b"\n",
        "deploy.yaml:1: ",
        "is nested deeper than 12 levels",
    ),
    Hostile("tabs", b"sites:\n\t- slot: a\n", "deploy.yaml:2: ", "found character '\\t' that cannot start any token"),
    Hostile("a 5,000-digit number", b"sites: []\npoll_interval: " + b"9" * 5000 + b"\n", "deploy.yaml:2: ", "cannot"),
    Hostile("an impossible date", b"sites: []\npoll_interval: 2026-13-45\n", "deploy.yaml:2: ", "cannot be read"),
]
