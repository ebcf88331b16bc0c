from __future__ import annotations

import argparse

import pytest
from bench.scale import change_one, parse_du_total, parse_sizes, parse_wrk_rps, retag, typical_page
from bench.site import SiteFile, generate_site

WRK_OUTPUT = """Running 4s test @ http://127.0.0.1:40000/d/serve/index.html
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.10ms  300.00us   9.00ms   90.00%
    Req/Sec    14.50k     1.00k   16.00k    70.00%
  58000 requests in 4.00s, 1.20GB read
Requests/sec:  14498.73
Transfer/sec:    300.00MB
"""


def _site() -> list[SiteFile]:
    return generate_site(7, files=40, total_bytes=200_000)


def test_retag_changes_every_file_and_keeps_paths() -> None:
    site = _site()
    tagged = retag(site, "round-1")
    assert [item.path for item in tagged] == [item.path for item in site]
    assert all(new.data != old.data for new, old in zip(tagged, site, strict=True))
    assert retag(site, "round-1") == tagged
    assert retag(site, "round-2") != tagged


def test_change_one_changes_exactly_one_file() -> None:
    site = _site()
    changed = change_one(site, 45, "x")
    differing = [new.path for new, old in zip(changed, site, strict=True) if new.data != old.data]
    assert differing == [site[45 % len(site)].path]
    assert change_one(site, 46, "x")[46 % len(site)] != changed[46 % len(site)]


def test_sizes_must_be_increasing_and_positive() -> None:
    assert parse_sizes("1,100, 1000") == (1, 100, 1000)
    for bad in ("", "0,10", "10,10", "100,1"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_sizes(bad)


def test_du_total_is_the_total_line() -> None:
    assert parse_du_total("1000\t/a\n2000\t/b\n3000\ttotal\n") == 3000
    with pytest.raises(ValueError):
        parse_du_total("1000\t/a\n")


def test_wrk_requests_per_second_and_errors() -> None:
    assert parse_wrk_rps(WRK_OUTPUT) == pytest.approx(14498.73)
    with pytest.raises(RuntimeError):
        parse_wrk_rps(WRK_OUTPUT.replace("Requests/sec", "  Non-2xx or 3xx responses: 5\nRequests/sec"))
    with pytest.raises(ValueError):
        parse_wrk_rps("nothing here")


def test_typical_page_is_the_median_sized_html_file() -> None:
    files = [SiteFile("a.html", b"x" * 10), SiteFile("b.html", b"x" * 30), SiteFile("c.html", b"x" * 20)]
    files.append(SiteFile("big.png", b"x" * 1000))
    assert typical_page(files) == "c.html"
