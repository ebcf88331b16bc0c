"""JSON bodies: nesting past the limit is a 400 sentence, found without recursion, whatever the depth."""

from __future__ import annotations

import json
import sys

import pytest

from drophost.errors import BadRequestError
from drophost.jsonbody import MAX_DEPTH, load_object, nests_deeper_than


def nested(depth: int, opener: str = "[", closer: str = "]") -> str:
    return '{"a": ' + opener * (depth - 1) + closer * (depth - 1) + "}"


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, sys.getrecursionlimit() * 10, 1_000_000])
@pytest.mark.parametrize(("opener", "closer"), [("[", "]"), ('{"k":', "}")])
def test_deep_nesting_is_a_400_sentence_not_a_recursion_error(depth: int, opener: str, closer: str) -> None:
    if opener == "[":
        body = nested(depth).encode()
    else:  # objects in objects: {"a": {"k": {"k": ... 1}}}
        body = ('{"a": ' + opener * (depth - 1) + "1" + closer * depth).encode()
    with pytest.raises(BadRequestError) as caught:
        load_object(body, what="the request body")
    assert caught.value.message == f"the request body nests JSON deeper than {MAX_DEPTH} levels"


def test_unclosed_nesting_is_refused_too() -> None:
    with pytest.raises(BadRequestError, match="deeper than"):
        load_object(b"[" * 100_000, what="the webhook body")


def test_nesting_up_to_the_limit_is_read() -> None:
    assert load_object(nested(MAX_DEPTH).encode(), what="x") == json.loads(nested(MAX_DEPTH))


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"a": "[" * 1000, "b": '\\"{{{{' * 100, "c": ["]" * 50]})
    assert not nests_deeper_than(text, 2)
    assert load_object(text.encode(), what="x")["a"] == "[" * 1000


@pytest.mark.parametrize(
    ("text", "limit", "deeper"),
    [("{}", 0, True), ("{}", 1, False), ("[[]]", 1, True), ("[[]]", 2, False), ("[]" * 100_000 + "[[]]", 1, True)],
)
def test_nesting_is_counted_exactly(text: str, limit: int, deeper: bool) -> None:
    assert nests_deeper_than(text, limit) is deeper


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "the request body is not valid JSON"),
        (b"\xff\xfe\xfd", "the request body is not valid JSON"),
        (b"[1, 2]", "the request body must be a JSON object"),
        (b'"text"', "the request body must be a JSON object"),
    ],
)
def test_other_bad_bodies_keep_their_sentences(body: bytes, message: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        load_object(body, what="the request body")
    assert caught.value.message == message


def test_utf16_json_is_still_read_as_json_loads_reads_it() -> None:
    assert load_object('{"a": [1]}'.encode("utf-16"), what="x") == {"a": [1]}
