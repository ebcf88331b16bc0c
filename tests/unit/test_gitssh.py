"""The ssh command line git uses, and ssh's failures as sentences users can act on."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from drophost.errors import CommandError, SettingsError
from drophost.gitops.mirror import GitSource, _fetch_reason
from drophost.gitops.repourls import parse_repo_url
from drophost.gitops.ssh import ssh_command
from drophost.settings import Settings


def options(command: str) -> list[str]:
    argv = shlex.split(command)
    return [argv[i + 1] for i, word in enumerate(argv) if word == "-o"]


def test_without_settings_ssh_reads_only_the_data_dirs_known_hosts_and_offers_no_key(tmp_path: Path) -> None:
    command = ssh_command(Settings(data_dir=tmp_path))
    assert shlex.split(command)[:3] == ["ssh", "-F", "/dev/null"]
    chosen = options(command)
    assert f"UserKnownHostsFile={tmp_path.resolve()}/git/known_hosts" in chosen
    for option in ("StrictHostKeyChecking=yes", "BatchMode=yes", "IdentityAgent=none", "IdentityFile=none"):
        assert option in chosen
    assert "-i" not in shlex.split(command)


def test_the_deploy_key_and_known_hosts_settings_are_used(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "DROPHOST_DATA_DIR": str(tmp_path),
            "DROPHOST_GIT_SSH_KEY": "/etc/drophost/deploy_key",
            "DROPHOST_GIT_SSH_KNOWN_HOSTS": "/etc/drophost/known_hosts",
        }
    )
    argv = shlex.split(GitSource(settings).env()["GIT_SSH_COMMAND"])
    assert argv[argv.index("-i") + 1] == "/etc/drophost/deploy_key"
    assert "UserKnownHostsFile=/etc/drophost/known_hosts" in options(" ".join(argv))
    assert "IdentityFile=none" not in argv


@pytest.mark.parametrize(
    "path",
    ["relative/key", "/keys/deploy key", "/keys/$(touch x)", "/keys/a;b", "/keys/`id`", "/keys/../etc/x", "/k/'q'"],
)
@pytest.mark.parametrize("field", ["git_ssh_key", "git_ssh_known_hosts"])
def test_paths_that_could_mean_more_in_a_shell_stop_the_service(tmp_path: Path, field: str, path: str) -> None:
    settings = Settings(data_dir=tmp_path, **{field: path})  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match=f"DROPHOST_{field.upper()} must be an absolute path"):
        GitSource(settings)


SSH_FAILURES = [
    (
        "No ED25519 host key is known for [git.example.lan]:2222 and you have requested strict checking.\n"
        "Host key verification failed.\nfatal: Could not read from remote repository.",
        "the host key of the server of ssh://git.example.lan:2222/team/docs.git is not known: "
        "add it to DropHost's known_hosts file (DROPHOST_GIT_SSH_KNOWN_HOSTS, see ssh-keyscan)",
    ),
    (
        "@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @\nHost key verification failed.",
        "the host key of the server of ssh://git.example.lan:2222/team/docs.git has changed since it was added "
        "to DropHost's known_hosts file; if the change is expected, replace its line there",
    ),
    (
        '@ WARNING: UNPROTECTED PRIVATE KEY FILE! @\nLoad key "/etc/k": bad permissions\n'
        "git@git.example.lan: Permission denied (publickey).",
        "the deploy key (DROPHOST_GIT_SSH_KEY) can be read by other users, so ssh will not use it",
    ),
    (
        "Warning: Identity file /etc/k not accessible: No such file or directory.\n"
        "git@git.example.lan: Permission denied (publickey).",
        "the deploy key (DROPHOST_GIT_SSH_KEY) cannot be read",
    ),
    (
        "git@git.example.lan: Permission denied (publickey).\nfatal: Could not read from remote repository.",
        "ssh://git.example.lan:2222/team/docs.git needs credentials DropHost does not have",
    ),
    (
        "ssh: connect to host git.example.lan port 2222: Connection refused",
        "the server of ssh://git.example.lan:2222/team/docs.git could not be reached",
    ),
]


@pytest.mark.parametrize(("output", "reason"), SSH_FAILURES)
def test_ssh_failures_become_sentences_without_paths_or_ssh_output(output: str, reason: str) -> None:
    repo = parse_repo_url("ssh://git@git.example.lan:2222/team/docs.git")
    error = CommandError("git exited with status 128", returncode=128, output=output)
    assert _fetch_reason(error, repo, "main") == reason
