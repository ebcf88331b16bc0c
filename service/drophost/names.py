"""Slot names and TTLs: allow-lists, checked before anything touches disk or nginx."""

from __future__ import annotations

import re
import unicodedata

from drophost.errors import InvalidSlotError, ValidationError

SLOT_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_TTL_PATTERN = re.compile(r"^([0-9]{1,9})([smhdw]?)$")
_TTL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


# A slot name is a key in nginx's sites map, where these words are the map block's own parameters:
# nginx refuses the whole configuration with such a key in it.
RESERVED_SLOTS = frozenset({"default", "include", "hostnames", "volatile"})


def is_valid_slot(name: str) -> bool:
    return bool(SLOT_PATTERN.fullmatch(name)) and name not in RESERVED_SLOTS


def validate_slot(name: str) -> str:
    """Return the slot name unchanged, or raise with a sentence saying what is allowed."""
    if name in RESERVED_SLOTS:
        raise InvalidSlotError(
            f'"{name}" is reserved and cannot be a slot name (nginx gives it a meaning of its own); choose another',
            field="slot",
        )
    if not is_valid_slot(name):
        shown = name if len(name) <= 80 and name.isprintable() else repr(name[:80])
        raise InvalidSlotError(
            f'"{shown}" is not a valid slot name: use 1 to 63 lowercase letters, digits and "-", '
            'not starting or ending with "-"',
            field="slot",
        )
    return name


def validate_new_slot(name: str, *, known: bool) -> str:
    """A slot's name, refusing `--` in one not seen before: <id>--<slot> is a deployment's host name."""
    validate_slot(name)
    if "--" in name and not known:
        raise InvalidSlotError(
            f'"{name}" is not a valid name for a new slot: "--" separates a deployment from its slot in '
            "host names (<id>--<slot>); use a single -",
            field="slot",
        )
    return name


def slot_from_filename(filename: str) -> str:
    """Make an upload's file name into a slot name ("My Site v2.zip" -> "my-site-v2")."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    if base.lower().endswith(".zip"):
        base = base[:-4]
    ascii_only = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_only.lower()).strip("-")[:63].strip("-")
    if not slug:
        raise InvalidSlotError("no slot name could be made from the file name; pass a slot field", field="slot")
    return slug


NO_TTL = 0  # a deploy's `ttl=none`: the slot's time to live is removed (a real TTL is at least 1 second)


def parse_deploy_ttl(value: str | int | None, *, maximum: int) -> int | None:
    """A deploy's ttl: seconds; "none"/"never": NO_TTL; absent: None, and the slot keeps the TTL it has."""
    if isinstance(value, str) and value.strip().lower() in ("none", "never"):
        return NO_TTL
    return parse_ttl(value, maximum=maximum)


def parse_ttl(value: str | int | None, *, maximum: int) -> int | None:
    """Seconds from "3600", "90m", "7d"; None or "" means no expiry."""
    if value is None or value == "":
        return None
    text = str(value).strip().lower()
    match = _TTL_PATTERN.fullmatch(text)
    if not match:
        raise ValidationError(
            f'ttl "{text[:40]}" is not a duration: use seconds or a number with s, m, h, d or w',
            field="ttl",
        )
    seconds = int(match.group(1)) * _TTL_UNITS[match.group(2)]
    if seconds <= 0 or seconds > maximum:
        raise ValidationError(f"ttl must be between 1 second and {maximum} seconds", field="ttl")
    return seconds
