"""Scale benchmark (issue 6): incremental deploys, 1 to 10,000 live slots, start-up, disk, serving.

Run: `.venv/bin/python -m bench.scale` (or `-m bench`); `--only 36` runs a subset. One real stack
(`drophost up` with its own PostgreSQL and nginx), a git smart-HTTP server on 127.0.0.1 and a
minimal hand-written nginx; every measurement prints next to its baseline from the same run.

  1 incremental ZIP and digest deploy (1 of 1,000 files changed) vs a full deploy   goal <= 0.2
  2 incremental git push (webhook) deploy vs the cold git deploy                   goal <= 0.25
  3 deploy and rollback latency with 1, 100, 1,000, 10,000 live slots     deploy <= 2x, rb <= 50 ms
  4 start-up (restart until /health is 200 and a slot serves) with 10,000 slots    goal <= 10 s
  5 disk of 100 deploys of the 26 MB site, one file changed each, vs one copy      goal <= 1.2x
  6 requests per second nginx serves from a deployed site vs a minimal nginx       goal >= 0.95

Results and how to read them: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tests.harness.scratch import scratch_dir

from bench import client, gitbench
from bench.core import small_site, write_small_zip
from bench.report import Row, exit_on_sigterm, median, print_report, seconds
from bench.site import SiteFile, generate_site, write_folder, write_zip
from bench.stack import DropHostStack, PlainNginx, process_tree
from drophost import runner
from drophost.client.digest import deploy_folder
from drophost.client.http import ApiClient

MB = 1_000_000
# nginx's master handles one reload per ~100 ms (it sleeps 100 ms after starting new workers, with
# signals blocked), so a switch right after another waits for that; (3) pauses before each sample.
PAUSE = 0.15
# Concurrent clients adding filler slots: switches waiting together share one reload.
FILL_CLIENTS = 24


@dataclass(frozen=True)
class Options:
    seed: int = 2026
    repeats: int = 3
    git_repeats: int = 2
    sizes: tuple[int, ...] = (1, 100, 1000, 10000)
    samples: int = 15
    disk_deploys: int = 100
    wrk_seconds: float = 2.0
    wrk_rounds: int = 10
    threads: int = 6
    only: str = "123456"


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    exit_on_sigterm()
    started = time.perf_counter()
    with scratch_dir("dh-scale-") as work:
        progress(f"starting drophost up, a git server and a baseline nginx in {work}")
        with gitbench.GitServer(work, options.git_repeats) as git:
            env = {
                "DROPHOST_CONFIG": str(git.config),
                "DROPHOST_POLL_INTERVAL": "0",
                gitbench.SECRET_ENV: gitbench.SECRET,
            }
            with DropHostStack(work, env=env) as stack, PlainNginx(work) as plain:
                rows = run(options, work, stack, plain, git)
    print_report(rows, started)
    return 0


def parse_args(argv: Sequence[str] | None) -> Options:
    defaults = Options()
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--repeats", type=int, default=defaults.repeats, help="rounds of (1)")
    parser.add_argument("--sizes", default=",".join(map(str, defaults.sizes)), help="live slot counts for (3)")
    parser.add_argument("--samples", type=int, default=defaults.samples, help="deploys and rollbacks per size")
    parser.add_argument("--disk-deploys", type=int, default=defaults.disk_deploys)
    parser.add_argument("--only", default=defaults.only, help="which measurements, e.g. '3' or '16'")
    args = parser.parse_args(argv)
    return replace(
        defaults,
        seed=args.seed,
        repeats=args.repeats,
        sizes=parse_sizes(args.sizes),
        samples=args.samples,
        disk_deploys=args.disk_deploys,
        only=args.only,
    )


def parse_sizes(text: str) -> tuple[int, ...]:
    """'1,100,1000' -> (1, 100, 1000): positive, increasing."""
    sizes = tuple(int(part) for part in text.split(",") if part.strip())
    if not sizes or sizes[0] < 1 or any(b <= a for a, b in zip(sizes, sizes[1:], strict=False)):
        raise argparse.ArgumentTypeError("--sizes must be increasing positive numbers, e.g. 1,100,1000")
    return sizes


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def run(options: Options, work: Path, stack: DropHostStack, plain: PlainNginx, git: gitbench.GitServer) -> list[Row]:
    rows: list[Row] = []
    # (3) first: "1 live slot" means an empty service; (4) then restarts it with the most slots.
    if "3" in options.only or "4" in options.only:
        rows += measure_slots(options, work, stack)
    site = generate_site(options.seed)
    if "1" in options.only:
        rows += measure_incremental(options, work, stack, site)
    if "2" in options.only:
        rows += measure_git(options, stack, git, site)
    if "5" in options.only:
        rows += measure_disk(options, work, stack, site)
    if "6" in options.only:
        rows += measure_serving(options, work, stack, plain, site)
    return rows


# -- site variants ---------------------------------------------------------------------------
def retag(site: Sequence[SiteFile], tag: str) -> list[SiteFile]:
    """Every file's bytes changed (a new site for the store), same paths and about the same size."""
    head = tag.encode()
    return [SiteFile(item.path, _retagged(item.path, head, item.data)) for item in site]


def change_one(site: Sequence[SiteFile], index: int, tag: str) -> list[SiteFile]:
    """The same site with file number `index` (modulo the count) changed."""
    number = index % len(site)
    changed = list(site)
    item = changed[number]
    changed[number] = SiteFile(item.path, _retagged(item.path, f"{tag}/{index}".encode(), item.data))
    return changed


def _retagged(path: str, tag: bytes, data: bytes) -> bytes:
    if path.endswith(".html"):
        return data.replace(b"<body>", b"<body><!-- " + tag + b" -->", 1)
    return tag + b"\n" + data


def ratio_row(measurement: str, baseline: str, ours: str, ratio: float, goal: str, limit: float) -> Row:
    return Row(measurement, baseline, ours, f"{ratio:.2f}", goal, ratio <= limit)


# -- (1) incremental ZIP and digest deploys --------------------------------------------------
def measure_incremental(options: Options, work: Path, stack: DropHostStack, site: list[SiteFile]) -> list[Row]:
    folder = work / "incremental"
    folder.mkdir()
    zip_full: list[float] = []
    zip_inc: list[float] = []
    digest_full: list[float] = []
    digest_inc: list[float] = []
    for number in range(options.repeats):
        full = retag(site, f"zip-{number}")
        full_zip = write_zip(full, folder / f"full-{number}.zip")
        inc_zip = write_zip(change_one(full, 500 + number, "zip"), folder / f"inc-{number}.zip")
        zip_full.append(timed_zip(stack, full_zip, "inc-zip"))
        zip_inc.append(timed_zip(stack, inc_zip, "inc-zip"))
        full = retag(site, f"digest-{number}")
        tree = write_folder(full, folder / f"tree-{number}")
        digest_full.append(timed_digest(stack, tree, "inc-digest", expect_uploaded=len(full)))
        write_folder(change_one(full, 500 + number, "digest")[500 + number : 501 + number], tree)
        digest_inc.append(timed_digest(stack, tree, "inc-digest", expect_uploaded=1))
        progress(
            f"(1) round {number + 1}: ZIP {seconds(zip_full[-1])} -> {seconds(zip_inc[-1])}, "
            f"digest {seconds(digest_full[-1])} -> {seconds(digest_inc[-1])}"
        )
    n = options.repeats
    zip_ratio = median([b / a for a, b in zip(zip_full, zip_inc, strict=True)])
    digest_ratio = median([b / a for a, b in zip(digest_full, digest_inc, strict=True)])
    # The incremental deploy is the digest protocol's (what `drophost deploy DIR` does). A ZIP
    # carries, and must hash, every byte even when one file changed; it writes one file, and its
    # ratio is shown for comparison (see RESULTS.md).
    return [
        Row(
            f"(1) ZIP deploy, 1 of 1,000 files changed (median of {n})",
            f"full ZIP deploy: {seconds(median(zip_full))}",
            seconds(median(zip_inc)),
            f"{zip_ratio:.2f}",
            "(reported)",
            None,
        ),
        ratio_row(
            f"(1) digest deploy (deploy_folder), 1 of 1,000 changed (median of {n})",
            f"full digest deploy: {seconds(median(digest_full))}",
            seconds(median(digest_inc)),
            digest_ratio,
            "<= 0.2",
            0.2,
        ),
    ]


def timed_zip(stack: DropHostStack, zip_path: Path, slot: str) -> float:
    os.sync()
    began = time.perf_counter()
    answer = client.upload_zip(stack.port, zip_path, token=stack.token, slot=slot)
    elapsed = time.perf_counter() - began
    if answer.status != 201:
        raise RuntimeError(f"the ZIP deploy answered {answer.status}: {answer.body[:300]!r}")
    stack.check_served(slot, answer.json()["id"])
    return elapsed


def timed_digest(stack: DropHostStack, folder: Path, slot: str, *, expect_uploaded: int) -> float:
    os.sync()
    began = time.perf_counter()
    result = deploy_folder(ApiClient(f"http://{client.HOST}:{stack.port}", stack.token), folder, slot=slot)
    elapsed = time.perf_counter() - began
    if result["uploaded_files"] != expect_uploaded:
        raise RuntimeError(f"the digest deploy sent {result['uploaded_files']} files, not {expect_uploaded}")
    stack.check_served(slot, result["id"])
    return elapsed


# -- (2) incremental git deploys -------------------------------------------------------------
def measure_git(options: Options, stack: DropHostStack, git: gitbench.GitServer, site: list[SiteFile]) -> list[Row]:
    cold: list[float] = []
    warm: list[float] = []
    for number in range(options.git_repeats):
        repo = git.repos[number]
        files = retag(site, f"git-{number}")
        cold.append(git.push_and_wait(stack, repo, files, marker=f"cold-{number}"))
        changed = change_one(files, 300 + number, "git")[300 + number : 301 + number]
        warm.append(git.push_and_wait(stack, repo, changed, marker=f"warm-{number}"))
        progress(f"(2) round {number + 1}: cold {seconds(cold[-1])}, one file changed {seconds(warm[-1])}")
    ratio = median([b / a for a, b in zip(cold, warm, strict=True)])
    return [
        ratio_row(
            f"(2) git push + webhook to served, 1 of 1,000 changed (median of {options.git_repeats})",
            f"cold git deploy: {seconds(median(cold))}",
            seconds(median(warm)),
            ratio,
            "<= 0.25",
            0.25,
        )
    ]


# -- (3) deploy and rollback with 1 to 10,000 live slots; (4) start-up --------------------------
def measure_slots(options: Options, work: Path, stack: DropHostStack) -> list[Row]:
    small = work / "small"
    small.mkdir()
    filler = SlotFiller(stack)
    deploys: dict[int, float] = {}
    rollbacks: dict[int, float] = {}
    packed: dict[int, float] = {}
    starts: dict[int, float] = {}
    live = 0
    for size in options.sizes:
        began = time.perf_counter()
        live = filler.fill(size - 1)  # the probe slot makes `size`
        progress(f"(3) {live + 1:,} live slots ({time.perf_counter() - began:.0f} s to add them)")
        if "3" in options.only:
            deploys[size], rollbacks[size], packed[size] = probe_slot(options, small, stack, f"probe-{size}")
            times = f"deploy p50 {seconds(deploys[size])}, rollback p50 {seconds(rollbacks[size])}"
            times += f", back to back {seconds(packed[size])}"
            progress(f"(3) {size:,} slots: {times}")
        if "4" in options.only and size in (options.sizes[0], options.sizes[-1]):
            starts[size] = restart_until_serving(stack, filler.last_slot or f"probe-{size}")
            progress(f"(4) {size:,} slots: restart to serving {seconds(starts[size])}")
        filler.forget_probe()
    rows: list[Row] = []
    first, last = options.sizes[0], options.sizes[-1]
    if deploys:
        for size in options.sizes:
            ratio = deploys[size] / deploys[first]
            rows.append(
                Row(
                    f"(3) small ZIP deploy to live, {size:,} live slots (p50 of {options.samples})",
                    f"{first:,} slot: {seconds(deploys[first])}",
                    seconds(deploys[size]),
                    f"{ratio:.2f}",
                    "<= 2x at the most slots" if size == last else "(reported)",
                    ratio <= 2 if size == last else None,
                )
            )
        for size in options.sizes:
            rows.append(
                Row(
                    f"(3) rollback until served, {size:,} live slots (p50 of {options.samples})",
                    f"{first:,} slot: {seconds(rollbacks[first])}",
                    seconds(rollbacks[size]),
                    f"{rollbacks[size] / rollbacks[first]:.2f}",
                    "p50 <= 50 ms",
                    rollbacks[size] <= 0.050,
                )
            )
        rows.append(
            Row(
                f"(3) rollbacks back to back (no pause), {last:,} live slots (p50 of {options.samples})",
                f"{first:,} slot: {seconds(packed[first])}",
                seconds(packed[last]),
                f"{packed[last] / packed[first]:.2f}",
                "(reported)",
                None,
            )
        )
    if starts:
        rows.append(
            Row(
                f"(4) restart to /health 200 and a slot served, {last:,} slots",
                f"{first:,} slot: {seconds(starts[first])}",
                seconds(starts[last]),
                f"{starts[last] / starts[first]:.2f}",
                "<= 10 s",
                starts[last] <= 10,
            )
        )
    return rows


class SlotFiller:
    """Adds live slots through the digest API: one tiny shared file, so only the switch costs."""

    def __init__(self, stack: DropHostStack) -> None:
        self.stack = stack
        self.count = 0
        self.last_slot = ""
        self.page = b"<!doctype html><title>filler</title><p>one of many slots</p>\n"
        self.digest = hashlib.sha256(self.page).hexdigest()
        self.probes = 0

    def fill(self, total: int) -> int:
        """Make `total` filler slots live (plus the probes already made); returns the live count."""
        wanted = total - self.probes
        names = [f"slot-{number:05d}" for number in range(self.count, max(wanted, self.count))]
        if names:
            self._create(names[0])  # uploads the shared file once
            with ThreadPoolExecutor(FILL_CLIENTS) as pool:
                for _ in pool.map(self._create, names[1:]):
                    pass
            self.count += len(names)
            self.last_slot = names[-1]
        return self.count + self.probes

    def forget_probe(self) -> None:
        self.probes += 1

    def _create(self, slot: str) -> None:
        started = self._api("POST", "/api/uploads", {"slot": slot, "files": {"index.html": self.digest}})
        for digest in started["missing"]:
            answer = client.request(
                self.stack.port,
                "PUT",
                f"/api/uploads/{started['upload_id']}/blobs/{digest}",
                token=self.stack.token,
                body=self.page,
                headers={"Content-Type": "application/octet-stream"},
            )
            if answer.status not in (200, 201):
                raise RuntimeError(f"a blob upload answered {answer.status}: {answer.body[:300]!r}")
        self._api("POST", f"/api/uploads/{started['upload_id']}/finalize", {})

    def _api(self, method: str, path: str, payload: dict[str, Any]) -> Any:
        body = json.dumps(payload).encode()
        answer = client.request(
            self.stack.port,
            method,
            path,
            token=self.stack.token,
            body=body,
            headers={"Content-Type": "application/json"},
        )
        if answer.status != 201:
            raise RuntimeError(f"{method} {path} answered {answer.status}: {answer.body[:300]!r}")
        return answer.json()


def probe_slot(options: Options, small: Path, stack: DropHostStack, slot: str) -> tuple[float, float, float]:
    """Deploy p50 (ZIP of a two-file site, to live), rollback p50 (until nginx serves it), both with
    a pause before each, and the rollback p50 back to back (nginx takes one reload per 100 ms)."""
    zips = [write_small_zip(small / f"{slot}-{n}.zip", small_site(slot, n)) for n in range(1, options.samples + 1)]
    deploys = []
    for zip_path in zips:
        os.sync()
        time.sleep(PAUSE)
        began = time.perf_counter()
        answer = client.upload_zip(stack.port, zip_path, token=stack.token, slot=slot)
        deploys.append(time.perf_counter() - began)
        if answer.status != 201:
            raise RuntimeError(f"a probe deploy answered {answer.status}: {answer.body[:300]!r}")
    spaced = [rollback_once(stack, slot, options.samples - 1 - n % 2, pause=PAUSE) for n in range(options.samples)]
    packed = [rollback_once(stack, slot, options.samples - 1 - n % 2, pause=0) for n in range(options.samples)]
    return median(deploys), median(spaced), median(packed)


def rollback_once(stack: DropHostStack, slot: str, version: int, *, pause: float) -> float:
    expected = small_site(slot, version)["index.html"]
    time.sleep(pause)
    began = time.perf_counter()
    answer = client.post_json(stack.port, f"/api/slots/{slot}/rollback", {"version": version}, token=stack.token)
    if answer.status != 200:
        raise RuntimeError(f"the rollback answered {answer.status}: {answer.body[:300]!r}")
    if not wait_for_body(stack.sites_port, f"/d/{slot}/", expected):
        raise RuntimeError(f"nginx did not serve version {version} of {slot} after the rollback")
    return time.perf_counter() - began


def wait_for_body(port: int, path: str, expected: bytes) -> bool:
    return client.wait_for(lambda: body_of(port, path) == expected, timeout=30)


def body_of(port: int, path: str) -> bytes | None:
    try:
        return client.request(port, "GET", path, timeout=5).body
    except OSError:
        return None


def restart_until_serving(stack: DropHostStack, slot: str) -> float:
    stack.stop()
    began = time.perf_counter()
    stack.start()
    if not client.wait_for(lambda: body_of(stack.sites_port, f"/d/{slot}/") is not None, timeout=60):
        raise RuntimeError(f"{slot} was not served after the restart")
    answer = client.request(stack.sites_port, "GET", f"/d/{slot}/", timeout=5)
    if answer.status != 200:
        raise RuntimeError(f"{slot} answered {answer.status} after the restart")
    return time.perf_counter() - began


# -- (5) disk used by many deploys -----------------------------------------------------------
def measure_disk(options: Options, work: Path, stack: DropHostStack, site: list[SiteFile]) -> list[Row]:
    """Default retention, after the garbage collection the service runs every hour, on one slot;
    every version pinned (so every release tree is kept) on another, with other content."""
    copy_bytes = disk_usage([write_folder(retag(site, "disk"), work / "disk-copy")])
    rows = []
    for slot, pin in (("disk", False), ("disk-pinned", True)):
        used = deploys_disk_usage(options, stack, slot, retag(site, slot), pin=pin)
        kept = "every version pinned (all kept)" if pin else "default retention + gc"
        rows.append(
            Row(
                f"(5) disk (du) of {options.disk_deploys} deploys of the 26 MB site, 1 file changed each, {kept}",
                f"one copy: {copy_bytes / MB:.1f} MB",
                f"{used / MB:.1f} MB",
                f"{used / copy_bytes:.2f}",
                "(reported)" if pin else "<= 1.2x",
                None if pin else used / copy_bytes <= 1.2,
            )
        )
    return rows


def deploys_disk_usage(options: Options, stack: DropHostStack, slot: str, files: list[SiteFile], *, pin: bool) -> int:
    data = [stack.data_dir / "store", stack.data_dir / "releases"]
    collect_garbage(stack)
    before = disk_usage(data)
    began = time.perf_counter()
    uploader = DigestDeployer(stack, slot, files)
    for number in range(options.disk_deploys):
        version = uploader.deploy(None if number == 0 else number)
        if pin:
            answer = client.post_json(stack.port, f"/api/slots/{slot}/versions/{version}/pin", {}, token=stack.token)
            if answer.status != 200:
                raise RuntimeError(f"pinning answered {answer.status}: {answer.body[:300]!r}")
    collect_garbage(stack)
    used = disk_usage(data) - before
    progress(f"(5) {slot}: {options.disk_deploys} deploys in {time.perf_counter() - began:.0f} s: {used / MB:.1f} MB")
    return used


def collect_garbage(stack: DropHostStack) -> None:
    """POST /api/gc: what the service also does every gc_interval (an hour by default)."""
    answer = client.post_json(stack.port, "/api/gc", {"dry_run": False}, token=stack.token)
    if answer.status != 200:
        raise RuntimeError(f"POST /api/gc answered {answer.status}: {answer.body[:300]!r}")


class DigestDeployer:
    """Deploys `files` through the digest API, changing file number N for deploy N."""

    def __init__(self, stack: DropHostStack, slot: str, files: list[SiteFile]) -> None:
        self.stack = stack
        self.slot = slot
        self.files = files
        self.manifest = {item.path: hashlib.sha256(item.data).hexdigest() for item in files}

    def deploy(self, change: int | None) -> int:
        site = self.files if change is None else change_one(self.files, change, "disk")
        by_digest = {hashlib.sha256(item.data).hexdigest(): item.data for item in site}
        manifest = dict(self.manifest)
        if change is not None:
            item = site[change % len(site)]
            manifest[item.path] = hashlib.sha256(item.data).hexdigest()
        started = _json(self.stack, "POST", "/api/uploads", {"slot": self.slot, "files": manifest})
        for digest in started["missing"]:
            answer = client.request(
                self.stack.port,
                "PUT",
                f"/api/uploads/{started['upload_id']}/blobs/{digest}",
                token=self.stack.token,
                body=by_digest[digest],
                headers={"Content-Type": "application/octet-stream"},
            )
            if answer.status not in (200, 201):
                raise RuntimeError(f"a blob upload answered {answer.status}: {answer.body[:300]!r}")
        result = _json(self.stack, "POST", f"/api/uploads/{started['upload_id']}/finalize", {})
        self.stack.check_served(self.slot, result["id"])
        return int(result["config_version"])


def _json(stack: DropHostStack, method: str, path: str, payload: dict[str, Any]) -> Any:
    answer = client.request(
        stack.port,
        method,
        path,
        token=stack.token,
        body=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    if answer.status != 201:
        raise RuntimeError(f"{method} {path} answered {answer.status}: {answer.body[:300]!r}")
    return answer.json()


def disk_usage(paths: Sequence[Path]) -> int:
    """Bytes `du` counts for these trees together (a hard-linked file counts once)."""
    existing = [str(path) for path in paths if path.exists()]
    if not existing:
        return 0
    result = runner.run(["du", "-s", "-c", "--block-size=1", *existing], timeout=120)
    return parse_du_total(result.stdout.decode())


def parse_du_total(output: str) -> int:
    """The 'total' line of `du -c`."""
    for line in reversed(output.splitlines()):
        size, _, name = line.partition("\t")
        if name == "total":
            return int(size)
    raise ValueError("du printed no total")


# -- (6) serving ----------------------------------------------------------------------------
def measure_serving(
    options: Options, work: Path, stack: DropHostStack, plain: PlainNginx, site: list[SiteFile]
) -> list[Row]:
    files = retag(site, "serve")
    folder = write_folder(files, work / "serve")
    result = deploy_folder(ApiClient(f"http://{client.HOST}:{stack.port}", stack.token), folder, slot="serve")
    stack.check_served("serve", result["id"])
    plain.set_site("serve", folder, 1, clean_urls=True)
    plain.reload()
    if not client.wait_for(lambda: client.header_of(plain.port, "/s/serve/", "X-Release") == "1", timeout=30):
        raise RuntimeError("the baseline nginx did not serve the site")
    page = typical_page(files)
    # DropHost answers a page's .html URL with a redirect to its clean URL (clean_urls, the default),
    # so its visitors read the page there; so do the minimal nginx's, through try_files.
    ours_path, theirs_path = f"/d/serve/{page.removesuffix('.html')}", f"/s/serve/{page.removesuffix('.html')}"
    ours_url = f"http://{client.HOST}:{stack.sites_port}{ours_path}"
    theirs_url = f"http://{client.HOST}:{plain.port}{theirs_path}"
    for port, path in ((stack.sites_port, ours_path), (plain.port, theirs_path)):
        if not wait_for_ok(port, path):
            raise RuntimeError(f"{path} answered {_status(port, path)} on port {port}, not 200")
    masters = {"ours": stack.data_dir / "nginx" / "nginx.pid", "theirs": plain.root / "nginx.pid"}
    urls = {"ours": ours_url, "theirs": theirs_url}
    rps: dict[str, list[float]] = {"ours": [], "theirs": []}
    cpu: dict[str, list[float]] = {"ours": [], "theirs": []}
    cpus = serving_cpus()
    for number in range(options.wrk_rounds):
        # Alternate who goes first: the machine's other jobs come and go.
        for side in ("theirs", "ours") if number % 2 else ("ours", "theirs"):
            workers = nginx_workers(masters[side])
            if cpus:
                pin(workers, cpus[1])
            before = cpu_seconds(workers)
            requests, per_second = wrk(urls[side], options.wrk_seconds, cpu=cpus[0] if cpus else None)
            rps[side].append(per_second)
            cpu[side].append((cpu_seconds(workers) - before) / requests)
        progress(f"(6) round {number + 1}: minimal nginx {rps['theirs'][-1]:,.0f}/s, DropHost {rps['ours'][-1]:,.0f}/s")
    ratio = median([a / b for a, b in zip(rps["ours"], rps["theirs"], strict=True)])
    size = len(next(item.data for item in files if item.path == page))
    us = {side: median(values) * 1e6 for side, values in cpu.items()}
    pinned = f", nginx on CPU {cpus[1]} and wrk on CPU {cpus[0]}" if cpus else ""
    return [
        Row(
            f"(6) wrk req/s, {size / 1000:.0f} kB page, keep-alive, median of {options.wrk_rounds} rounds{pinned}",
            f"minimal nginx: {median(rps['theirs']):,.0f}/s",
            f"{median(rps['ours']):,.0f}/s",
            f"{ratio:.2f}",
            ">= 0.95",
            ratio >= 0.95,
        ),
        Row(
            "(6) nginx workers' CPU per request (utime+stime)",
            f"minimal nginx: {us['theirs']:.1f} us",
            f"{us['ours']:.1f} us",
            f"{us['ours'] / us['theirs']:.2f}",
            "(reported)",
            None,
        ),
    ]


def nginx_workers(pid_file: Path) -> list[int]:
    master = int(pid_file.read_text().split()[0])
    return [pid for pid in process_tree(master) if pid != master]


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of these processes (from /proc/<pid>/stat)."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_for_ok(port: int, path: str) -> bool:
    return client.wait_for(lambda: _status(port, path) == 200, timeout=30, interval=0.1)


def _status(port: int, path: str) -> int:
    try:
        return client.request(port, "GET", path, timeout=5).status
    except OSError:
        return 0


def typical_page(files: Sequence[SiteFile]) -> str:
    """The HTML page of median size: what a visitor fetches most."""
    pages = sorted((len(item.data), item.path) for item in files if item.path.endswith(".html"))
    return pages[len(pages) // 2][1]


def serving_cpus() -> tuple[int, int] | None:
    """(CPU for wrk, CPU for nginx's workers), or None with fewer than two CPUs to give.

    On separate CPUs, nginx's throughput is what the CPU it has allows, not what the scheduler
    happens to leave it next to wrk: the ratio then reads the cost per request of each config.
    """
    allowed = sorted(os.sched_getaffinity(0))
    return (allowed[0], allowed[1]) if len(allowed) >= 2 else None


def pin(pids: Sequence[int], cpu: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(pid, {cpu})


def wrk(url: str, duration: float, *, cpu: int | None = None) -> tuple[int, float]:
    """(requests, requests per second) of one wrk run: 1 thread, 16 keep-alive connections."""
    taskset = ["taskset", "-c", str(cpu)] if cpu is not None else []
    result = runner.run(
        [*taskset, "wrk", "-t", "1", "-c", "16", "-d", f"{duration:.0f}s", "--timeout", "5s", url],
        timeout=duration + 30,
    )
    output = result.stdout.decode()
    found = re.search(r"^\s*(\d+) requests in", output, re.M)
    if not found:
        raise ValueError(f"no request count in wrk's output:\n{output}")
    return int(found.group(1)), parse_wrk_rps(output)


def parse_wrk_rps(output: str) -> float:
    """'Requests/sec:  12345.67' from wrk's summary; non-2xx answers make it an error."""
    if "Non-2xx" in output:
        raise RuntimeError(f"wrk got errors:\n{output}")
    found = re.search(r"^Requests/sec:\s*([0-9.]+)", output, re.M)
    if not found:
        raise ValueError(f"no Requests/sec in wrk's output:\n{output}")
    return float(found.group(1))


if __name__ == "__main__":
    raise SystemExit(main())
