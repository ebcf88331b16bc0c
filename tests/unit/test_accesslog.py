from __future__ import annotations

from datetime import UTC, datetime

import pytest

from drophost.analytics.accesslog import complete_lines, parse_line
from drophost.errors import ValidationError
from drophost.web.analytics import parse_range

LINE = (
    b'{"time":"2026-01-02T03:04:05+00:00","msec":"1767323045.250","slot":"demo","method":"GET",'
    b'"uri":"/d/demo/index.html","status":200,"bytes":512,"request_time":0.004,'
    b'"remote":"127.0.0.1","referer":"","user_agent":"curl/8"}'
)


def test_a_site_request_becomes_a_row() -> None:
    row = parse_line(LINE)
    assert row is not None
    slot, at, method, path, status, size, duration, remote, referer, agent = row
    assert (slot, method, path, status, size, remote, referer, agent) == (
        "demo", "GET", "/d/demo/index.html", 200, 512, "127.0.0.1", None, "curl/8",
    )  # fmt: skip
    assert at == datetime(2026, 1, 2, 3, 4, 5, 250000, tzinfo=UTC)
    assert duration == pytest.approx(4.0)


def test_a_404_is_recorded_with_the_path_requested_decoded_and_others_as_nginx_logged_them() -> None:
    missing = LINE.replace(
        b'"uri":"/d/demo/index.html","status":200', b'"uri":"/d/demo/caf%C3%A9%20x.html","status":404'
    )
    row = parse_line(missing)
    assert row is not None and (row[3], row[4]) == ("/d/demo/caf\u00e9 x.html", 404)
    # $uri is decoded by nginx already: a % in it is the file's own name.
    kept = LINE.replace(b'"uri":"/d/demo/index.html"', b'"uri":"/d/demo/100%25.html"')
    row = parse_line(kept)
    assert row is not None and row[3] == "/d/demo/100%25.html"


@pytest.mark.parametrize(
    "line",
    [
        LINE.replace(b'"slot":"demo"', b'"slot":""'),
        LINE.replace(b'"slot":"demo"', b'"slot":"../etc"'),
        LINE.replace(b'"status":200', b'"status":"x"'),
        LINE[:40],
        b"not json",
        b"[]",
    ],
)
def test_lines_that_are_not_site_requests_are_skipped(line: bytes) -> None:
    assert parse_line(line) is None


def test_a_partial_last_line_waits_for_its_end() -> None:
    lines, used = complete_lines(b"a\nb\nhalf")
    assert lines == [b"a", b"b"] and used == 4
    assert complete_lines(b"half") == ([], 0)


def test_ranges_are_whole_days_in_utc_and_bounded() -> None:
    now = datetime(2026, 3, 10, 12, tzinfo=UTC)
    default = parse_range({}, now=now)
    assert default.start == datetime(2026, 3, 4, tzinfo=UTC) and default.end == now
    one_day = parse_range({"from": "2026-03-01", "to": "2026-03-01", "slot": "demo"}, now=now)
    assert (one_day.start.day, one_day.end.day, one_day.slot) == (1, 2, "demo")
    with pytest.raises(ValidationError):
        parse_range({"from": "2020-01-01"}, now=now)
