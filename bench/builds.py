"""Builds benchmark (issue 15): `.venv/bin/python -m bench.builds` (real PostgreSQL, nginx, git, Hugo, bubblewrap).

A Hugo site of 1,000 pages pushed over smart HTTP to a hosted repository of `drophost up`, built
in the sandbox and published; the baseline, in the same run and on the same tree: the same `hugo`
command run directly, its output copied to a fresh folder, and `nginx -s reload`.

(a) push to live, cold: a slot and repository never used (empty mirror, no cache, pages the store
    has never seen), the median of the per-round ratios, sides alternating (goal <= 1.2);
(b) push to live again, one page changed: the same slot, its mirror and build cache warm and all
    but one page already in the store (cache hit), against the same baseline;
(c) the sandbox's own start-up: a command that does nothing (`true`) in bubblewrap, as builds run
    it, against `true` run directly (the median of 30; the difference is bubblewrap's cost).

(a) and (b) also report CPU time, which a busy machine disturbs less than wall time: the push's is
what DropHost's whole process tree used across it (git, hooks, hugo, nginx and PostgreSQL included:
utime+stime+cutime+cstime from /proc) plus the git client's; the baseline's, this process's and its
children's (hugo, the copy, the reload).

Results and how to read them: bench/RESULTS.md.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import httpx2 as httpx
from tests.harness.git import GIT_ENV
from tests.harness.scratch import scratch_dir

from bench import report
from bench.stack import DropHostStack, process_tree
from drophost import runner
from drophost.pipeline import sandbox

PAGES = 1000
ROUNDS = 3  # cold pushes, one new slot each
WARM = 3  # pushes of one changed page to the first slot
STARTS = 30  # sandbox start-ups
HUGO = ["hugo", "--quiet", "--baseURL"]
LAYOUT = "<!doctype html><title>{{ .Title }}</title><h1>{{ .Title }}</h1>{{ .Content }}"
LIST = "<!doctype html><title>{{ .Title }}</title><ul>{{ range .Pages }}<li>{{ .Title }}</li>{{ end }}</ul>"


def deploy_yaml(count: int) -> str:
    sites = "".join(
        f"  - slot: hugo-{n}\n    repo: hosted:hugo-{n}\n    branch: main\n"
        '    build:\n      command: hugo --quiet --baseURL "$DROPHOST_URL"\n      output: public\n'
        "      cache: [resources/_gen]\n"
        for n in range(count)
    )
    return "sites:\n" + sites


def write_site(tree: Path, seed: int) -> None:
    """hugo.toml, two layouts and PAGES pages of a few paragraphs each, distinct per seed."""
    (tree / "layouts" / "_default").mkdir(parents=True, exist_ok=True)
    (tree / ".gitignore").write_text(".hugo_build.lock\n")
    (tree / "hugo.toml").write_text('title = "Bench"\ndisableKinds = ["taxonomy", "term", "RSS", "sitemap"]\n')
    (tree / "layouts" / "_default" / "single.html").write_text(LAYOUT)
    (tree / "layouts" / "_default" / "list.html").write_text(LIST)
    (tree / "layouts" / "index.html").write_text(LIST)
    posts = tree / "content" / "posts"
    posts.mkdir(parents=True, exist_ok=True)
    for n in range(PAGES):
        text = " ".join(f"word{(seed * 7919 + n * 31 + k) % 9973}" for k in range(120))
        body = "\n\n".join([f"Page *{n}* of site {seed}.", text, f"- one {n}\n- two {seed}", text[::-1]])
        (posts / f"p{n:04d}.md").write_text(f"---\ntitle: Page {n}\n---\n{body}\n")


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True)


def commit(tree: Path, message: str) -> None:
    if not (tree / ".git").exists():
        git("init", "-q", "-b", "main", cwd=tree)
    git("add", "-A", cwd=tree)
    git("commit", "-q", "-m", message, cwd=tree)


def tree_cpu(root: int) -> float:
    """CPU seconds of `root` and its living descendants, each with its ended children's."""
    ticks = 0
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        ticks += sum(int(field) for field in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    """CPU seconds of this process and its ended children."""
    mine, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + children.ru_utime + children.ru_stime


def push_to_live(stack: DropHostStack, tree: Path, slot: str) -> tuple[float, float]:
    """git push until it returns, which is when the deploy it started has ended; then checked served.
    Its wall time and CPU time (the service's tree and the git client)."""
    url = f"http://pusher:{stack.token}@127.0.0.1:{stack.port}/git/{slot}.git"
    assert stack.process is not None
    cpu = tree_cpu(stack.process.pid) + own_cpu()
    started = time.perf_counter()
    result = subprocess.run(["git", "push", "-q", url, "main"], cwd=tree, env=GIT_ENV, capture_output=True, text=True)
    took = time.perf_counter() - started
    cpu = tree_cpu(stack.process.pid) + own_cpu() - cpu
    if "live at" not in result.stderr:
        raise RuntimeError(f"the push to {slot} did not go live:\n{result.stderr[-2000:]}\n{stack.log_tail()}")
    return took, cpu


def hugo_copy_reload(stack: DropHostStack, tree: Path, target: Path) -> tuple[float, float]:
    """The baseline: the same hugo command in the tree, its output copied to a fresh folder, nginx
    reloaded. Its wall time and CPU time."""
    nginx_dir = stack.data_dir / "nginx"
    reload = ["nginx", "-e", str(nginx_dir / "error.log"), "-c", str(nginx_dir / "nginx.conf"), "-s", "reload"]
    output = tree.with_name(tree.name + "-public")
    shutil.rmtree(output, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)
    cpu = own_cpu()
    started = time.perf_counter()
    url = f"http://127.0.0.1:{stack.sites_port}/d/x/"
    runner.run([*HUGO, url, "--destination", str(output)], cwd=tree, timeout=600)
    shutil.copytree(output, target)
    runner.run(reload, timeout=30)
    return time.perf_counter() - started, own_cpu() - cpu


def sandbox_start_up(root: Path) -> tuple[float, float]:
    """The median time of `true` in bubblewrap (as builds run it, limits included) and run directly."""
    tree = root / "empty-tree"
    tree.mkdir()
    job = sandbox.Job(command=("/bin/true",), tree=tree, workdir="")
    limits = sandbox.Limits(60, 1 << 30, 256, 1024, 1 << 30)
    bwrap = sandbox.plan_bwrap("bwrap", job, limits, sandbox.host_system())
    timings: dict[str, list[float]] = {"sandbox": [], "direct": []}
    for _ in range(STARTS):
        for side, argv in (("sandbox", bwrap), ("direct", ["/bin/true"])):
            started = time.perf_counter()
            sandbox.run(argv, cwd=Path("/"), env={"PATH": sandbox.PATH}, timeout=30, run_as=None, on_line=print)
            timings[side].append(time.perf_counter() - started)
    return statistics.median(timings["sandbox"]), statistics.median(timings["direct"])


def main() -> int:
    report.exit_on_sigterm()
    began = time.perf_counter()
    with scratch_dir("dh-bench-builds-") as root:
        config = root / "deploy.yaml"
        config.write_text(deploy_yaml(ROUNDS))
        env = {"DROPHOST_CONFIG": str(config), "DROPHOST_POLL_INTERVAL": "0"}
        with DropHostStack(root, env=env) as stack:
            rows = measure(stack, root)
    report.print_report(rows, began)
    return 0


def measure(stack: DropHostStack, root: Path) -> list[report.Row]:
    # (a) cold: one new slot per round, sides alternating; the baseline builds the same tree.
    ours: list[float] = []
    theirs: list[float] = []
    cpu: dict[str, list[float]] = {"ours": [], "theirs": [], "warm": [], "warm base": []}
    trees = []
    for number in range(ROUNDS):
        tree = root / f"site-{number}"
        write_site(tree, seed=number)
        commit(tree, "first")
        trees.append(tree)
        for side in ("ours", "baseline") if number % 2 == 0 else ("baseline", "ours"):
            os.sync()
            if side == "ours":
                took, used = push_to_live(stack, tree, f"hugo-{number}")
                ours.append(took)
                cpu["ours"].append(used)
            else:
                took, used = hugo_copy_reload(stack, tree, root / f"baseline-{number}")
                theirs.append(took)
                cpu["theirs"].append(used)
        page = httpx.get(f"http://127.0.0.1:{stack.sites_port}/d/hugo-{number}/posts/p0007/", timeout=10).text
        assert f"Page <em>7</em> of site {number}" in page, page[:300]
    cold_ratio = statistics.median([a / b for a, b in zip(ours, theirs, strict=True)])

    # (b) warm: the first slot again, one page changed per push.
    warm: list[float] = []
    warm_base: list[float] = []
    tree = trees[0]
    for number in range(WARM):
        (tree / "content" / "posts" / "p0001.md").write_text(f"---\ntitle: Page 1\n---\nChanged {number}.\n")
        commit(tree, f"change {number}")
        os.sync()
        took, used = push_to_live(stack, tree, "hugo-0")
        warm.append(took)
        cpu["warm"].append(used)
        took, used = hugo_copy_reload(stack, tree, root / f"warm-baseline-{number}")
        warm_base.append(took)
        cpu["warm base"].append(used)
    warm_ratio = statistics.median([a / b for a, b in zip(warm, warm_base, strict=True)])

    # (c) the sandbox's start-up.
    boxed, direct = sandbox_start_up(root)

    cold_cpu = statistics.median([a / b for a, b in zip(cpu["ours"], cpu["theirs"], strict=True)])
    warm_cpu = statistics.median([a / b for a, b in zip(cpu["warm"], cpu["warm base"], strict=True)])
    for name, values in (("cold push", ours), ("cold baseline", theirs), ("warm push", warm), ("warm base", warm_base)):
        print(f"{name:14} " + ", ".join(report.seconds(v) for v in values))
    for name, values in cpu.items():
        print(f"CPU {name:10} " + ", ".join(report.seconds(v) for v in values))
    return [
        report.Row(
            f"(a) Hugo site of {PAGES:,} pages, git push to live, cold: new slot, empty mirror and cache"
            f" (median of {ROUNDS} per-round ratios)",
            f"hugo + copy + nginx -s reload: {report.seconds(statistics.median(theirs))}",
            report.seconds(statistics.median(ours)),
            f"{cold_ratio:.2f}",
            "<= 1.2",
            cold_ratio <= 1.2,
        ),
        report.Row(
            "(a) the same: CPU time, DropHost's process tree and the git client (median of per-round ratios)",
            f"hugo + copy + reload: {report.seconds(statistics.median(cpu['theirs']))}",
            report.seconds(statistics.median(cpu["ours"])),
            f"{cold_cpu:.2f}",
            "(reported)",
            None,
        ),
        report.Row(
            f"(b) the same, next push of one changed page, warm mirror and build cache (cache hit) (median of {WARM})",
            f"hugo + copy + nginx -s reload: {report.seconds(statistics.median(warm_base))}",
            report.seconds(statistics.median(warm)),
            f"{warm_ratio:.2f}",
            "(reported)",
            None,
        ),
        report.Row(
            "(b) the same: CPU time (median of per-round ratios)",
            f"hugo + copy + reload: {report.seconds(statistics.median(cpu['warm base']))}",
            report.seconds(statistics.median(cpu["warm"])),
            f"{warm_cpu:.2f}",
            "(reported)",
            None,
        ),
        report.Row(
            f"(c) sandbox start-up: `true` in bubblewrap with the build's limits (median of {STARTS})",
            f"`true` directly: {direct * 1000:.1f} ms",
            f"{boxed * 1000:.1f} ms",
            f"+{(boxed - direct) * 1000:.1f} ms",
            "(reported)",
            None,
        ),
    ]


if __name__ == "__main__":
    raise SystemExit(main())
