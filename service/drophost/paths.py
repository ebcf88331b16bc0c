"""Paths DropHost writes into nginx configs and command lines: allow-listed, never quoted (pure)."""

from __future__ import annotations

import re

_PLAIN_PATH = re.compile(r"^/[A-Za-z0-9/._-]+$")


def is_plain_path(text: str) -> bool:
    """An absolute path of letters, digits and / . _ - with no ".." component: safe as it is in an
    nginx directive or a shell command line."""
    return bool(_PLAIN_PATH.fullmatch(text)) and "/../" not in f"{text}/"
