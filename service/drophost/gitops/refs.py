"""Refs other than a branch head (pure): release tags in version order, and pull-request heads.

Version order (the newest tag a `tags: "v*"` site follows):
- the first run of digits and the dot-separated numbers after it are the release: compared as
  numbers, so v1.10 comes after v1.9, and trailing zeros do not count (v2 = v2.0 = v2.0.0);
- anything after the release but a "+build" part (v2.0-rc1, v2.0rc1, v2.0-beta.2) makes a
  pre-release, which comes before the release itself (v2.0-rc1 < v2.0 < v2.0.1); pre-releases of
  one release compare piece by piece, digit runs as numbers (rc2 < rc10, alpha < beta < rc);
- "+build" metadata is ignored (semver's rule), and a tag with no digit at all comes first;
- equal versions (v1.0 and 1.0) are ordered by their names, so the order is total.
This is semver's precedence, extended to any number of release numbers and to `sort -V`'s way of
comparing digit runs inside the pre-release part.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from drophost.errors import ValidationError
from drophost.names import validate_slot

TAGS_PREFIX = "refs/tags/"
PR_FIELD = "{pr}"
# The largest pull-request number a slot is made from (GitHub's are 32-bit).
MAX_PR_NUMBER = 2**31 - 1
_RELEASE = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_PIECES = re.compile(r"[0-9]+|[^0-9]+")
_PULL_REF = re.compile(r"^refs/(?:pull|merge-requests)/[1-9][0-9]{0,9}/head$")

Piece = tuple[int, int, str]


@dataclass(frozen=True, order=True)
class VersionKey:
    release: tuple[int, ...]
    final: bool
    suffix: tuple[Piece, ...]
    name: str


def version_key(tag: str) -> VersionKey:
    """Where a tag stands in version order (see the module docstring)."""
    text = tag.split("+", 1)[0]
    found = _RELEASE.search(text)
    if found is None:
        return VersionKey((), False, _pieces(text), tag)
    numbers = [int(part) for part in found.group().split(".")]
    while numbers and numbers[-1] == 0:
        numbers.pop()
    suffix = text[found.end() :].lstrip("-._")
    return VersionKey(tuple(numbers), not suffix, _pieces(suffix), tag)


def _pieces(text: str) -> tuple[Piece, ...]:
    return tuple((1, int(p), "") if p.isdigit() else (0, 0, p) for p in _PIECES.findall(text.lower()))


def sorted_tags(tags: Iterable[str]) -> list[str]:
    """Tags oldest first, in version order."""
    return sorted(tags, key=version_key)


def newest(tags: Iterable[str]) -> str | None:
    return max(tags, key=version_key, default=None)


def is_older(tag: str, than: str) -> bool:
    return version_key(tag) < version_key(than)


def glob(pattern: str) -> re.Pattern[str]:
    """Branch and tag patterns: "*" matches within one path component, "**" across them, "?" one character."""
    out = []
    for token in re.split(r"(\*\*|\*|\?)", pattern):
        out.append({"**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token, re.escape(token)))
    return re.compile("".join(out))


def matching_tags(tags: Iterable[str], pattern: str) -> list[str]:
    rule = glob(pattern)
    return [tag for tag in tags if rule.fullmatch(tag)]


def tag_ref(tag: str) -> str:
    return TAGS_PREFIX + tag


def tag_of(ref: str | None) -> str | None:
    """The tag a ref names (None: not a tag)."""
    return ref[len(TAGS_PREFIX) :] if ref is not None and ref.startswith(TAGS_PREFIX) else None


def is_pull_ref(ref: str) -> bool:
    """refs/pull/N/head (GitHub, Gitea, Forgejo) or refs/merge-requests/N/head (GitLab)."""
    return _PULL_REF.fullmatch(ref) is not None


def pr_number(value: object) -> int | None:
    """A pull-request number from a payload: a positive integer (never a bool or a text)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_PR_NUMBER:
        return None
    return value


def pr_slot(template: str, number: int) -> str:
    """ "docs-pr-{pr}" + 7 -> "docs-pr-7": made from the number only, never from a branch or title."""
    if pr_number(number) is None:
        raise ValidationError("a pull-request number must be a positive integer")
    return validate_slot(template.replace(PR_FIELD, str(number)))
