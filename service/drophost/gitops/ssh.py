"""How git reaches ssh remotes: one fixed ssh command line, and ssh's failures as sentences (pure).

git runs GIT_SSH_COMMAND through `sh -c`, so the two paths it holds are allow-listed here, never
quoted: a path outside [A-Za-z0-9/._-] is a settings error, not something to escape.
"""

from __future__ import annotations

from drophost.errors import SettingsError
from drophost.paths import is_plain_path
from drophost.settings import Settings

# Only the deploy key and the known_hosts file DropHost is told about: no ~/.ssh/config or
# /etc/ssh/ssh_config (-F /dev/null), no agent, no host key accepted or rewritten, no prompts, no
# proxies or shared connections a config elsewhere could have set up.
_OPTIONS = (
    "BatchMode=yes",
    "ConnectTimeout=20",
    "StrictHostKeyChecking=yes",
    "GlobalKnownHostsFile=/dev/null",
    "UpdateHostKeys=no",
    "IdentitiesOnly=yes",
    "IdentityAgent=none",
    "PasswordAuthentication=no",
    "KbdInteractiveAuthentication=no",
    "ProxyCommand=none",
    "ProxyJump=none",
    "ControlMaster=no",
    "ControlPath=none",
    "ClearAllForwardings=yes",
    "PermitLocalCommand=no",
)


def ssh_path(path: str, variable: str) -> str:
    """An absolute path that can stand in a shell command line as it is."""
    if not is_plain_path(path) or "/./" in f"{path}/":
        raise SettingsError(f"{variable} must be an absolute path of letters, digits and / . _ - (got {path!r})")
    return path


def ssh_command(settings: Settings) -> str:
    """GIT_SSH_COMMAND: ssh with the deploy key and known_hosts from the settings, nothing else."""
    known_hosts = ssh_path(str(settings.ssh_known_hosts_file), "DROPHOST_GIT_SSH_KNOWN_HOSTS")
    argv = ["ssh", "-F", "/dev/null"]
    for option in (*_OPTIONS, f"UserKnownHostsFile={known_hosts}"):
        argv += ["-o", option]
    if settings.git_ssh_key:
        argv += ["-i", ssh_path(settings.git_ssh_key, "DROPHOST_GIT_SSH_KEY")]
    else:
        argv += ["-o", "IdentityFile=none"]  # not ~/.ssh/id_*: without a deploy key, no key at all
    return " ".join(argv)


def ssh_reason(output: str, where: str) -> str | None:
    """A sentence for a failure ssh itself reported (output lowercased), or None if it is not one."""
    if "remote host identification has changed" in output:
        return (
            f"the host key of the server of {where} has changed since it was added to DropHost's "
            "known_hosts file; if the change is expected, replace its line there"
        )
    if "host key is known for" in output or "host key verification failed" in output:
        return (
            f"the host key of the server of {where} is not known: add it to DropHost's known_hosts file "
            "(DROPHOST_GIT_SSH_KNOWN_HOSTS, see ssh-keyscan)"
        )
    if "unprotected private key file" in output or "bad permissions" in output:
        return "the deploy key (DROPHOST_GIT_SSH_KEY) can be read by other users, so ssh will not use it"
    if "identity file" in output and "not accessible" in output:
        return "the deploy key (DROPHOST_GIT_SSH_KEY) cannot be read"
    return None
