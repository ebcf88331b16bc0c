"""Host names and permalinks benchmark (issue 14): a slot at its own host name, a deployment at its own.

Run: `.venv/bin/python -m bench.hosts`; `--only a` or `--only b` runs one half. One real stack
(`drophost up` with its own PostgreSQL and nginx); both sides of each measurement in the same run,
in alternating order, wrk and nginx's workers each pinned to a CPU of their own.

  a wrk req/s of the same page through http://<slot>.localhost:<port>/ vs /d/<slot>/   goal >= 0.95
  b p50 latency of a deployment's permalink, http://<id>--<slot>.localhost:<port>/, with 10,000
    live slots of 20 kept deployments each, vs the slot's live URL <slot>.localhost   goal <= 1.1x

The 10,000 x 20 of (b) are written straight into PostgreSQL and releases/ as the pipeline records
them (deployments, config versions rendered by nginxconfig, slots, sealed release folders), then
`drophost up` is restarted and builds its sites map and links from them, as after any restart:
200,000 deploys through the API would take hours here and measure nothing (b) is about.

Results and how to read them: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg
from tests.harness.scratch import scratch_dir

from bench import client
from bench.report import Row, exit_on_sigterm, median, print_report, seconds
from bench.scale import cpu_seconds, nginx_workers, pin, retag, serving_cpus, typical_page
from bench.site import generate_site, write_folder
from bench.stack import DropHostStack
from drophost import localdb, runner
from drophost.client.digest import deploy_folder
from drophost.client.http import ApiClient
from drophost.pipeline.nginxconfig import render_site_config, template_environment

SERVED = "serve"  # the slot of (a)
DOMAIN = "localhost"  # DROPHOST_SITES_DOMAIN's default, which the stack keeps
SEALED_FOLDER = 0o555
SEALED_FILE = 0o444


@dataclass(frozen=True)
class Options:
    seed: int = 2026
    wrk_seconds: float = 1.0
    rounds: int = 20
    slots: int = 10000
    deployments: int = 20
    only: str = "ab"


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    exit_on_sigterm()
    started = time.perf_counter()
    with scratch_dir("dh-hosts-") as work:
        progress(f"starting drophost up in {work}")
        with DropHostStack(work) as stack:
            rows = run(options, work, stack)
    print_report(rows, started)
    return 0


def parse_args(argv: Sequence[str] | None) -> Options:
    defaults = Options()
    parser = argparse.ArgumentParser(prog="python -m bench.hosts", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--rounds", type=int, default=defaults.rounds, help="wrk rounds of each side")
    parser.add_argument("--slots", type=int, default=defaults.slots, help="live slots for (b)")
    parser.add_argument("--deployments", type=int, default=defaults.deployments, help="kept per slot for (b)")
    parser.add_argument("--only", default=defaults.only, help="which measurements: 'a', 'b' or 'ab'")
    args = parser.parse_args(argv)
    if args.slots < 1 or not 2 <= args.deployments <= 20:
        parser.error("--slots must be at least 1 and --deployments 2 to 20 (what retention keeps)")
    return replace(
        defaults, seed=args.seed, rounds=args.rounds, slots=args.slots, deployments=args.deployments, only=args.only
    )


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def run(options: Options, work: Path, stack: DropHostStack) -> list[Row]:
    rows: list[Row] = []
    if "a" in options.only:
        rows += measure_host_names(options, work, stack)
    if "b" in options.only:
        rows += measure_permalinks(options, stack)
    return rows


# -- (a) by host name vs by path -----------------------------------------------------------
def measure_host_names(options: Options, work: Path, stack: DropHostStack) -> list[Row]:
    files = retag(generate_site(options.seed), "hosts")
    folder = write_folder(files, work / "hosts")
    result = deploy_folder(ApiClient(f"http://{client.HOST}:{stack.port}", stack.token), folder, slot=SERVED)
    stack.check_served(SERVED, result["id"])
    page = typical_page(files)
    host = f"{SERVED}.{DOMAIN}:{stack.sites_port}"
    clean = page.removesuffix(".html")  # its .html URL answers 301 to this one (clean_urls)
    sides = {"path": (f"/d/{SERVED}/{clean}", None), "host": (f"/{clean}", host)}
    expected = next(item.data for item in files if item.path == page)
    for path, named in sides.values():
        answer = client.request(stack.sites_port, "GET", path, headers={"Host": named} if named else None, timeout=10)
        if answer.status != 200 or answer.body != expected:
            raise RuntimeError(f"{named or 'the sites origin'}{path} answered {answer.status}, not the page")
    samples = alternate(stack, sides, options, latency=False)
    rps = {side: [rate for rate, _, _ in found] for side, found in samples.items()}
    cpu = {side: [used for _, _, used in found] for side, found in samples.items()}
    for number in range(options.rounds):
        progress(f"(a) round {number + 1}: by path {rps['path'][number]:,.0f}/s, by host {rps['host'][number]:,.0f}/s")
    ratio = median(ratios(rps["host"], rps["path"]))
    us = {side: median(values) * 1e6 for side, values in cpu.items()}
    size = len(expected)
    return [
        Row(
            f"(a) wrk req/s, {size / 1000:.0f} kB page at {SERVED}.localhost vs /d/{SERVED}/, same files, keep-alive, "
            f"median of {options.rounds} ratios{pinned_text()}",
            f"by path: {median(rps['path']):,.0f}/s",
            f"{median(rps['host']):,.0f}/s",
            f"{ratio:.2f}",
            ">= 0.95",
            ratio >= 0.95,
        ),
        Row(
            "(a) the same: nginx workers' CPU per request (utime+stime)",
            f"by path: {us['path']:.1f} us",
            f"{us['host']:.1f} us",
            f"{us['host'] / us['path']:.2f}",
            "(reported)",
            None,
        ),
    ]


# -- (b) permalinks with 10,000 slots of 20 deployments ----------------------------------------
def measure_permalinks(options: Options, stack: DropHostStack) -> list[Row]:
    began = time.perf_counter()
    first = seed(stack, options.slots, options.deployments)
    took = seconds(time.perf_counter() - began)
    progress(f"(b) {options.slots:,} slots x {options.deployments} deployments written in {took}")
    began = time.perf_counter()
    stack.stop()
    stack.start(timeout=600)
    progress(f"(b) restarted with them in {seconds(time.perf_counter() - began)}")
    p50: dict[str, list[float]] = {"live": [], "permalink": []}
    cpu: dict[str, list[float]] = {"live": [], "permalink": []}
    for number in range(options.rounds):
        # A different slot and an older (not live) deployment of it each round.
        slot_index = number * 7919 % options.slots
        kept = number % (options.deployments - 1)
        slot = slot_name(slot_index)
        live_id = deployment_id(slot_index, options.deployments - 1, options.deployments, first)
        old_id = deployment_id(slot_index, kept, options.deployments, first)
        port = stack.sites_port
        sides = {"live": ("/", f"{slot}.{DOMAIN}:{port}"), "permalink": ("/", f"{old_id}--{slot}.{DOMAIN}:{port}")}
        for side, shown in (("live", live_id), ("permalink", None)):
            path, host = sides[side]
            body = client.request(port, "GET", path, headers={"Host": host}, timeout=10).body
            if body != seeded_page(slot, shown):
                raise RuntimeError(f"{host}{path} does not serve its deployment of {slot}: {body[:200]!r}")
        # Live, permalink, permalink, live (or the reverse): a drift of the machine's load within
        # the round weighs on both sides alike; each side's p50 is the mean of its two runs.
        found = alternate(stack, sides, replace(options, rounds=2), latency=True, first=2 * number)
        for side in p50:
            p50[side].append(sum(run[1] for run in found[side]) / 2)
            cpu[side].append(sum(run[2] for run in found[side]) / 2)
        progress(
            f"(b) round {number + 1}, {slot}: live p50 {micros(p50['live'][-1])}, "
            f"permalink of deployment {old_id} p50 {micros(p50['permalink'][-1])}"
        )
    ratio = median(ratios(p50["permalink"], p50["live"]))
    size = f"{options.slots:,} live slots x {options.deployments} kept deployments"
    return [
        Row(
            f"(b) p50 latency, a kept deployment's permalink <id>--<slot>.localhost vs the slot's live "
            f"<slot>.localhost, {size}, 1 keep-alive connection, rounds of live, permalink, permalink, live, "
            f"median of {options.rounds} ratios{pinned_text()}",
            f"live URL: {micros(median(p50['live']))}",
            micros(median(p50["permalink"])),
            f"{ratio:.2f}",
            "<= 1.1x",
            ratio <= 1.1,
        ),
        Row(
            "(b) the same: nginx workers' CPU per request (utime+stime)",
            f"live URL: {median(cpu['live']) * 1e6:.1f} us",
            f"{median(cpu['permalink']) * 1e6:.1f} us",
            f"{median(ratios(cpu['permalink'], cpu['live'])):.2f}",
            "(reported)",
            None,
        ),
    ]


def slot_name(index: int) -> str:
    return f"site-{index:05d}"


def deployment_id(slot_index: int, number: int, per_slot: int, first: int) -> int:
    """The id of a slot's `number`-th seeded deployment (0 oldest): each slot's ids are consecutive."""
    return first + slot_index * per_slot + number


def seeded_page(slot: str, deployment: int | None) -> bytes:
    """A slot's live page names its deployment; the older ones share one page (one file, linked)."""
    which = f"deployment {deployment}" if deployment is not None else "an older deployment"
    return f"<!doctype html><title>{slot}</title><p>{slot}, {which}</p>\n".encode()


def seed(stack: DropHostStack, slots: int, per_slot: int) -> int:
    """Write `slots` live slots of `per_slot` deployments each (the newest live); the first id.

    Ids start after the ones the service gave already, and its sequence is moved past them. The
    release folders are written meanwhile, in a thread: this disk makes a folder in about a
    millisecond, so they take as long as the rows.
    """
    releases = stack.data_dir / "releases"
    with psycopg.connect(postgres_dsn(stack.data_dir), autocommit=True) as conn:
        row = conn.execute("SELECT COALESCE(max(id), 0) FROM deployments").fetchone()
        first = int(row[0]) + 1 if row else 1
        with ThreadPoolExecutor(1) as writer:
            written = writer.submit(write_releases, releases, slots, per_slot, first)
            with conn.transaction():
                write_rows(conn, releases, slots, per_slot, first)
            written.result()
    return first


def write_rows(conn: psycopg.Connection[Any], releases: Path, slots: int, per_slot: int, first: int) -> None:
    """The rows a deploy records: deployments, config versions (rendered as the pipeline renders
    them), the slots and their activations."""
    env = template_environment()
    with conn.cursor().copy("COPY deployments (id, slot, state, source, files, bytes, finished_at) FROM STDIN") as copy:
        for slot_index, number, ident in seeded_ids(slots, per_slot, first):
            slot = slot_name(slot_index)
            size = len(seeded_page(slot, ident if number == per_slot - 1 else None))
            copy.write_row((ident, slot, "ready", "upload", 1, size, "now"))
    with conn.cursor().copy(
        "COPY config_versions (slot, version, deployment_id, release_dir, config, sha256, status) FROM STDIN"
    ) as copy:
        for slot_index, number, ident in seeded_ids(slots, per_slot, first):
            slot = slot_name(slot_index)
            release = releases / slot / str(ident)
            config = render_site_config(env, slot=slot, version=number + 1, release_dir=release, deployment_id=ident)
            status = "active" if number == per_slot - 1 else "inactive"
            copy.write_row((slot, number + 1, ident, str(release), config.text, config.sha256, status))
    with conn.cursor().copy("COPY slots (slot, active_version, deployment_id, status) FROM STDIN") as copy:
        for slot_index in range(slots):
            live = deployment_id(slot_index, per_slot - 1, per_slot, first)
            copy.write_row((slot_name(slot_index), per_slot, live, "live"))
    conn.execute(
        "INSERT INTO activations (slot, version, action) SELECT slot, active_version, 'deploy' FROM slots"
        " WHERE slot LIKE 'site-%'"
    )
    conn.execute("SELECT setval('deployments_id_seq', (SELECT max(id) FROM deployments))")


def seeded_ids(slots: int, per_slot: int, first: int) -> Iterator[tuple[int, int, int]]:
    """(slot index, deployment number within the slot, deployment id) of every seeded deployment."""
    for slot_index in range(slots):
        for number in range(per_slot):
            yield slot_index, number, deployment_id(slot_index, number, per_slot, first)


def write_releases(releases: Path, slots: int, per_slot: int, first: int) -> None:
    """Sealed one-page releases, as releases.seal leaves them: files 0444, folders 0555. The older
    deployments of a slot share one file (hard links, as unchanged files share a blob in the store)."""
    for slot_index in range(slots):
        slot = slot_name(slot_index)
        (releases / slot).mkdir(parents=True)
        shared: Path | None = None
        for number in range(per_slot):
            ident = deployment_id(slot_index, number, per_slot, first)
            folder = releases / slot / str(ident)
            os.mkdir(folder)
            page = folder / "index.html"
            if number == per_slot - 1:
                write_file(page, seeded_page(slot, ident))
            elif shared is None:
                shared = page
                write_file(page, seeded_page(slot, None))
            else:
                os.link(shared, page)
            os.chmod(folder, SEALED_FOLDER)


def write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SEALED_FILE)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def postgres_dsn(data_dir: Path) -> str:
    """The DSN of `drophost up`'s own cluster (localdb.LocalPostgres, its default port, socket in run/)."""
    return localdb.LocalPostgres(data_dir / "postgres").dsn


# -- wrk ------------------------------------------------------------------------------------
def alternate(
    stack: DropHostStack,
    sides: Mapping[str, tuple[str, str | None]],
    options: Options,
    *,
    latency: bool,
    first: int = 0,
) -> dict[str, list[tuple[float, float, float]]]:
    """(req/s, p50 seconds, worker CPU seconds per request) of each side per round, sides alternating."""
    found: dict[str, list[tuple[float, float, float]]] = {side: [] for side in sides}
    cpus = serving_cpus()
    master = stack.data_dir / "nginx" / "nginx.pid"
    for number in range(first, first + options.rounds):
        order = list(sides) if number % 2 == 0 else list(sides)[::-1]
        for side in order:
            path, host = sides[side]
            workers = nginx_workers(master)
            if cpus:
                pin(workers, cpus[1])
            before = cpu_seconds(workers)
            output = wrk(
                f"http://{client.HOST}:{stack.sites_port}{path}",
                options.wrk_seconds,
                host=host,
                connections=1 if latency else 16,
                cpu=cpus[0] if cpus else None,
            )
            requests = parse_wrk_requests(output)
            used = (cpu_seconds(workers) - before) / requests
            found[side].append((parse_wrk_rate(output), parse_wrk_p50(output) if latency else 0.0, used))
    return found


def wrk(url: str, duration: float, *, host: str | None, connections: int, cpu: int | None) -> str:
    """wrk's output: 1 thread, keep-alive connections, the latency distribution, a Host header if named."""
    taskset = ["taskset", "-c", str(cpu)] if cpu is not None else []
    header = ["-H", f"Host: {host}"] if host else []
    argv = [*taskset, "wrk", "-t", "1", "-c", str(connections), "-d", f"{duration:.0f}s", "--latency"]
    result = runner.run([*argv, "--timeout", "5s", *header, url], timeout=duration + 30)
    output = result.stdout.decode()
    if "Non-2xx" in output:
        raise RuntimeError(f"wrk got errors:\n{output}")
    return output


def parse_wrk_requests(output: str) -> int:
    found = re.search(r"^\s*(\d+) requests in", output, re.M)
    if not found:
        raise ValueError(f"no request count in wrk's output:\n{output}")
    return int(found.group(1))


def parse_wrk_rate(output: str) -> float:
    found = re.search(r"^Requests/sec:\s*([0-9.]+)", output, re.M)
    if not found:
        raise ValueError(f"no Requests/sec in wrk's output:\n{output}")
    return float(found.group(1))


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def parse_wrk_p50(output: str) -> float:
    """The 50% line of wrk's --latency distribution, in seconds."""
    found = re.search(r"^\s*50%\s+([0-9.]+)(us|ms|s)\s*$", output, re.M)
    if not found:
        raise ValueError(f"no 50% latency in wrk's output:\n{output}")
    return float(found.group(1)) * _UNITS[found.group(2)]


def ratios(ours: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """Per-round ratios: the two sides of a round ran back to back, under the same load."""
    return [a / b for a, b in zip(ours, baseline, strict=True)]


def micros(value: float) -> str:
    return f"{value * 1e6:.0f} us" if value < 0.01 else seconds(value)


def pinned_text() -> str:
    cpus = serving_cpus()
    return f", nginx on CPU {cpus[1]}, wrk on CPU {cpus[0]}" if cpus else ""


if __name__ == "__main__":
    raise SystemExit(main())
