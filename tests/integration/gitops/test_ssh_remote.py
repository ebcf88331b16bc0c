"""ssh:// remotes against a real sshd on a loopback port, with a deploy key and a known_hosts file."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from drophost.settings import Settings
from tests.harness.auth import AUTH
from tests.harness.git import Repo
from tests.harness.ports import free_port
from tests.harness.stacks import GitopsFactory, Stack
from tests.harness.waiting import wait_for_deployment, wait_until

SSHD = "/usr/sbin/sshd"
SECRET = "webhook-secret-for-ssh-tests"
ENV = {"HOOK_SECRET": SECRET}


def run(*argv: str) -> str:
    result = subprocess.run(list(argv), capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def keygen(path: Path) -> Path:
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path))
    return path


class SshServer:
    """sshd on 127.0.0.1 with its own host key; one client key may only run git-shell."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.client_key = keygen(root / "deploy_key")
        self.host_key = keygen(root / "host_key")
        public = (root / "deploy_key.pub").read_text().strip()
        # The usual forced command of a git server: git-shell runs git-upload-pack and nothing else.
        (root / "authorized_keys").write_text(f'restrict,command="git-shell -c \\"$SSH_ORIGINAL_COMMAND\\"" {public}\n')
        config = root / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\n"
            f"AuthorizedKeysFile {root}/authorized_keys\nPidFile {root}/sshd.pid\n"
            # The key files live in /tmp, which StrictModes would refuse; no PAM in a test.
            "UsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\nAllowUsers root\nLogLevel VERBOSE\n"
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
        self.log = (root / "sshd.log").open("wb")
        self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=self.log, stderr=self.log)
        assert wait_until(self.listening), (root / "sshd.log").read_text()

    def listening(self) -> bool:
        assert self.process.poll() is None, (self.root / "sshd.log").read_text()
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def url(self, name: str) -> str:
        return f"ssh://root@127.0.0.1:{self.port}{self.root}/{name}.git"

    def repo(self, name: str) -> Repo:
        return Repo(self.root, name)

    def trust(self, known_hosts: Path) -> None:
        """What the README tells an admin to do: ssh-keyscan the server into DropHost's known_hosts."""
        known_hosts.parent.mkdir(parents=True, exist_ok=True)
        known_hosts.write_text(run("ssh-keyscan", "-t", "ed25519", "-p", str(self.port), "127.0.0.1"))

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


@contextmanager
def running_sshd(port: int | None = None) -> Iterator[SshServer]:
    """An SshServer in a folder of its own (a free port unless one is given), removed afterwards."""
    if not os.path.exists(SSHD) or shutil.which("ssh") is None:
        pytest.fail("sshd or ssh is not installed: run ./install.sh --dev (openssh-server, openssh-client)")
    root = Path(tempfile.mkdtemp(prefix="dh-ssh-"))
    server = SshServer(root, port)
    try:
        yield server
    finally:
        server.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def ssh_server() -> Iterator[SshServer]:
    with running_sshd() as server:
        yield server


def declared(url: str) -> str:
    return f"sites:\n  - slot: docs\n    repo: {url}\n    branch: main\n    webhook_secret_env: HOOK_SECRET\n"


def deliver_push(stack: Stack, url: str) -> dict[str, Any]:
    """A signed push webhook for `url`; the deployment it queued, once it has ended."""
    body = json.dumps({"repo": url, "branch": "main"}).encode()
    headers = {"X-Signature": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()}
    answer = stack.client.post("/api/webhooks/generic", content=body, headers=headers)
    assert answer.status_code == 202, answer.text
    return wait_for_deployment(stack, answer.json()["queued"][0])


def test_an_ssh_remote_deploys_with_the_deploy_key_and_known_hosts(
    ssh_server: SshServer, gitops_stack: GitopsFactory, settings: Settings
) -> None:
    repo = ssh_server.repo("site")
    first = repo.commit({"public/index.html": "<h1>over ssh</h1>"})
    ssh_server.trust(settings.git_dir / "known_hosts")  # the default DROPHOST_GIT_SSH_KNOWN_HOSTS
    url = ssh_server.url("site")
    stack = gitops_stack(declared(url), ENV, git_ssh_key=str(ssh_server.client_key))
    row = wait_for_deployment(stack, 1)
    assert row["status"] == "live", row
    assert row["commit_sha"] == first and row["repo"] == url.replace("root@", "")  # the user is not recorded
    assert stack.get("/d/docs/public/").text == "<h1>over ssh</h1>"
    second = repo.commit({"public/index.html": "<h1>pushed</h1>"})
    row = deliver_push(stack, url)
    assert row["status"] == "live" and row["trigger"] == "webhook" and row["commit_sha"] == second, row
    assert stack.get("/d/docs/public/").text == "<h1>pushed</h1>"


def test_an_unknown_host_key_fails_clearly_and_nothing_live_changes(
    ssh_server: SshServer, gitops_stack: GitopsFactory, settings: Settings
) -> None:
    repo = ssh_server.repo("site")
    repo.commit({"index.html": "first"})
    known_hosts = settings.git_dir / "known_hosts"
    ssh_server.trust(known_hosts)
    url = ssh_server.url("site")
    stack = gitops_stack(declared(url), ENV, git_ssh_key=str(ssh_server.client_key))
    assert wait_for_deployment(stack, 1)["status"] == "live"
    known_hosts.write_text("")  # the host was never added (or was removed)
    repo.commit({"index.html": "second"})
    row = deliver_push(stack, url)
    shown = f"ssh://127.0.0.1:{ssh_server.port}{ssh_server.root}/site.git"
    assert row["status"] == "failed"
    assert row["error"] == (
        f"the host key of the server of {shown} is not known: add it to DropHost's known_hosts file "
        "(DROPHOST_GIT_SSH_KNOWN_HOSTS, see ssh-keyscan)"
    )
    assert stack.get("/d/docs/").text == "first"
    assert known_hosts.read_text() == ""  # ssh never adds a host key by itself
    listing = stack.client.get("/api/deployments", headers=AUTH).text
    assert str(settings.data_dir) not in listing and "deploy_key" not in listing
    assert "verification failed" not in listing.lower()


def changed_host_key(server: SshServer, known_hosts: Path) -> None:
    impostor = keygen(server.root / "other_host_key").with_suffix(".pub").read_text().split()
    known_hosts.write_text(f"[127.0.0.1]:{server.port} {impostor[0]} {impostor[1]}\n")


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("changed host key", "has changed since it was added to DropHost's known_hosts file"),
        ("no deploy key", "site.git needs credentials DropHost does not have"),
    ],
)
def test_a_changed_host_key_or_no_deploy_key_fails_with_its_reason(
    ssh_server: SshServer, gitops_stack: GitopsFactory, settings: Settings, case: str, message: str
) -> None:
    ssh_server.repo("site").commit({"index.html": "x"})
    known_hosts = settings.git_dir / "known_hosts"
    ssh_server.trust(known_hosts)
    key = {"git_ssh_key": str(ssh_server.client_key)}
    if case == "changed host key":
        changed_host_key(ssh_server, known_hosts)
    else:
        key = {}  # without DROPHOST_GIT_SSH_KEY no key at all is offered (never ~/.ssh/id_*)
    stack = gitops_stack(declared(ssh_server.url("site")), ENV, **key)
    row = wait_for_deployment(stack, 1)
    assert row["status"] == "failed" and message in row["error"], row
    assert stack.get("/d/docs/").status_code == 404


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_the_scp_like_form_user_at_host_colon_path_deploys(gitops_stack: GitopsFactory, settings: Settings) -> None:
    # `root@host:/path` has no place for a port, so this sshd listens on 22 (on 127.0.0.1 only).
    if not port_is_free(22):
        pytest.skip("127.0.0.1:22 is taken, and the scp-like form cannot name another port")
    with running_sshd(port=22) as server:
        repo = server.repo("site")
        first = repo.commit({"index.html": "<h1>scp-like</h1>"})
        server.trust(settings.git_dir / "known_hosts")
        url = f"root@127.0.0.1:{server.root}/site.git"
        stack = gitops_stack(declared(url), ENV, git_ssh_key=str(server.client_key))
        row = wait_for_deployment(stack, 1)
        assert row["status"] == "live" and row["commit_sha"] == first, row
        assert stack.get("/d/docs/").text == "<h1>scp-like</h1>"
        second = repo.commit({"index.html": "<h1>again</h1>"})
        row = deliver_push(stack, url)
        assert row["status"] == "live" and row["commit_sha"] == second, row
        assert stack.get("/d/docs/").text == "<h1>again</h1>"
