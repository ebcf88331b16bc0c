from __future__ import annotations

import stat
from pathlib import Path

import pytest
from bench.hosts import (
    deployment_id,
    micros,
    parse_args,
    parse_wrk_p50,
    parse_wrk_rate,
    parse_wrk_requests,
    ratios,
    seeded_ids,
    seeded_page,
    write_releases,
)

WRK_LATENCY_OUTPUT = """Running 2s test @ http://127.0.0.1:40000/
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   180.12us   40.00us   2.10ms   95.00%
    Req/Sec     5.40k   300.00     5.90k    70.00%
  Latency Distribution
     50%  171.00us
     75%  190.00us
     90%  230.00us
     99%    1.20ms
  10800 requests in 2.00s, 3.10MB read
Requests/sec:   5399.50
Transfer/sec:      1.55MB
"""


def test_wrk_latency_output_is_read() -> None:
    assert parse_wrk_p50(WRK_LATENCY_OUTPUT) == pytest.approx(171e-6)
    assert parse_wrk_requests(WRK_LATENCY_OUTPUT) == 10800
    assert parse_wrk_rate(WRK_LATENCY_OUTPUT) == pytest.approx(5399.5)
    assert parse_wrk_p50(WRK_LATENCY_OUTPUT.replace("171.00us", "1.50ms")) == pytest.approx(1.5e-3)
    with pytest.raises(ValueError, match="50%"):
        parse_wrk_p50("Requests/sec: 1\n")


def test_each_slot_gets_consecutive_ids_after_the_first() -> None:
    seeded = list(seeded_ids(3, 4, 10))
    assert [ident for _, _, ident in seeded] == list(range(10, 22))
    assert seeded[4] == (1, 0, 14)
    assert deployment_id(2, 3, 4, 10) == 21  # the last of slot 2 is its live one


def test_ratios_pair_rounds_and_micros_reads_well() -> None:
    assert ratios([2.0, 3.0], [1.0, 2.0]) == [2.0, 1.5]
    with pytest.raises(ValueError):
        ratios([1.0], [1.0, 2.0])
    assert micros(171e-6) == "171 us"
    assert micros(0.25) == "250 ms"


def test_seeded_releases_are_sealed_and_share_the_older_page(tmp_path: Path) -> None:
    write_releases(tmp_path, 2, 3, 5)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("*/*")) == [
        "site-00000/5",
        "site-00000/6",
        "site-00000/7",
        "site-00001/10",
        "site-00001/8",
        "site-00001/9",
    ]
    live = tmp_path / "site-00001" / "10" / "index.html"
    assert live.read_bytes() == seeded_page("site-00001", 10)
    older = [tmp_path / "site-00001" / str(n) / "index.html" for n in (8, 9)]
    assert {p.read_bytes() for p in older} == {seeded_page("site-00001", None)}
    assert older[0].stat().st_ino == older[1].stat().st_ino != live.stat().st_ino
    assert stat.S_IMODE(live.stat().st_mode) == 0o444
    assert stat.S_IMODE(live.parent.stat().st_mode) == 0o555
    for folder in tmp_path.glob("*/*"):
        folder.chmod(0o755)  # so that tmp_path can be removed


def test_arguments_are_checked() -> None:
    assert parse_args(["--only", "b", "--slots", "100", "--deployments", "5"]).deployments == 5
    with pytest.raises(SystemExit):
        parse_args(["--deployments", "21"])
