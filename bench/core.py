"""Benchmark of the core (issues 2, 18): ZIP upload to live, rollback, peak RSS, `drophost deploy DIR`.

Run: `.venv/bin/python -m bench.core` (or `-m bench` for every benchmark). It starts a real stack
(`drophost up` on a free port with a throwaway data directory) and a minimal nginx as the baseline,
measures both side by side, prints one markdown table and removes everything it created.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.scratch import scratch_dir

from bench import client
from bench.report import Row, exit_on_sigterm, median, percentile, print_report, seconds
from bench.site import generate_site, write_folder, write_incompressible_zip, write_zip
from bench.stack import DropHostStack, PlainNginx, memory_kib, reset_peak_rss
from drophost import runner

MB = 1_000_000


@dataclass(frozen=True)
class Options:
    seed: int = 2026
    repeats: int = 7
    slots: int = 200
    rollbacks: int = 50
    rollback_slots: int = 10
    big_bytes: int = 100 * MB
    threads: int = 4
    only: str = "abcd"


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    exit_on_sigterm()
    started = time.perf_counter()
    with scratch_dir("dh-bench-") as work:
        progress(f"starting drophost up and a baseline nginx in {work}")
        with DropHostStack(work) as stack, PlainNginx(work) as plain:
            rows = run(options, work, stack, plain)
    print_report(rows, started)
    return 0


def parse_args(argv: Sequence[str] | None) -> Options:
    defaults = Options()
    parser = argparse.ArgumentParser(prog="python -m bench.core", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--repeats", type=int, default=defaults.repeats, help="timed uploads per side")
    parser.add_argument("--slots", type=int, default=defaults.slots, help="live slots during rollbacks")
    parser.add_argument("--rollbacks", type=int, default=defaults.rollbacks)
    parser.add_argument("--only", default=defaults.only, help="which measurements, e.g. 'b' or 'ad'")
    args = parser.parse_args(argv)
    return Options(seed=args.seed, repeats=args.repeats, slots=args.slots, rollbacks=args.rollbacks, only=args.only)


def run(options: Options, work: Path, stack: DropHostStack, plain: PlainNginx) -> list[Row]:
    rows = []
    if "a" in options.only:
        rows += measure_upload(options, work, stack, plain)
    if "b" in options.only:
        rows += measure_rollback(options, work, stack, plain)
    if "c" in options.only:
        rows += measure_peak_rss(options, work, stack)
    if "d" in options.only:
        rows += measure_folder(options, work, stack)
    return rows


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# -- (a) ZIP upload to live versus unzip + nginx -s reload ------------------------------------
def measure_upload(options: Options, work: Path, stack: DropHostStack, plain: PlainNginx) -> list[Row]:
    """Cold: each round a site the store has never seen (a new seed). Then the re-deploy of one
    known site, whose files are all in the store already: a cache hit, named as such."""
    uploads = work / "zips"
    uploads.mkdir()
    # The first round of each side warms caches and is not counted.
    cold_zips = [
        write_zip(generate_site(options.seed + 1 + n), uploads / f"cold-{n}.zip") for n in range(options.repeats + 1)
    ]
    site = generate_site(options.seed)
    known_zip = write_zip(site, uploads / "known.zip")
    size = sum(len(f.data) for f in site)
    progress(f"(a) {len(site)} files, {size / MB:.1f} MB ({known_zip.stat().st_size / MB:.1f} MB zipped)")
    releases = work / "plain-releases"
    releases.mkdir()
    cold = upload_rounds(stack, plain, releases, cold_zips, "cold", "site")
    warm = upload_rounds(stack, plain, releases, [known_zip] * (options.repeats + 1), "known", "known")
    name = f"(a) {len(site):,}-file {size / MB:.0f} MB site, ZIP upload to live"
    return [
        ratio_row(
            f"{name}, cold: content never seen, a new seed each round (median of {options.repeats})",
            "unzip + nginx -s reload",
            cold,
            "<= 1.0",
            1.0,
        ),
        ratio_row(
            f"{name}, re-deploy of known content (cache hit) (median of {options.repeats})",
            "unzip + nginx -s reload",
            warm,
            "(reported)",
            None,
        ),
    ]


def upload_rounds(
    stack: DropHostStack, plain: PlainNginx, releases: Path, zips: Sequence[Path], label: str, slot: str
) -> tuple[list[float], list[float]]:
    """(baseline, DropHost) seconds of each counted round, both sides of a round back to back."""
    baseline: list[float] = []
    drophost: list[float] = []
    for attempt, site_zip in enumerate(zips):
        target = releases / f"{label}-{attempt}"
        # Alternate who goes first, so that neither side always finds the caches warm.
        if attempt % 2:
            ours = upload_until_live(stack, site_zip, slot)
            theirs = unzip_and_reload(plain, site_zip, target, attempt)
        else:
            theirs = unzip_and_reload(plain, site_zip, target, attempt)
            ours = upload_until_live(stack, site_zip, slot)
        if attempt:
            baseline.append(theirs)
            drophost.append(ours)
            progress(f"(a) {label} round {attempt}: baseline {seconds(theirs)}, DropHost {seconds(ours)}")
    return baseline, drophost


def ratio_row(
    measurement: str, baseline_name: str, sides: tuple[list[float], list[float]], goal: str, limit: float | None
) -> Row:
    """Both sides of a round ran back to back under the same load; the median of those ratios is
    steadier on a shared machine than the ratio of two medians."""
    baseline, drophost = sides
    ratio = median([ours / theirs for ours, theirs in zip(drophost, baseline, strict=True)])
    return Row(
        measurement,
        f"{baseline_name}: {seconds(median(baseline))}",
        seconds(median(drophost)),
        f"{ratio:.2f}",
        goal,
        None if limit is None else ratio <= limit,
    )


def unzip_and_reload(plain: PlainNginx, site_zip: Path, target: Path, release: int) -> float:
    os.sync()  # neither side pays for writing back what the other one wrote
    began = time.perf_counter()
    runner.run(["unzip", "-q", str(site_zip), "-d", str(target)], timeout=120)
    plain.set_site("site", target, release)
    plain.reload()
    if not client.wait_for(lambda: client.header_of(plain.port, "/s/site/", "X-Release") == str(release), timeout=30):
        raise RuntimeError("the baseline nginx did not serve the new release")
    return time.perf_counter() - began


def upload_until_live(stack: DropHostStack, site_zip: Path, slot: str) -> float:
    os.sync()
    began = time.perf_counter()
    answer = client.upload_zip(stack.port, site_zip, token=stack.token, slot=slot)
    elapsed = time.perf_counter() - began
    if answer.status != 201:
        raise RuntimeError(f"the upload answered {answer.status}: {answer.body[:300]!r}")
    stack.check_served(slot, answer.json()["id"])
    return elapsed


# -- (b) rollback latency with many live slots -----------------------------------------------
def small_site(slot: str, version: int) -> dict[str, bytes]:
    return {
        "index.html": f"<!doctype html><title>{slot}</title><p>{slot} version {version}</p>\n".encode(),
        "style.css": f"p {{ color: #{version * 111111 % 0xFFFFFF:06x}; }}\n".encode(),
    }


def write_small_zip(target: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0))
            info.external_attr = 0o100644 << 16
            archive.writestr(info, data)
    return target


def measure_rollback(options: Options, work: Path, stack: DropHostStack, plain: PlainNginx) -> list[Row]:
    small = work / "small"
    small.mkdir()
    names = [f"s{number:03d}" for number in range(options.slots)]
    targets = names[: options.rollback_slots]
    jobs = [(slot, 1) for slot in names] + [(slot, 2) for slot in targets]
    zips = {(slot, v): write_small_zip(small / f"{slot}-{v}.zip", small_site(slot, v)) for slot, v in jobs}

    def deploy(job: tuple[str, int]) -> client.Answer:
        return client.upload_zip(stack.port, zips[job], token=stack.token, slot=job[0])

    began = time.perf_counter()
    with ThreadPoolExecutor(options.threads) as pool:
        for version in (1, 2):
            for answer in pool.map(deploy, [job for job in jobs if job[1] == version]):
                if answer.status != 201:
                    raise RuntimeError(f"a small deploy answered {answer.status}: {answer.body[:300]!r}")
    progress(f"(b) {len(jobs)} deploys to {len(names)} slots took {time.perf_counter() - began:.1f} s")

    plain_root = work / "plain-slots"
    for slot, v in jobs:
        folder = plain_root / slot / str(v)
        folder.mkdir(parents=True)
        for name, data in small_site(slot, v).items():
            (folder / name).write_bytes(data)
    for slot in names:
        plain.set_site(slot, plain_root / slot / ("2" if slot in targets else "1"), 0)
    plain.reload()

    active = dict.fromkeys(targets, 2)
    baseline: list[float] = []
    drophost: list[float] = []
    api_only: list[float] = []
    for number in range(options.rollbacks):
        slot = targets[number % len(targets)]
        wanted = 3 - active[slot]
        expected = small_site(slot, wanted)["index.html"]
        baseline.append(switch_plain(plain, plain_root / slot / str(wanted), slot, expected))
        total, api = rollback_until_served(stack, slot, wanted, expected)
        drophost.append(total)
        api_only.append(api)
        active[slot] = wanted
    p50, p95 = median(drophost), percentile(drophost, 95)
    progress(f"(b) rollback API answer p50 {seconds(median(api_only))}, until served p50 {seconds(p50)}")
    return [
        Row(
            f"(b) rollback until nginx serves it, {options.slots} slots live, p50 of {options.rollbacks}",
            f"rewrite + nginx -s reload: {seconds(median(baseline))}",
            seconds(p50),
            f"{p50 / median(baseline):.2f}",
            "p50 <= 100 ms",
            p50 <= 0.100,
        ),
        Row(
            f"(b) the same, p95 of {options.rollbacks}",
            seconds(percentile(baseline, 95)),
            seconds(p95),
            f"{p95 / percentile(baseline, 95):.2f}",
            "(reported)",
            None,
        ),
    ]


def switch_plain(plain: PlainNginx, folder: Path, slot: str, expected: bytes) -> float:
    began = time.perf_counter()
    plain.set_site(slot, folder, 0)
    plain.reload()
    if not client.wait_for(lambda: _body(plain.port, f"/s/{slot}/") == expected, timeout=30):
        raise RuntimeError("the baseline nginx did not switch")
    return time.perf_counter() - began


def rollback_until_served(stack: DropHostStack, slot: str, version: int, expected: bytes) -> tuple[float, float]:
    began = time.perf_counter()
    answer = client.post_json(stack.port, f"/api/slots/{slot}/rollback", {"version": version}, token=stack.token)
    api = time.perf_counter() - began
    if answer.status != 200:
        raise RuntimeError(f"the rollback answered {answer.status}: {answer.body[:300]!r}")
    if not client.wait_for(lambda: _body(stack.sites_port, f"/d/{slot}/") == expected, timeout=30):
        raise RuntimeError(f"nginx did not serve version {version} of {slot} after the rollback")
    return time.perf_counter() - began, api


def _body(port: int, path: str) -> bytes | None:
    try:
        return client.request(port, "GET", path, timeout=5).body
    except OSError:
        return None


# -- (c) peak RSS of the service during a 100 MB upload ---------------------------------------
def measure_peak_rss(options: Options, work: Path, stack: DropHostStack) -> list[Row]:
    big_zip = write_incompressible_zip(work / "big.zip", seed=options.seed, total_bytes=options.big_bytes)
    pid = stack.service_pid()
    time.sleep(1)
    idle = memory_kib(pid)["VmRSS"] * 1024
    exact = reset_peak_rss(pid)
    sampled = [idle]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            sampled.append(memory_kib(pid)["VmRSS"] * 1024)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    began = time.perf_counter()
    try:
        answer = client.upload_zip(stack.port, big_zip, token=stack.token, slot="big")
    finally:
        done.set()
        sampler.join()
    elapsed = time.perf_counter() - began
    if answer.status != 201:
        raise RuntimeError(f"the 100 MB upload answered {answer.status}: {answer.body[:300]!r}")
    peak = max(max(sampled), memory_kib(pid)["VmHWM"] * 1024 if exact else 0)
    how = "VmHWM" if exact else "sampled VmRSS"
    progress(f"(c) {big_zip.stat().st_size / MB:.0f} MB upload live in {seconds(elapsed)}; peak {peak / MB:.0f} MB")
    return [
        Row(
            f"(c) service peak RSS during a {big_zip.stat().st_size / MB:.0f} MB upload ({how})",
            f"idle service: {idle / MB:.0f} MB",
            f"{peak / MB:.0f} MB",
            f"{peak / idle:.2f}",
            "peak <= 150 MB",
            peak <= 150 * MB,
        )
    ]


# -- (d) `drophost deploy DIR` versus zipping the folder and `drophost deploy site.zip` --------------
def measure_folder(options: Options, work: Path, stack: DropHostStack) -> list[Row]:
    """Both sides through the installed command, as a user runs them, each round with two sites
    the store has never seen (one per side, new seeds); then one file of ours changed."""
    root = work / "folders"
    root.mkdir()
    baseline: list[float] = []
    cold: list[float] = []
    changed: list[float] = []
    for attempt in range(options.repeats + 1):  # the first round warms caches and is not counted
        seed = options.seed + 1000 + 2 * attempt
        theirs_dir = write_folder(generate_site(seed), root / f"zipped-{attempt}")
        ours_dir = write_folder(generate_site(seed + 1), root / f"folder-{attempt}")
        if attempt % 2:
            ours = deploy_with_cli(stack, ours_dir, "folder")
            theirs = zip_and_deploy(stack, theirs_dir, root / f"zipped-{attempt}.zip", "zipped")
        else:
            theirs = zip_and_deploy(stack, theirs_dir, root / f"zipped-{attempt}.zip", "zipped")
            ours = deploy_with_cli(stack, ours_dir, "folder")
        page = sorted(ours_dir.rglob("*.html"))[attempt]
        page.write_bytes(page.read_bytes().replace(b"<body>", f"<body><!-- changed {attempt} -->".encode(), 1))
        one = deploy_with_cli(stack, ours_dir, "folder")
        if attempt:
            baseline.append(theirs)
            cold.append(ours)
            changed.append(one)
            progress(
                f"(d) round {attempt}: zip + deploy ZIP {seconds(theirs)}, deploy DIR {seconds(ours)}, "
                f"one file changed {seconds(one)}"
            )
    n = options.repeats
    return [
        ratio_row(
            f"(d) `drophost deploy DIR`, 1,000-file 26 MB site never seen (median of {n})",
            "`zip -r` + `drophost deploy ZIP`",
            (baseline, cold),
            "<= 1.0",
            1.0,
        ),
        ratio_row(
            f"(d) `drophost deploy DIR` again, 1 of 1,000 files changed (median of {n})",
            "`zip -r` + `drophost deploy ZIP`",
            (baseline, changed),
            "<= 0.1",
            0.1,
        ),
    ]


def zip_and_deploy(stack: DropHostStack, folder: Path, site_zip: Path, slot: str) -> float:
    os.sync()
    began = time.perf_counter()
    runner.run(["zip", "-q", "-r", str(site_zip), "."], cwd=folder, timeout=120)
    answer = drophost_deploy(stack, site_zip, slot)
    elapsed = time.perf_counter() - began
    stack.check_served(slot, answer["id"])
    return elapsed


def deploy_with_cli(stack: DropHostStack, folder: Path, slot: str) -> float:
    os.sync()
    began = time.perf_counter()
    answer = drophost_deploy(stack, folder, slot)
    elapsed = time.perf_counter() - began
    stack.check_served(slot, answer["id"])
    return elapsed


def drophost_deploy(stack: DropHostStack, path: Path, slot: str) -> dict[str, Any]:
    """`drophost deploy PATH --slot SLOT --json` in a process of its own; its answer."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DROPHOST_URL": f"http://{client.HOST}:{stack.port}",
        "DROPHOST_API_TOKEN": stack.token,
        # The CLI remembers digests per folder (client/hashcache.py): in the run's folder, not in ~/.cache.
        "XDG_CACHE_HOME": str(path.parent / "cli-cache"),
    }
    argv = [sys.executable, "-m", "drophost", "deploy", str(path), "--slot", slot, "--json", "--progress", "never"]
    result = runner.run(argv, env=env, timeout=300)
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


if __name__ == "__main__":
    raise SystemExit(main())
