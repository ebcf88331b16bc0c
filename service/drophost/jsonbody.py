"""JSON bodies from clients and webhook senders: read as one object, nesting bounded, errors as one sentence."""

from __future__ import annotations

import json
import re
from array import array
from itertools import accumulate
from typing import Any

from drophost.errors import BadRequestError

# No request DropHost reads nests deeper than a few levels; json.loads itself recurses once per
# level and ends in a RecursionError (a 500) about a thousand levels down.
MAX_DEPTH = 64

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 and -1 as signed bytes
_NOT_BRACKET = bytes(set(range(256)) - set(b"[]{}"))
_CHUNK = 64 * 1024


def load_object(body: bytes, *, what: str) -> dict[str, Any]:
    """`body` as a JSON object, or a 400 saying why it is not one (`what`: "the request body")."""
    try:
        text = body.decode(json.detect_encoding(body), "surrogatepass")
    except (UnicodeDecodeError, LookupError):
        raise BadRequestError(f"{what} is not valid JSON") from None
    if nests_deeper_than(text, MAX_DEPTH):
        raise BadRequestError(f"{what} nests JSON deeper than {MAX_DEPTH} levels")
    try:
        data = json.loads(text)
    except ValueError:
        raise BadRequestError(f"{what} is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequestError(f"{what} must be a JSON object")
    return data


def nests_deeper_than(text: str, limit: int) -> bool:
    """Whether arrays and objects in a JSON text nest deeper than `limit`, found without recursion.

    Brackets inside strings do not count; the text need not be valid JSON (json.loads judges that).
    """
    outside_strings = _STRING.sub("", text).encode("utf-8", "surrogatepass")
    brackets = outside_strings.translate(_STEP, _NOT_BRACKET)
    depth = 0
    for start in range(0, len(brackets), _CHUNK):
        depths = list(accumulate(array("b", brackets[start : start + _CHUNK]), initial=depth))
        if max(depths) > limit:
            return True
        depth = depths[-1]
    return False
