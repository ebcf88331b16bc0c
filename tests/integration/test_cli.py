from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from drophost.cli import main
from drophost.client import commands, digest, hashcache
from drophost.client.commands import ProgressBar
from drophost.client.http import EXIT_AUTH, EXIT_NOT_FOUND, EXIT_REJECTED, EXIT_UNREACHABLE, EXIT_USAGE, ApiClient
from drophost.digests import file_digest
from tests.harness.auth import TOKEN
from tests.harness.ports import free_port
from tests.harness.stacks import LiveStack


def drophost(live: LiveStack, capsys: pytest.CaptureFixture[str], *argv: str, **env: str) -> tuple[int, str, str]:
    environ = {"DROPHOST_URL": live.base_url, "DROPHOST_API_TOKEN": TOKEN, "HOME": "/nonexistent", **env}
    code = commands.main(list(argv), environ)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def site(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    folder = tmp_path / name
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    return folder


def test_deploy_a_folder_then_list_versions_diff_rollback_and_logs(
    live: LiveStack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = site(tmp_path, "my-site", {"index.html": "<h1>one</h1>", "css/a.css": "a{}", ".env": "SECRET=1"})
    code, out, err = drophost(live, capsys, "deploy", str(folder), "--progress", "always")
    assert code == 0, err
    host = f"http://my-site.localhost:{live.settings.sites_listen_port}/"
    permalink = f"http://1--my-site.localhost:{live.settings.sites_listen_port}/"
    assert out.splitlines() == [
        f"my-site is live at {host} (version 1, deployment 1, 2 files)",
        f"permalink: {permalink}",
    ]
    assert "uploading [" in err and "100%" in err
    assert live.get("/d/my-site/").text == "<h1>one</h1>"
    (folder / "index.html").write_text("<h1>two</h1>")
    code, out, _ = drophost(live, capsys, "deploy", str(folder), "--slot", "demo", "--ttl", "1d", "--json")
    deployed = json.loads(out)
    assert code == 0 and deployed["slot"] == "demo" and deployed["ttl_seconds"] == 86400
    (folder / "index.html").write_text("<h1>three</h1>")
    (folder / "new.txt").write_text("new")
    drophost(live, capsys, "deploy", str(folder), "--slot", "demo")
    assert live.get("/d/demo/").text == "<h1>three</h1>"

    code, out, _ = drophost(live, capsys, "list")
    lines = out.splitlines()
    assert lines[0].split() == ["SLOT", "STATUS", "VERSION", "EXPIRES", "URL"]
    assert lines[1].split()[:3] == ["demo", "live", "2"] and lines[1].endswith(
        "http://demo.localhost:" + f"{live.settings.sites_listen_port}/"
    )
    code, out, _ = drophost(live, capsys, "list", "--json")
    assert [s["slot"] for s in json.loads(out)["slots"]] == ["demo", "my-site"]

    code, out, _ = drophost(live, capsys, "versions", "demo")
    assert out.splitlines()[1].startswith("* 2") and out.splitlines()[2].startswith("  1")

    code, out, _ = drophost(live, capsys, "diff", "demo", "1", "2")
    assert code == 0
    assert out.splitlines()[:3] == ["A new.txt", "M index.html", "(1 files unchanged)"]
    assert "-<h1>two</h1>\n+<h1>three</h1>\n" in out
    assert "--- version 1" in out and '+# DropHost slot "demo": config version 2' in out

    code, out, _ = drophost(live, capsys, "rollback", "demo")
    assert (code, out.strip()) == (0, "demo now serves version 1")
    assert live.get("/d/demo/").text == "<h1>two</h1>"
    code, out, _ = drophost(live, capsys, "rollback", "my-site", "--to", "1", "--json")
    assert json.loads(out) == {"slot": "my-site", "active": 1}

    code, out, _ = drophost(live, capsys, "logs", "demo")
    assert code == 0
    # The source is the folder's name; the switches follow the deployments.
    assert "deployment 3  superseded  my-site" in out and "deployment 2  live  my-site" in out
    assert "rollback version 1" in out and "deploy version 2" in out

    code, out, _ = drophost(live, capsys, "open", "demo", "--print")
    assert (code, out.strip()) == (0, f"http://demo.localhost:{live.settings.sites_listen_port}/")


def test_errors_are_one_line_with_meaningful_exit_codes(
    live: LiveStack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = drophost(live, capsys, "versions", "nope")
    assert (code, err) == (EXIT_NOT_FOUND, "drophost: no such slot 'nope'\n")
    code, out, err = drophost(live, capsys, "logs", "nope", "--json")
    assert code == EXIT_NOT_FOUND and json.loads(out)["error"] == "no such slot 'nope'"
    code, _, err = drophost(live, capsys, "list", DROPHOST_API_TOKEN="wrong")
    assert code == EXIT_AUTH and err.count("\n") == 1 and "token" in err
    code, _, err = drophost(live, capsys, "list", DROPHOST_API_TOKEN="")
    assert code == EXIT_AUTH and "no API token" in err
    code, _, err = drophost(live, capsys, "list", DROPHOST_URL=f"http://127.0.0.1:{free_port()}")
    assert code == EXIT_UNREACHABLE and err.startswith("drophost: cannot reach") and err.count("\n") == 1
    code, _, err = drophost(live, capsys, "deploy", str(tmp_path / "missing"))
    assert code == EXIT_USAGE and "neither a folder nor a file" in err
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    code, out, err = drophost(live, capsys, "deploy", str(bad), "--slot", "demo", "--json")
    assert code == EXIT_REJECTED and json.loads(out)["status"] == 422 and "ZIP" in err
    code, _, err = drophost(live, capsys, "deploy", str(bad), "--slot", "Bad Name")
    assert code == EXIT_REJECTED and "not a valid slot name" in err
    code, _, err = drophost(live, capsys, "list", DROPHOST_URL="ftp://x")
    assert code == EXIT_USAGE


def test_the_config_file_supplies_server_and_token(
    live: LiveStack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "drophost" / "cli.ini"
    config.parent.mkdir()
    config.write_text(f"[drophost]\nserver = {live.base_url}\ntoken = {TOKEN}\n")
    environ: dict[str, Any] = {"XDG_CONFIG_HOME": str(tmp_path), "DROPHOST_URL": "", "DROPHOST_API_TOKEN": ""}
    code, out, _ = drophost(live, capsys, "list", "--json", **environ)
    assert code == 0 and json.loads(out) == {"slots": []}
    # A flag wins over the file.
    code, _, _ = drophost(live, capsys, "list", "--token", "wrong", **environ)
    assert code == EXIT_AUTH


def test_the_installed_command_deploys_through_nginx(live: LiveStack, tmp_path: Path) -> None:
    folder = site(tmp_path, "shell", {"index.html": "from the shell"})
    result = subprocess.run(
        [sys.executable, "-m", "drophost", "deploy", str(folder), "--json"],
        env={"DROPHOST_URL": live.base_url, "DROPHOST_API_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress bar when stderr is not a terminal
    url = json.loads(result.stdout)["path_url"]
    assert httpx.get(url, timeout=10).text == "from the shell"


def test_the_progress_bar_without_a_terminal_prints_a_few_lines() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream)
    for sent in range(0, 1_000_001, 1000):
        bar.update(sent, 1_000_000)
    bar.finish()
    lines = stream.getvalue().splitlines()
    assert [line.split("]")[1].split()[0] for line in lines] == ["0%", "25%", "50%", "75%", "100%"]
    assert lines[-1].endswith("976.6KiB/976.6KiB")


def test_a_folder_goes_up_in_a_few_batches_under_one_bar_of_bytes_and_files(
    live: LiveStack, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {f"pages/p{n}.html": f"<p>page {n}</p>" * 400 for n in range(40)}
    folder = site(tmp_path, "batched", {**files, "index.html": "<h1>home</h1>"})
    (folder / "big.bin").write_bytes(bytes(range(256)) * 3000)  # more than one piece of a batch
    monkeypatch.setattr(digest, "BATCH_BYTES", 128 * 1024)
    batches: list[int] = []
    post_stream = ApiClient.post_stream

    def counted(self: ApiClient, path: str, chunks: Iterable[bytes], size: int) -> Any:
        # The one-request deploy carries the file list and the files the digest cache did not know.
        assert path.endswith("/batch") or path == "/api/uploads/deploy"
        if path.endswith("/batch"):
            batches.append(size)
        return post_stream(self, path, chunks, size)

    def one_by_one(*args: object) -> None:
        raise AssertionError("a file went up in a request of its own")

    monkeypatch.setattr(ApiClient, "post_stream", counted)
    monkeypatch.setattr(ApiClient, "put_file", one_by_one)
    # The digest cache does not remember a file written in the clock tick it was saved in (it could
    # change again unseen): let the clock move past the files, as it has for any folder a person
    # edited before deploying it (here the command runs in this process, at once).
    time.sleep(0.05)
    code, out, err = drophost(live, capsys, "deploy", str(folder), "--progress", "always")
    assert code == 0, err
    assert "(version 1, deployment 1, 42 files)" in out
    # 42 files, 1 MB: a few batches (the large file alone), not 42 requests.
    assert 3 <= len(batches) <= 9 and sum(batches) > 990_000
    lines = err.splitlines()
    assert lines[0].startswith("uploading [......") and lines[0].endswith(", 0/42 files")
    assert lines[-1].startswith("uploading [######") and " 100% " in lines[-1] and lines[-1].endswith(", 42/42 files")
    assert live.get("/d/batched/pages/p7").text == files["pages/p7.html"]
    assert live.get("/d/batched/big.bin").content == bytes(range(256)) * 3000
    # Nothing changed: nothing is sent.
    batches.clear()
    code, _, err = drophost(live, capsys, "deploy", str(folder), "--progress", "always")
    assert code == 0 and batches == [] and err.splitlines()[-1].endswith("0B/0B, 0/0 files")


def test_a_batch_broken_mid_way_is_resumed_with_only_the_files_still_missing(
    live: LiveStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {f"f{n:02d}.txt": f"file {n}\n" * 4000 for n in range(24)}  # 32 to 36 kB each
    folder = site(tmp_path, "resumed", files)
    monkeypatch.setattr(digest, "BATCH_BYTES", 300 * 1024)
    monkeypatch.setattr(digest, "PIECE", 64 * 1024)
    monkeypatch.setattr(digest, "RETRY_PAUSE", 1.0)  # the service has stored what arrived whole
    rounds: list[list[list[str]]] = []
    broken: list[str] = []
    send_batches, batch_body = digest.send_batches, digest.batch_body

    def recorded(client: ApiClient, upload_id: str, batches: list[list[digest.Blob]], tracker: Any) -> Any:
        rounds.append([[blob.digest for blob in batch] for batch in batches])
        return send_batches(client, upload_id, batches, tracker)

    def breaking(batch: list[digest.Blob], tracker: digest.Tracker) -> Iterator[bytes]:
        for number, piece in enumerate(batch_body(batch, tracker)):
            if number == 2 and not broken:
                broken.extend(blob.digest for blob in batch)
                raise ConnectionResetError("the network went away")
            yield piece

    monkeypatch.setattr(digest, "send_batches", recorded)
    monkeypatch.setattr(digest, "batch_body", breaking)
    seen: list[tuple[int, int, int, int]] = []
    client = ApiClient(live.base_url, TOKEN)
    result = digest.deploy_folder(client, folder, slot="resumed", file_progress=lambda *a: seen.append(a))
    assert result["status"] == "live" and result["uploaded_files"] == 24
    assert len(rounds) == 2 and sum(map(len, rounds[0])) == 24
    # Only files of the broken batch went again, and not those it had delivered whole.
    again = [name for batch in rounds[1] for name in batch]
    assert 0 < len(again) < len(broken) and set(again) <= set(broken)
    assert seen[-1] == (seen[-1][1], seen[-1][1], 24, 24)
    for name, text in files.items():
        assert live.get(f"/d/resumed/{name}").text == text


def test_the_progress_bar_on_a_terminal_redraws_one_line_with_bytes_and_files() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    bar = ProgressBar(stream)
    bar.update(0, 2048, 0, 3)
    bar.update(1024, 2048, 1, 3)
    bar.update(1024, 2048, 1, 3)  # the same figures: not drawn again
    bar.update(2048, 2048, 3, 3)
    bar.finish()
    drawn = stream.getvalue()
    assert drawn.endswith("\n") and drawn.count("\n") == 1 and drawn.count("\r") == 3
    frames = [frame.rstrip() for frame in drawn.strip().split("\r") if frame]
    assert frames[0] == "uploading [" + "." * 30 + "]   0% 0B/2.0KiB, 0/3 files"
    assert frames[1] == "uploading [" + "#" * 15 + "." * 15 + "]  50% 1.0KiB/2.0KiB, 1/3 files"
    assert frames[2] == "uploading [" + "#" * 30 + "] 100% 2.0KiB/2.0KiB, 3/3 files"


def test_plan_with_a_server_posts_the_local_deploy_yaml_to_it(
    live: LiveStack, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    declared = tmp_path / "deploy.yaml"
    declared.write_text("sites:\n  - slot: blog\n    repo: hosted:blog\n")
    monkeypatch.delenv("DROPHOST_URL", raising=False)
    monkeypatch.setenv("DROPHOST_API_TOKEN", TOKEN)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["plan", str(declared), "--server", live.base_url]) == 0
    expected = ["+ blog  deploy hosted:blog main", "Plan: 1 to deploy, 0 to change, 0 to take offline."]
    assert capsys.readouterr().out.splitlines() == expected
    # DROPHOST_URL names the server too, and the token may come from cli.ini like every client command.
    monkeypatch.setenv("DROPHOST_URL", live.base_url)
    monkeypatch.delenv("DROPHOST_API_TOKEN")
    ini = tmp_path / ".config" / "drophost" / "cli.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text(f"[drophost]\ntoken = {TOKEN}\n")
    assert main(["plan", str(declared)]) == 0
    assert capsys.readouterr().out.splitlines() == expected
    assert main(["plan", str(declared), "--token", "wrong"]) == EXIT_AUTH
    assert "not valid" in capsys.readouterr().err
    declared.write_text("sites:\n  - slot: Blog!\n")
    assert main(["plan", str(declared), "--server", live.base_url]) == EXIT_REJECTED
    assert "deploy.yaml" in capsys.readouterr().err


def test_one_changed_file_goes_up_with_the_file_list_in_one_request(
    live: LiveStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {f"p{n}.html": f"<p>page {n}</p>" for n in range(12)}
    folder = site(tmp_path, "oneshot", files)
    cache = tmp_path / "digests.json"
    time.sleep(0.05)  # past the file system's clock tick: the cache remembers only files older than that
    client = ApiClient(live.base_url, TOKEN)
    first = digest.deploy_folder(client, folder, slot="oneshot", hash_cache=cache)
    assert first["uploaded_files"] == 12
    calls: list[tuple[str, str]] = []
    request, post_stream = ApiClient.request, ApiClient.post_stream

    def counted_request(self: ApiClient, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        calls.append((method, path))
        return request(self, method, path, *args, **kwargs)

    def counted_stream(self: ApiClient, path: str, chunks: Iterable[bytes], size: int) -> Any:
        calls.append(("POST", path))
        return post_stream(self, path, chunks, size)

    monkeypatch.setattr(ApiClient, "request", counted_request)
    monkeypatch.setattr(ApiClient, "post_stream", counted_stream)
    (folder / "p3.html").write_text("<p>changed</p>")
    result = digest.deploy_folder(client, folder, slot="oneshot", hash_cache=cache)
    assert calls == [("POST", "/api/uploads/deploy")]
    assert result["status"] == "live" and result["uploaded_files"] == 1
    assert live.get("/d/oneshot/p3").text == "<p>changed</p>"
    assert live.get("/d/oneshot/p4").text == files["p4.html"]


def test_a_wrong_guess_sends_what_the_server_lacks_then_finalizes(
    live: LiveStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cache remembers every file (hashed before, as for a deploy to another server), but this
    # server has none of them: the changed file goes with the list, the others in a batch.
    files = {f"w{n}.html": f"<p>wrong guess {n}</p>" for n in range(8)}
    folder = site(tmp_path, "wrongguess", files)
    cache = tmp_path / "digests.json"
    time.sleep(0.05)  # past the file system's clock tick: the cache remembers only files older than that
    hashcache.hash_with_cache(digest.scan_folder(folder), cache, file_digest)
    (folder / "w0.html").write_text("<p>changed</p>")
    paths: list[str] = []
    post_stream = ApiClient.post_stream

    def counted_stream(self: ApiClient, path: str, chunks: Iterable[bytes], size: int) -> Any:
        paths.append(path)
        return post_stream(self, path, chunks, size)

    monkeypatch.setattr(ApiClient, "post_stream", counted_stream)
    client = ApiClient(live.base_url, TOKEN)
    result = digest.deploy_folder(client, folder, slot="wrongguess", hash_cache=cache)
    assert paths[0] == "/api/uploads/deploy" and paths[1:] and all(p.endswith("/batch") for p in paths[1:])
    assert result["status"] == "live" and result["uploaded_files"] == 8
    assert live.get("/d/wrongguess/w0").text == "<p>changed</p>"
    assert live.get("/d/wrongguess/w5").text == files["w5.html"]
