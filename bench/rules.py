"""Site rules benchmark (issue 13): serving a site with rules, and deploys with 10,000 slots.

Run: `.venv/bin/python -m bench.rules` (or `-m bench`); `--only 1` or `--only 2` runs one half.
One real stack (`drophost up` with its own PostgreSQL and nginx) and a minimal hand-written nginx;
every measurement prints next to its baseline from the same run.

  1 wrk req/s of a slot with 100 header rules and 2,000 redirects (`_headers`, `_redirects`)
    vs a hand-written nginx config with the same rules, same page                 goal >= 0.95
  2 with 10,000 live slots of which 1,000 have rules, against the same at 1 slot:
    a content-only deploy <= 1.2x; a rules change (`_redirects`, PATCH site) <= 2x;
    `nginx -t` of that configuration and a reload alone (wall, and the master's CPU) reported
  3 (`--only 3`, no stack) the CPU of `nginx -t` on synthetic configurations, 10,000 sites-map
    entries and 1,000 slots with (2)'s rules: their parts as compiled today, against the shapes
    of "rules as data" (shared locations, per-slot values in maps), for choosing a design

Results and how to read them: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import signal
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tests.harness.scratch import scratch_dir

from bench import client, rulegen
from bench.core import write_small_zip
from bench.report import Row, exit_on_sigterm, median, print_report, seconds
from bench.scale import cpu_seconds, nginx_workers, pin, retag, serving_cpus, wait_for_ok, wrk
from bench.site import generate_site, write_folder
from bench.stack import DropHostStack, PlainNginx
from drophost import runner
from drophost.client.digest import deploy_folder
from drophost.client.http import ApiClient
from drophost.pipeline import nginxprocess, siterules
from drophost.pipeline.nginxconfig import render_main_config, split_part, template_environment
from drophost.pipeline.sitecompile import render_part
from drophost.pipeline.siterules import SiteRules
from drophost.settings import Settings

# nginx's master takes one reload per ~100 ms; each sample of (2) waits this long first (as bench.scale).
PAUSE = 0.15
FILL_CLIENTS = 24
SERVED = "rules"  # the slot of (1), and the baseline's prefix
PLAIN = "norules"  # the same files without rule files, for the rules' own cost
PROBE = "probe"


@dataclass(frozen=True)
class Options:
    seed: int = 2026
    wrk_seconds: float = 2.0
    wrk_rounds: int = 8
    slots: int = 10000
    rules_every: int = 10  # 1 slot in 10 has rules: 1,000 of 10,000
    samples: int = 11
    rule_samples: int = 7
    only: str = "12"


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    exit_on_sigterm()
    started = time.perf_counter()
    if options.only == "3":
        with scratch_dir("dh-rules-") as work:
            rows = measure_shapes(work, rules_slots=options.slots // options.rules_every)
        print_report(rows, started)
        return 0
    with scratch_dir("dh-rules-") as work:
        progress(f"starting drophost up and a baseline nginx in {work}")
        with DropHostStack(work) as stack, PlainNginx(work) as plain:
            rows = run(options, work, stack, plain)
    print_report(rows, started)
    return 0


def parse_args(argv: Sequence[str] | None) -> Options:
    defaults = Options()
    parser = argparse.ArgumentParser(prog="python -m bench.rules", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--rounds", type=int, default=defaults.wrk_rounds, help="wrk rounds of (1)")
    parser.add_argument("--slots", type=int, default=defaults.slots, help="live slots for (2)")
    parser.add_argument("--samples", type=int, default=defaults.samples, help="content-only deploys per size")
    parser.add_argument("--only", default=defaults.only, help="which measurements: '1', '2', '12' or '3'")
    args = parser.parse_args(argv)
    if args.slots < 100:
        parser.error("--slots must be at least 100")
    return replace(
        defaults, seed=args.seed, wrk_rounds=args.rounds, slots=args.slots, samples=args.samples, only=args.only
    )


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def run(options: Options, work: Path, stack: DropHostStack, plain: PlainNginx) -> list[Row]:
    prober = Prober(stack, work / "probe")
    at_one: dict[str, float] = {}
    if "2" in options.only:
        # "1 slot" is the probe alone in an empty service, as in bench.scale (3).
        at_one = prober.measure(options)
    rows: list[Row] = []
    if "1" in options.only:
        rows += measure_serving(options, work, stack, plain)
        # Offline again: (2)'s slots with rules are small sites, the 2,000 redirects are (1)'s alone.
        for slot in (SERVED, PLAIN):
            answer = client.request(stack.port, "DELETE", f"/api/slots/{slot}", token=stack.token)
            if answer.status != 200:
                raise RuntimeError(f"DELETE {slot} answered {answer.status}: {answer.body[:300]!r}")
    if "2" in options.only:
        filler = Filler(stack, options.rules_every)
        began = time.perf_counter()
        filler.fill(options.slots - len(live_slots(stack)))
        took = seconds(time.perf_counter() - began)
        progress(f"(2) {len(live_slots(stack)):,} live slots, {ruled_slots(stack):,} with rules, filled in {took}")
        at_many = prober.measure(options)
        rows += slot_rows(options, at_one, at_many, ruled_slots(stack))
    return rows


# -- (1) serving ----------------------------------------------------------------------------
def measure_serving(options: Options, work: Path, stack: DropHostStack, plain: PlainNginx) -> list[Row]:
    paths, size = set_up_serving(options, work, stack, plain)
    masters = {"theirs": plain.root / "nginx.pid", "ours": stack.data_dir / "nginx" / "nginx.pid"}
    ports = {"theirs": plain.port, "ours": stack.sites_port}
    sides = {
        "page/theirs": ("theirs", paths["page"]),
        "page/ours": ("ours", paths["page"]),
        "redirect/theirs": ("theirs", paths["redirect"]),
        "redirect/ours": ("ours", paths["redirect"]),
        "plain/ours": ("ours", paths["plain"]),
    }
    rps: dict[str, list[float]] = {side: [] for side in sides}
    cpu: dict[str, list[float]] = {side: [] for side in sides}
    cpus = serving_cpus()
    for number in range(options.wrk_rounds):
        # Alternate the order: the machine's other jobs come and go.
        order = list(sides) if number % 2 == 0 else list(reversed(sides))
        for side in order:
            server, path = sides[side]
            workers = nginx_workers(masters[server])
            if cpus:
                pin(workers, cpus[1])
            before = cpu_seconds(workers)
            url = f"http://{client.HOST}:{ports[server]}{path}"
            requests, per_second = wrk(url, options.wrk_seconds, cpu=cpus[0] if cpus else None)
            rps[side].append(per_second)
            cpu[side].append((cpu_seconds(workers) - before) / requests)
        progress(
            f"(1) round {number + 1}: page {rps['page/theirs'][-1]:,.0f} vs {rps['page/ours'][-1]:,.0f}/s, "
            f"redirect {rps['redirect/theirs'][-1]:,.0f} vs {rps['redirect/ours'][-1]:,.0f}/s, "
            f"no rules {rps['plain/ours'][-1]:,.0f}/s"
        )
    pinned = f", nginx on CPU {cpus[1]}, wrk on CPU {cpus[0]}" if cpus else ""
    n = options.wrk_rounds
    rows = []
    for kind, what, goal in (
        ("page", f"a {size / 1000:.0f} kB page by its clean URL, matched by no redirect", True),
        ("redirect", "a URL matched by the last of the 2,000 redirects (a splat, 308)", False),
    ):
        ratio = median([a / b for a, b in zip(rps[f"{kind}/ours"], rps[f"{kind}/theirs"], strict=True)])
        us = {side: median(cpu[f"{kind}/{side}"]) * 1e6 for side in ("ours", "theirs")}
        rows.append(
            Row(
                f"(1) wrk req/s, 100 header rules + 2,000 redirects, {what}, keep-alive, median of {n}{pinned}",
                f"hand-written nginx: {median(rps[f'{kind}/theirs']):,.0f}/s",
                f"{median(rps[f'{kind}/ours']):,.0f}/s",
                f"{ratio:.2f}",
                ">= 0.95" if goal else "(reported)",
                ratio >= 0.95 if goal else None,
            )
        )
        rows.append(
            Row(
                f"(1) the same: nginx workers' CPU per request (utime+stime), {kind}",
                f"hand-written nginx: {us['theirs']:.1f} us",
                f"{us['ours']:.1f} us",
                f"{us['ours'] / us['theirs']:.2f}",
                "(reported)",
                None,
            )
        )
    ratio = median([a / b for a, b in zip(rps["plain/ours"], rps["page/theirs"], strict=True)])
    rows.append(
        Row(
            f"(1) for scale: the same page from a DropHost slot without rules, median of {n}",
            f"hand-written nginx (rules): {median(rps['page/theirs']):,.0f}/s",
            f"{median(rps['plain/ours']):,.0f}/s",
            f"{ratio:.2f}",
            "(reported)",
            None,
        )
    )
    return rows


def set_up_serving(options: Options, work: Path, stack: DropHostStack, plain: PlainNginx) -> tuple[dict[str, str], int]:
    """Deploy the site with its rules (and without), write the baseline; the tested paths and page size."""
    files = retag(generate_site(options.seed), "rules")
    pages = sorted(rulegen.clean_url(item.path) for item in files if item.path.startswith("docs/"))
    tested = rulegen.clean_url(typical_page_of(files))
    redirects = rulegen.generate_redirects(pages)
    headers = rulegen.generate_headers([page for page in pages if page != tested])
    # The baseline serves the same folder under the same URL (root <plain-root>, files in d/rules/).
    folder = write_folder(files, work / "plain-root" / "d" / SERVED)
    (folder / "_redirects").write_text(rulegen.redirects_text(redirects))
    (folder / "_headers").write_text(rulegen.headers_text(headers))
    api = ApiClient(f"http://{client.HOST}:{stack.port}", stack.token)
    result = deploy_folder(api, folder, slot=SERVED)
    stack.check_served(SERVED, result["id"])
    bare = write_folder(files, work / "bare")
    stack.check_served(PLAIN, deploy_folder(api, bare, slot=PLAIN)["id"])
    conf = rulegen.baseline_config(f"/d/{SERVED}", str(work / "plain-root"), redirects, headers)
    (plain.sites_dir / f"{SERVED}.conf").write_text(conf)
    plain.reload()
    last = redirects[-1]
    moved = f"{last.source.removesuffix('*')}2015/old-notes"
    paths = {
        "page": f"/d/{SERVED}{tested}",
        "redirect": f"/d/{SERVED}{moved}",
        "plain": f"/d/{PLAIN}{tested}",
    }
    expect_same_answers(stack, plain, paths)
    size = len(next(item.data for item in files if rulegen.clean_url(item.path) == tested))
    return paths, size


def typical_page_of(files: Sequence[Any]) -> str:
    """The docs page of median size (bench.scale's typical page, not the home page)."""
    pages = sorted((len(item.data), item.path) for item in files if item.path.startswith("docs/"))
    return str(pages[len(pages) // 2][1])


def expect_same_answers(stack: DropHostStack, plain: PlainNginx, paths: dict[str, str]) -> None:
    """Both servers answer the tested URLs alike: status, Location and the rules' headers."""
    for port in (stack.sites_port, plain.port):
        if not wait_for_ok(port, paths["page"]):
            raise RuntimeError(f"{paths['page']} is not served on port {port}")
    for kind in ("page", "redirect"):
        ours = client.request(stack.sites_port, "GET", paths[kind], timeout=10)
        theirs = client.request(plain.port, "GET", paths[kind], timeout=10)
        same = comparable_headers(ours.headers) == comparable_headers(theirs.headers)
        if ours.status != theirs.status or ours.body != theirs.body and kind == "page" or not same:
            raise RuntimeError(
                f"{paths[kind]}: DropHost answers {ours.status} {comparable_headers(ours.headers)}, "
                f"the baseline {theirs.status} {comparable_headers(theirs.headers)}"
            )


# Headers only one side sends by design: the sites origin's default Cache-Control, slot name and gzip Vary.
_OWN_HEADERS = frozenset(
    {"server", "date", "content-length", "last-modified", "etag", "accept-ranges", "connection", "keep-alive"}
    | {"cache-control", "x-drophost-slot", "content-type", "vary"}
)


def comparable_headers(headers: dict[str, str]) -> dict[str, str]:
    """The headers the rules decide (and Location), without those the servers add on their own."""
    return {name: value for name, value in headers.items() if name.lower() not in _OWN_HEADERS}


# -- (2) deploys with many slots --------------------------------------------------------------
def probe_rules(slot: str, number: int = 0) -> dict[str, bytes]:
    """A small site's rule files (what 1 slot in 10 has): a few redirects, headers for all paths
    and assets. `number` changes one redirect (a rules change)."""
    redirects = [
        "/home / 301",
        "/blog/:year/:slug /posts/:year/:slug 301",
        "/docs/* /guide/:splat 302",
        "/old-about /about 301",
        "/shop https://shop.example.com 308",
        f"/campaign /offers/{slot}-{number} 302",
        "/app/* /app/index.html 200",
    ]
    headers = [
        "/*",
        "  X-Frame-Options: DENY",
        "  X-Content-Type-Options: nosniff",
        "  Referrer-Policy: strict-origin-when-cross-origin",
        "/assets/*",
        "  Cache-Control: public, max-age=31536000, immutable",
    ]
    return {
        "_redirects": "".join(f"{line}\n" for line in redirects).encode(),
        "_headers": "".join(f"{line}\n" for line in headers).encode(),
    }


def probe_site(slot: str, content: int, rules: int) -> dict[str, bytes]:
    page = f"<!doctype html><title>{slot}</title><p>{slot} version {content}</p>\n".encode()
    return {"index.html": page, "style.css": b"p { color: #333; }\n", **probe_rules(slot, rules)}


class Prober:
    """The measurements of (2) on one slot with rules, at whatever the service holds at the time."""

    def __init__(self, stack: DropHostStack, folder: Path) -> None:
        self.stack = stack
        self.folder = folder
        folder.mkdir(parents=True)
        self.content = 0
        self.rules = 0

    def measure(self, options: Options) -> dict[str, float]:
        found: dict[str, float] = {}
        self.deploy(content=True)  # the slot exists (and the first deploy's extra work is not timed)
        found["content"] = median([self.deploy(content=True) for _ in range(options.samples)])
        found["files"] = median([self.deploy(content=False) for _ in range(options.rule_samples)])
        found["patch"] = median([self.patch() for _ in range(options.rule_samples)])
        found["test"] = median([self.nginx_test() for _ in range(5)])
        found["test-part"] = median([self.nginx_test(only=PROBE) for _ in range(5)])
        reloads = [self.nginx_reload() for _ in range(5)]
        found["reload"] = median([wall for wall, _ in reloads])
        found["reload-cpu"] = median([cpu for _, cpu in reloads])
        progress(
            f"(2) {len(live_slots(self.stack)):,} live slots: content-only deploy {seconds(found['content'])}, "
            f"_redirects changed {seconds(found['files'])}, PATCH site {seconds(found['patch'])}, "
            f"nginx -t {seconds(found['test'])}, of the probe's part only {seconds(found['test-part'])}, "
            f"reload {seconds(found['reload'])} (master CPU {seconds(found['reload-cpu'])})"
        )
        return found

    def deploy(self, *, content: bool) -> float:
        """A ZIP deploy to live: new content with the same rule files, or a changed `_redirects`."""
        self.content += 1
        if not content:
            self.rules += 1
        zip_path = write_small_zip(self.folder / f"{self.content}.zip", probe_site(PROBE, self.content, self.rules))
        os.sync()
        time.sleep(PAUSE)
        began = time.perf_counter()
        answer = client.upload_zip(self.stack.port, zip_path, token=self.stack.token, slot=PROBE)
        elapsed = time.perf_counter() - began
        if answer.status != 201:
            raise RuntimeError(f"a probe deploy answered {answer.status}: {answer.body[:300]!r}")
        zip_path.unlink()
        return elapsed

    def patch(self) -> float:
        """PATCH /api/slots/{slot} with new site keys: a new config version over the same files."""
        self.rules += 1
        site = {"redirects": [{"from": "/spring", "to": f"/offers/spring-{self.rules}", "status": 302}]}
        time.sleep(PAUSE)
        began = time.perf_counter()
        answer = client.request(
            self.stack.port,
            "PATCH",
            f"/api/slots/{PROBE}",
            token=self.stack.token,
            body=json.dumps({"site": site}).encode(),
            headers={"Content-Type": "application/json"},
        )
        elapsed = time.perf_counter() - began
        if answer.status != 200:
            raise RuntimeError(f"PATCH answered {answer.status}: {answer.body[:300]!r}")
        return elapsed

    def nginx_test(self, only: str = "") -> float:
        """`nginx -t` alone on the live configuration (about what nginx's master parses at a reload),
        or (`only`) on it with only that slot's part: what a rules change of that slot tests."""
        root = self.stack.data_dir / "nginx"
        conf = root / "nginx.conf"
        if only:
            text = conf.read_text()
            for folder in ("slots", "maps"):
                text = text.replace(f"include {root / folder}/*.conf;", f"include {root / folder}/{only}.conf*;")
            conf = root / "staging" / "bench-one-part.conf"
            conf.write_text(text)
        began = time.perf_counter()
        runner.run(["nginx", "-e", str(root / "error.log"), "-c", str(conf), "-t", "-q"], timeout=120)
        return time.perf_counter() - began

    def nginx_reload(self) -> tuple[float, float]:
        """A reload alone, as a rules change waits for it (Nginx.reload, wait_for_reload): SIGHUP until
        new workers exist and no old one accepts; and the master's CPU time for it (its parse of
        the whole configuration), which the machine's load does not stretch."""
        master = int((self.stack.data_dir / "nginx" / "nginx.pid").read_text())
        time.sleep(PAUSE)
        old = nginxprocess.children(master)
        cpu = cpu_seconds([master])
        began = time.perf_counter()
        os.kill(master, signal.SIGHUP)
        told: set[int] = set()
        while time.perf_counter() - began < 60:
            started = nginxprocess.children(master) - old
            accepting = {pid for pid in old if nginxprocess.accepting_worker(pid)}
            if started and not accepting:
                break
            if started:
                for pid in accepting - told:
                    told.add(pid)
                    nginxprocess.stop_old_worker(pid, master)
            time.sleep(0.002)
        return time.perf_counter() - began, cpu_seconds([master]) - cpu


def slot_rows(options: Options, one: dict[str, float], many: dict[str, float], with_rules: int) -> list[Row]:
    size = f"{options.slots:,} live slots ({with_rules:,} with rules)"
    changes = f"{size} (p50 of {options.rule_samples})"
    rows = []
    for key, what, limit in (
        ("content", f"(2) content-only ZIP deploy of a slot with rules, {size} (p50 of {options.samples})", 1.2),
        ("files", f"(2) rules change: ZIP with a changed _redirects, {changes}", 2.0),
        ("patch", f'(2) rules change: PATCH /api/slots/{{slot}} {{"site": ...}}, {changes}', 2.0),
        ("test", f"(2) `nginx -t` alone of that configuration (about what a reload parses), {size} (p50 of 5)", 0.0),
        (
            "test-part",
            f"(2) `nginx -t` of what a rules change tests: the main config and the changed part, {size} (p50 of 5)",
            0.0,
        ),
        ("reload", f"(2) reload alone: SIGHUP until new workers serve and the old ones let go, {size} (p50 of 5)", 0.0),
        ("reload-cpu", f"(2) the same: nginx master's CPU time per reload (its parse), {size} (p50 of 5)", 0.0),
    ):
        ratio = many[key] / one[key]
        rows.append(
            Row(
                what,
                f"1 slot: {seconds(one[key])}",
                seconds(many[key]),
                f"{ratio:.2f}",
                f"<= {limit:g}x" if limit else "(reported)",
                ratio <= limit if limit else None,
            )
        )
    return rows


def ruled_slots(stack: DropHostStack) -> int:
    """Slots with rules: each has its own part of the nginx configuration."""
    return len(list((stack.data_dir / "nginx" / "slots").glob("*.conf")))


def live_slots(stack: DropHostStack) -> list[str]:
    return [name for name in os.listdir(stack.data_dir / "live") if not name.startswith(".")]


class Filler:
    """Adds live slots through the digest API (shared tiny files): every `rules_every`-th one with
    `_redirects` and `_headers`, which gives it its own part of the nginx configuration."""

    def __init__(self, stack: DropHostStack, rules_every: int) -> None:
        self.stack = stack
        self.rules_every = rules_every
        self.page = b"<!doctype html><title>filler</title><p>one of many slots</p>\n"
        self.with_rules = 0

    def fill(self, count: int) -> int:
        """Add `count` slots; return how many of them have rules."""
        ruled = [number % self.rules_every == 0 for number in range(count)]
        jobs = [(f"fill-{number:05d}", has) for number, has in enumerate(ruled)]
        if not jobs:
            return 0
        self._create(*jobs[0])  # uploads the shared files once
        with ThreadPoolExecutor(FILL_CLIENTS) as pool:
            for _ in pool.map(lambda job: self._create(*job), jobs[1:]):
                pass
        self.with_rules = sum(ruled)
        return self.with_rules

    def _create(self, slot: str, with_rules: bool) -> None:
        files = {"index.html": self.page, **(probe_rules("filler") if with_rules else {})}
        digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
        by_digest = {digests[name]: data for name, data in files.items()}
        started = self._api("POST", "/api/uploads", {"slot": slot, "files": digests})
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
        self._api("POST", f"/api/uploads/{started['upload_id']}/finalize", {})

    def _api(self, method: str, path: str, payload: dict[str, Any]) -> Any:
        answer = client.request(
            self.stack.port,
            method,
            path,
            token=self.stack.token,
            body=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
        if answer.status != 201:
            raise RuntimeError(f"{method} {path} answered {answer.status}: {answer.body[:300]!r}")
        return answer.json()


# -- (3) the parse cost of configuration shapes ---------------------------------------------------
SHAPES = {
    "none": "{entries:,} sites-map entries, no slot with rules",
    "today": "{slots:,} parts as sitecompile compiles (2)'s rules today (17 locations and ifs each)",
    "ifs": "{slots:,} light parts: one prefix location each, its 7 redirects and 1 header block as ifs",
    "entries": "rules as data, values only: shared locations, every slot's values entries of shared maps",
    "maps-1": "rules as data: the same, and each slot's redirects in a map of its own ({slots:,} maps)",
    "maps-2": "rules as data: the same, and its path-dependent header in a second map ({maps:,} maps)",
}


def measure_shapes(work: Path, rules_slots: int, rounds: int = 5) -> list[Row]:
    """The CPU of `nginx -t` (about what a reload's parse costs nginx's master) per shape, in
    interleaved rounds; the configurations are written, never served."""
    confs = {shape: write_shape(work / shape, shape, rules_slots) for shape in SHAPES}
    cpu: dict[str, list[float]] = {shape: [] for shape in SHAPES}
    for number in range(rounds):
        progress(f"(3) round {number + 1} of {rounds}")
        for shape, conf in confs.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            runner.run(["nginx", "-e", str(work / "error.log"), "-c", str(conf), "-t", "-q"], timeout=120)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[shape].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    base = median(cpu["none"])
    return [
        Row(
            f"(3) `nginx -t` CPU, {what.format(slots=rules_slots, maps=2 * rules_slots)} (median of {rounds})",
            f"{SHAPES['none'].format(entries=10 * rules_slots)}: {seconds(base)}",
            seconds(median(cpu[shape])),
            f"{(median(cpu[shape]) - base) / max(rules_slots, 1) * 1e6:.0f} us a slot",
            "(reported)",
            None,
        )
        for shape, what in SHAPES.items()
        if shape != "none"
    ]


def write_shape(folder: Path, shape: str, rules_slots: int) -> Path:
    """A whole nginx.conf (from nginx.conf.j2) with 10,000 sites-map entries and `rules_slots`
    slots with (2)'s rules in the given shape."""
    for sub in ("nginx/slots", "nginx/maps", "nginx/tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=folder)
    (folder / "sites.map").write_text("".join(f"fill-{n:05d} live;\n" for n in range(10 * rules_slots)))
    (folder / "nginx" / "mime.types").write_text("types { text/html html; }\n")
    ruled = [f"fill-{n * 10:05d}" for n in range(rules_slots)]
    server, http = shape_text(shape, ruled)
    (folder / "nginx" / "slots" / "all.conf").write_text(server)
    (folder / "nginx" / "maps" / "all.conf").write_text(http)
    conf = folder / "nginx.conf"
    conf.write_text(render_main_config(template_environment(), settings, sites_map=str(folder / "sites.map")))
    return conf


def shape_text(shape: str, slots: Sequence[str]) -> tuple[str, str]:
    """The server-level and the http-level text of a shape."""
    if shape == "none" or not slots:
        return "", ""
    if shape == "today":
        parts = [split_part(render_part(slot, probe_site_rules(slot))) for slot in slots]
        return "".join(server for server, _ in parts), "".join(maps for _, maps in parts)
    if shape == "ifs":
        out = []
        for slot in slots:
            prefix = f"/d/{slot}"
            out.append(f"location ^~ {prefix}/ {{\n")
            out.append(
                f'    if ($drophost_requested_path ~ "^{prefix}/assets/") {{ set $drophost_cache_control "x"; }}\n'
            )
            out += [f'    if ($uri ~ "^{prefix}/r{n}/?$") {{ return 301 "/x{n}"; }}\n' for n in range(7)]
            out.append("}\n")
        return "".join(out), ""
    return _shared_locations(), _data_maps(shape, slots)


def probe_site_rules(slot: str) -> SiteRules:
    files = probe_rules(slot)
    redirects = siterules.parse_redirects(files["_redirects"].decode())
    headers = siterules.parse_headers(files["_headers"].decode())
    return siterules.combine(siterules.parse_options(None, file="site"), redirects, headers)


def _data_maps(shape: str, slots: Sequence[str]) -> str:
    """Per slot: entries of shared maps keyed by the slot, and its own maps ("maps-1", "maps-2")."""
    own: list[str] = []
    dispatch: dict[str, list[str]] = {"rr": [], "xfo": [], "xcto": [], "rp": [], "cc": []}
    for slot in slots:
        name, prefix = slot.replace("-", "_"), f"/d/{slot}"
        dispatch["xfo"].append(f"    {slot} DENY;\n")
        dispatch["xcto"].append(f"    {slot} nosniff;\n")
        dispatch["rp"].append(f"    {slot} strict-origin-when-cross-origin;\n")
        if shape == "entries":
            dispatch["rr"].append(f'    {slot} "301 /x";\n')
            continue
        own.append(
            f"map $uri $drophost_{name}_r {{\n"
            f'    "~^{prefix}/home/?$" "301 $drophost_base/";\n'
            f'    "~^{prefix}/blog/([^/]+)/([^/]+)/?$" "301 $drophost_base/posts/$1/$2";\n'
            f'    "~^{prefix}/docs/(.*)$" "302 $drophost_base/guide/$1";\n'
            f'    "~^{prefix}/old-about/?$" "301 $drophost_base/about";\n'
            f'    "~^{prefix}/shop/?$" "308 https://shop.example.com";\n'
            f'    "~^{prefix}/campaign/?$" "302 $drophost_base/offers/x-1";\n'
            f'    "~^{prefix}/app/(.*)$" "200 {prefix}/app/index.html";\n'
            "}\n"
        )
        dispatch["rr"].append(f"    {slot} $drophost_{name}_r;\n")
        if shape == "maps-2":
            own.append(
                f"map $drophost_requested_path $drophost_{name}_cc {{\n"
                f'    "~^{prefix}/assets/" "public, max-age=31536000, immutable";\n'
                '    default "public, max-age=0, must-revalidate";\n'
                "}\n"
            )
            dispatch["cc"].append(f"    {slot} $drophost_{name}_cc;\n")
    shared = [
        f'map $drophost_slot $drophost_data_{kind} {{\n    default "";\n{"".join(lines)}}}\n'
        for kind, lines in dispatch.items()
    ]
    shared.append('map $drophost_data_rr $drophost_data_code { "~^(?<drophost_rc>[0-9]+) " $drophost_rc; }\n')
    shared.append('map $drophost_data_rr $drophost_data_target { "~^[0-9]+ (?<drophost_rt>.*)$" $drophost_rt; }\n')
    return "".join(own) + "".join(shared)


def _shared_locations() -> str:
    """What every slot with rules would share (a constant number of blocks)."""
    returns = "".join(
        f"    if ($drophost_data_code = {code}) {{ return {code} $drophost_data_target; }}\n"
        for code in (301, 302, 303, 307, 308)
    )
    return (
        'location ~ "^/d/drophost-data-shape/" {\n'
        "    try_files $uri $uri.html @drophost-data-static;\n"
        "    add_header X-Frame-Options $drophost_data_xfo always;\n"
        "    add_header X-Content-Type-Options $drophost_data_xcto always;\n"
        "    add_header Referrer-Policy $drophost_data_rp always;\n"
        '    location ~ "^/d/drophost-data-shape/.*/\\." { return 404; }\n'
        '    location ~ "^/d/drophost-data-shape/aasa$" { default_type application/json; }\n'
        "}\n"
        "location @drophost-data-static { error_page 404 = @drophost-data-rules; }\n"
        "location @drophost-data-files { try_files $uri.html @drophost-data-rules; }\n"
        f"location @drophost-data-rules {{\n{returns}"
        "    if ($drophost_data_code = 200) { rewrite ^ $drophost_data_target break; }\n"
        "    return 404;\n"
        "}\n"
    )


if __name__ == "__main__":
    raise SystemExit(main())
