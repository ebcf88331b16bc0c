"""Builds from source (deploy.yaml build:): real repositories pushed over smart HTTP, built in the sandbox."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from drophost.cli import main
from drophost.settings import Settings
from tests.harness.git import git, push, work_repo
from tests.harness.stacks import Served

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")

NODE_BUILD = """
const fs = require("fs");
fs.mkdirSync("dist", { recursive: true });
const env = ["DROPHOST_SLOT", "DROPHOST_URL", "DROPHOST_BASE_PATH", "DROPHOST_BRANCH", "DROPHOST_COMMIT",
  "DROPHOST_CONTEXT", "URL", "DEPLOY_URL", "CONTEXT", "BRANCH", "COMMIT_REF", "GREETING"];
const shown = Object.fromEntries(env.map((name) => [name, process.env[name]]));
fs.writeFileSync("dist/index.html", "<h1>built by node</h1>");
fs.writeFileSync("dist/env.json", JSON.stringify(shown));
"""
PACKAGE_JSON = '{"name": "site", "scripts": {"build": "node build.js"}}'


def site_yaml(command: str, output: str = "dist", slot: str = "handbook", **extra: str) -> str:
    lines = [
        "sites:",
        f"  - slot: {slot}",
        "    repo: hosted:handbook",
        "    branch: main",
        "    build:",
        f"      command: {json.dumps(command)}",
        f"      output: {output}",
    ]
    lines += [f"      {key}: {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


def deployments(served: Served) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = served.api("GET", "/api/deployments").json()["deployments"]
    return rows


def commit_and_push(served: Served, work: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "--allow-empty", "-m", "change", cwd=work)
    code, output = push(work, served.push_url("handbook"), "main")
    assert code == 0, output
    return output


def test_a_node_build_script_is_built_and_served_with_the_platform_variables(
    served_stack: Callable[..., Served], tmp_path: Path
) -> None:
    served = served_stack(site_yaml("node build.js", env="{GREETING: hello}"))
    work = work_repo(tmp_path, {"package.json": PACKAGE_JSON, "build.js": NODE_BUILD})
    code, output = push(work, served.push_url("handbook"), "main")
    assert code == 0, output
    assert f"remote: live at {served.sites_url}/d/handbook/ (version 1)" in output
    assert httpx.get(served.sites_url + "/d/handbook/").text == "<h1>built by node</h1>"
    env = httpx.get(served.sites_url + "/d/handbook/env.json").json()
    commit = git("rev-parse", "HEAD", cwd=work).strip()
    url = f"{served.sites_url}/d/handbook/"
    assert env == {
        "DROPHOST_SLOT": "handbook",
        "DROPHOST_URL": url,
        "DROPHOST_BASE_PATH": "/d/handbook/",
        "DROPHOST_BRANCH": "main",
        "DROPHOST_COMMIT": commit,
        "DROPHOST_CONTEXT": "production",
        "URL": url,
        "DEPLOY_URL": url,
        "CONTEXT": "production",
        "BRANCH": "main",
        "COMMIT_REF": commit,
        "GREETING": "hello",
    }
    (row,) = deployments(served)
    log = served.api("GET", f"/api/deployments/{row['id']}/log")
    assert log.headers["content-type"].startswith("text/plain")
    assert "DropHost: $ /bin/sh -c node build.js" in log.text


def test_a_failing_build_keeps_the_previous_version_and_says_why(
    served_stack: Callable[..., Served], tmp_path: Path
) -> None:
    command = 'if [ -f fail ]; then echo "boom-line"; exit 3; fi; mkdir dist; echo first > dist/index.html'
    served = served_stack(site_yaml(command))
    work = work_repo(tmp_path, {"README": "x"})
    code, output = push(work, served.push_url("handbook"), "main")
    assert "(version 1)" in output
    (work / "fail").write_text("1")
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "fail", cwd=work)
    code, output = push(work, served.push_url("handbook"), "main")
    assert code != 0, output  # refused: the branch stays where it was (test_push_deploys.py)
    assert "remote: DropHost: deploy of handbook failed: the build command exited with status 3" in output
    failed = deployments(served)[0]
    assert failed["status"] == "failed"
    assert "boom-line" in failed["error"]
    assert httpx.get(served.sites_url + "/d/handbook/").text == "first\n"
    assert "boom-line" in served.api("GET", f"/api/deployments/{failed['id']}/log?follow=1").text


def test_drophost_logs_shows_a_deployments_build_log_and_still_a_slots_history(
    served_stack: Callable[..., Served],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served = served_stack(site_yaml("echo log-line-one; exit 4"))
    work = work_repo(tmp_path, {"README": "x"})
    push(work, served.push_url("handbook"), "main")
    (row,) = deployments(served)
    monkeypatch.setenv("DROPHOST_URL", served.base_url)
    monkeypatch.setenv("DROPHOST_API_TOKEN", served.settings.api_token)
    capsys.readouterr()
    assert main(["logs", str(row["id"]), "--follow"]) == 1, capsys.readouterr().err
    shown = capsys.readouterr().out
    assert "log-line-one" in shown and "the build command exited with status 4" in shown
    assert main(["logs", "handbook"]) == 0
    assert f"deployment {row['id']}  failed" in capsys.readouterr().out


def test_the_sandbox_hides_the_service_and_refuses_writes_outside_the_tree(
    served_stack: Callable[..., Served], settings: Settings, tmp_path: Path
) -> None:
    data = settings.data_dir
    checks = {
        "token": f'cat "{data}/api-token"',
        "data-dir": f'ls "{data}"',
        "releases": f'ls "{data}/releases"',
        "service-environ": "cat /proc/*/environ | grep -a DROPHOST_API_TOKEN",
        "own-environ": "env | grep DROPHOST_API_TOKEN",
        "write-usr": "touch /usr/escape",
        "write-etc": "touch /etc/escape",
        "write-data": f'touch "{data}/escape"',
        "network": f"node -e \"require('net').connect({settings.port}, '127.0.0.1').on('error', () => process.exit(1))"
        ".on('connect', () => process.exit(0))\"",
    }
    script = "mkdir -p dist; : > dist/index.html\n" + "".join(
        f"if {check} >/dev/null 2>&1; then echo {name} >> dist/index.html; fi\n" for name, check in checks.items()
    )
    served = served_stack(site_yaml("sh check.sh"))
    work = work_repo(tmp_path, {"check.sh": script})
    code, output = push(work, served.push_url("handbook"), "main")
    assert "(version 1)" in output, output
    assert httpx.get(served.sites_url + "/d/handbook/").text == ""
    assert not (data / "escape").exists()


def test_a_build_past_its_timeout_is_stopped(served_stack: Callable[..., Served], tmp_path: Path) -> None:
    served = served_stack(site_yaml("echo started; sleep 60", timeout="2"))
    work = work_repo(tmp_path, {"README": "x"})
    push(work, served.push_url("handbook"), "main")
    (row,) = deployments(served)
    assert row["status"] == "failed"
    assert row["error"].startswith("the build ran past its timeout of 2s and was stopped")
    assert "started" in row["error"]


def test_a_fork_bomb_is_contained_by_the_process_limit(served_stack: Callable[..., Served], tmp_path: Path) -> None:
    served = served_stack(site_yaml("bomb() { bomb | bomb & }; bomb; sleep 3", timeout="6"), build_processes=40)
    work = work_repo(tmp_path, {"README": "x"})
    push(work, served.push_url("handbook"), "main")
    (row,) = deployments(served)
    assert row["status"] == "failed"
    # Everything it started dies with the sandbox's pid namespace (the kernel may take a moment:
    # tens of processes torn down on a loaded 2-core machine).
    deadline = time.monotonic() + 30
    while subprocess.run(["pgrep", "-u", "drophost-build"], capture_output=True, check=False).stdout:
        assert time.monotonic() < deadline, "the fork bomb's processes outlived the build"
        time.sleep(0.2)


def test_an_output_over_the_size_cap_is_refused(served_stack: Callable[..., Served], tmp_path: Path) -> None:
    command = "mkdir dist; head -c 300000 /dev/zero > dist/big.bin; echo x > dist/index.html"
    served = served_stack(site_yaml(command), max_unpacked_bytes=100_000)
    work = work_repo(tmp_path, {"README": "x"})
    push(work, served.push_url("handbook"), "main")
    (row,) = deployments(served)
    assert row["status"] == "failed"
    assert row["error"].startswith("the build's output holds more than 100000 bytes")
    assert httpx.get(served.sites_url + "/d/handbook/").status_code == 404


def test_the_cache_is_kept_and_an_identical_output_is_unchanged(
    served_stack: Callable[..., Served], tmp_path: Path
) -> None:
    command = (
        "mkdir dist; if [ -f .cache/seen ]; then echo hit > dist/index.html; else echo miss > dist/index.html; fi;"
        " touch .cache/seen"
    )
    served = served_stack(site_yaml(command, cache="[.cache]"))
    work = work_repo(tmp_path, {"README": "x"})
    push(work, served.push_url("handbook"), "main")
    assert httpx.get(served.sites_url + "/d/handbook/").text == "miss\n"
    commit_and_push(served, work, {"README": "y"})
    assert httpx.get(served.sites_url + "/d/handbook/").text == "hit\n"
    output = commit_and_push(served, work, {"README": "z"})
    assert "remote: DropHost: handbook unchanged" in output
    statuses = [row["status"] for row in deployments(served)]
    assert statuses == ["unchanged", "live", "superseded"]


def test_each_build_sees_exactly_its_commit_though_the_slot_keeps_its_checkout(
    served_stack: Callable[..., Served], tmp_path: Path
) -> None:
    command = (
        "mkdir dist; (find . -path ./dist -prune -o -type f -print | sort; cat a.txt README;"
        " [ -L in ] && echo in-link; [ -L out ] || echo no-out-link) > dist/index.html;"
        " echo tampered > a.txt; rm b.txt; echo junk > junk.txt; mkdir -p sub; echo x > sub/left;"
        # git clean and read-tree leave paths named .git alone: a planted config would run in the
        # next build's git (core.fsmonitor, hooks) if the service did not remove them.
        " mkdir -p .git/hooks sub/.git; echo '[core]' > .git/config; echo x > sub/.git/x"
    )
    served = served_stack(site_yaml(command))
    work = work_repo(tmp_path, {"README": "x", "a.txt": "orig", "b.txt": "b"})
    (work / "in").symlink_to("a.txt")
    (work / "out").symlink_to("/etc/passwd")
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "links", cwd=work)
    seen = "./README\n./a.txt\n./b.txt\norig{readme}in-link\nno-out-link\n"
    code, output = push(work, served.push_url("handbook"), "main")
    assert code == 0, output
    assert httpx.get(served.sites_url + "/d/handbook/").text == seen.format(readme="x")
    commit_and_push(served, work, {"README": "y"})
    assert httpx.get(served.sites_url + "/d/handbook/").text == seen.format(readme="y")


def test_a_commit_of_many_files_is_checked_out_whole_by_gits_parallel_workers(
    served_stack: Callable[..., Served], tmp_path: Path
) -> None:
    # From 100 files to write, read-tree shares them among checkout workers.
    command = "mkdir dist; find src -type f | sort | xargs cat > dist/index.html"
    served = served_stack(site_yaml(command))
    files = {f"src/{n % 7}/f{n:03d}.txt": f"{n} " for n in range(150)}
    work = work_repo(tmp_path, files)
    code, output = push(work, served.push_url("handbook"), "main")
    assert code == 0, output
    assert httpx.get(served.sites_url + "/d/handbook/").text == "".join(files[name] for name in sorted(files))
    changed = {name: f"{text}changed " for name, text in list(files.items())[:120]}
    commit_and_push(served, work, changed)
    files.update(changed)
    assert httpx.get(served.sites_url + "/d/handbook/").text == "".join(files[name] for name in sorted(files))


def test_preview_branches_get_their_context_and_url(served_stack: Callable[..., Served], tmp_path: Path) -> None:
    yaml = (
        "sites:\n  - slot: pr-{branch}\n    repo: hosted:handbook\n    branches: ['feature/*']\n    build:\n"
        '      command: "mkdir dist; echo $CONTEXT $DEPLOY_URL > dist/index.html"\n      output: dist\n'
    )
    served = served_stack(yaml)
    work = work_repo(tmp_path, {"README": "x"})
    git("checkout", "--quiet", "-b", "feature/nav", cwd=work)
    code, output = push(work, served.push_url("handbook"), "feature/nav")
    assert code == 0, output
    assert httpx.get(served.sites_url + "/d/pr-feature-nav/").text == f"preview {served.sites_url}/d/pr-feature-nav/\n"


@pytest.mark.skipif(shutil.which("hugo") is None, reason="hugo is not installed")
def test_a_hugo_site_is_built(served_stack: Callable[..., Served], tmp_path: Path) -> None:
    served = served_stack(site_yaml('hugo --baseURL "$DROPHOST_URL"', output="public"))
    work = work_repo(
        tmp_path,
        {
            "hugo.toml": 'title = "Handbook"\n',
            "content/_index.md": "---\ntitle: Home\n---\nWelcome to the *handbook*.\n",
            "layouts/index.html": "<title>{{ .Site.Title }}</title>{{ .Content }}",
        },
    )
    code, output = push(work, served.push_url("handbook"), "main")
    assert "(version 1)" in output, output
    page = httpx.get(served.sites_url + "/d/handbook/").text
    assert "<title>Handbook</title>" in page and "<em>handbook</em>" in page


@pytest.mark.skipif(not Path("/usr/bin/mkdocs").exists(), reason="Debian's mkdocs is not installed")
def test_an_mkdocs_site_is_built(served_stack: Callable[..., Served], tmp_path: Path) -> None:
    served = served_stack(site_yaml("mkdocs build --site-dir site", output="site"))
    work = work_repo(tmp_path, {"mkdocs.yml": "site_name: Handbook\n", "docs/index.md": "# Welcome\n\nThe handbook.\n"})
    code, output = push(work, served.push_url("handbook"), "main")
    assert "(version 1)" in output, output
    assert "The handbook." in httpx.get(served.sites_url + "/d/handbook/").text


def test_builds_run_one_at_a_time(served_stack: Callable[..., Served], tmp_path: Path) -> None:
    lines = ["sites:"]
    for slot in ("one", "two", "three"):
        lines += [
            f"  - slot: {slot}",
            f"    repo: hosted:{slot}",
            "    build:",
            '      command: "mkdir dist; date +%s.%N > dist/start; sleep 1; date +%s.%N > dist/end; echo ok >'
            ' dist/index.html"',
            "      output: dist",
        ]
    served = served_stack("\n".join(lines) + "\n")
    work = work_repo(tmp_path, {"README": "x"})
    pushes = [
        threading.Thread(target=push, args=(work, served.push_url(slot), "main")) for slot in ("one", "two", "three")
    ]
    for thread in pushes:
        thread.start()
    for thread in pushes:
        thread.join()
    spans = sorted(
        (
            float(httpx.get(f"{served.sites_url}/d/{slot}/start").text),
            float(httpx.get(f"{served.sites_url}/d/{slot}/end").text),
        )
        for slot in ("one", "two", "three")
    )
    assert all(earlier[1] <= later[0] for earlier, later in zip(spans, spans[1:], strict=False))


def test_build_logs_are_kept_as_long_as_their_release(served_stack: Callable[..., Served], tmp_path: Path) -> None:
    command = 'if [ -f fail ]; then echo "boom"; exit 3; fi; mkdir dist; cat README > dist/index.html'
    served = served_stack(site_yaml(command), keep_versions=2)
    work = work_repo(tmp_path, {"README": "one"})
    push(work, served.push_url("handbook"), "main")
    (work / "fail").write_text("1")
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "fail", cwd=work)
    assert push(work, served.push_url("handbook"), "main")[0] != 0  # refused: its deploy failed
    (work / "fail").unlink()
    commit_and_push(served, work, {"README": "two"})
    first, failed, second = sorted(row["id"] for row in deployments(served))
    logs = served.settings.builds_dir / "logs"
    assert sorted(p.name for p in logs.iterdir()) == [f"{first}.log", f"{failed}.log", f"{second}.log"]

    # A third version: retention keeps two, so the first release goes, and its log with it; so does the
    # log of the failed build, older than every release still kept. The kept ones keep theirs.
    commit_and_push(served, work, {"README": "three"})
    third = max(row["id"] for row in deployments(served))
    assert sorted(p.name for p in logs.iterdir()) == [f"{second}.log", f"{third}.log"]
    assert served.api("GET", f"/api/deployments/{first}/log").text == ""
    assert "live at" in served.api("GET", f"/api/deployments/{second}/log").text
    assert httpx.get(served.sites_url + "/d/handbook/").text == "three"
