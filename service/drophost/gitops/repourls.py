"""Repository URLs, branch names and repository paths: allow-lists checked before git sees them (pure)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import urlsplit

from drophost.errors import ValidationError
from drophost.text import show

HOSTED_PREFIX = "hosted:"
HOSTED_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")
_SCHEMES = {"https": 443, "http": 80, "ssh": 22}
_HOST = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
)
_IPV6 = re.compile(r"^\[[0-9A-Fa-f:.]+\]$")
_URL_PATH = re.compile(r"^/[A-Za-z0-9._~/%+@-]*$")
_SCP_LIKE = re.compile(r"^(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>[A-Za-z0-9._~/+-]+)$")
_BRANCH_CHARS = re.compile(r"^[A-Za-z0-9._/+-]+$")
MAX_URL = 512
MAX_BRANCH = 200


@dataclass(frozen=True)
class RepoUrl:
    """A checked repository location: a remote URL git may fetch, or a DropHost-hosted name."""

    text: str
    hosted_name: str | None = None

    @property
    def is_hosted(self) -> bool:
        return self.hosted_name is not None

    @property
    def shown(self) -> str:
        return strip_credentials(self.text)


def parse_repo_url(text: str) -> RepoUrl:
    """Accept https://, http://, ssh://, user@host:path and hosted:NAME; refuse everything else."""
    if not isinstance(text, str) or not text:
        raise ValidationError("repo must be a repository URL", field="repo")
    shown = _show(text)
    if len(text) > MAX_URL or not text.isascii() or any(ord(ch) < 33 or ord(ch) == 127 for ch in text):
        raise ValidationError(f"repo {shown} is not a URL DropHost will fetch from", field="repo")
    if text.startswith("-"):
        raise ValidationError(f"repo {shown} starts with '-'", field="repo")
    if text.startswith(HOSTED_PREFIX):
        name = text[len(HOSTED_PREFIX) :]
        if not HOSTED_NAME.fullmatch(name) or ".." in name or name.endswith(".git"):
            raise ValidationError(
                f'repo {shown}: hosted repository names use lowercase letters, digits, ".", "_" and "-"',
                field="repo",
            )
        return RepoUrl(text=text, hosted_name=name)
    if "://" not in text:
        match = _SCP_LIKE.fullmatch(text)
        if match and _HOST.fullmatch(match["host"]) and not match["path"].startswith("-"):
            return RepoUrl(text=text)
        raise ValidationError(
            f"repo {shown} is not allowed: use an https://, http:// or ssh:// URL, or hosted:NAME", field="repo"
        )
    scheme = text.split("://", 1)[0].lower()
    if scheme not in _SCHEMES:
        raise ValidationError(
            f"repo {shown} uses the scheme {_show(scheme)}; only https, http, ssh and hosted: are allowed",
            field="repo",
        )
    parts = urlsplit(text)
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        raise ValidationError(f"repo {shown} has an invalid port", field="repo") from None
    if parts.password is not None or (scheme in ("http", "https") and parts.username is not None):
        raise ValidationError(
            f"repo {shown} carries credentials, which DropHost never keeps in a URL: give a private https "
            "repository a token through token_env in deploy.yaml, or use an ssh deploy key (DROPHOST_GIT_SSH_KEY)",
            field="repo",
        )
    if _decodes_to_control(parts.path):
        raise ValidationError(f"repo {shown} has an encoded control character in its path", field="repo")
    netloc_host = parts.netloc.rpartition("@")[2]
    bracketed = netloc_host.startswith("[")
    if (
        not host
        or not (_HOST.fullmatch(host) or (bracketed and _IPV6.fullmatch(f"[{host}]")))
        or not _URL_PATH.fullmatch(parts.path or "/")
        or "/../" in f"{parts.path}/"
        or parts.query
        or parts.fragment
        or (port is not None and not 0 < port < 65536)
    ):
        raise ValidationError(f"repo {shown} is not a URL DropHost will fetch from", field="repo")
    return RepoUrl(text=text)


def _decodes_to_control(path: str) -> bool:
    """Whether a percent-escape in the path stands for a control byte (%0a, %0d, %00, ...)."""
    return any(int(escape, 16) < 0x20 or int(escape, 16) == 0x7F for escape in re.findall(r"%([0-9A-Fa-f]{2})", path))


# scheme://[user@]host[:port][/path], wildcards allowed (patterns are split with the same expression).
_URL_PARTS = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?:(?P<user>[^@/]*)@)?"
    r"(?P<host>\[[^\]]*\]|[^:/]*)(?::(?P<port>[^/]*))?(?P<path>/.*)?$"
)


def url_parts(text: str) -> tuple[str, str, str, str, str]:
    """(scheme, user, host, port, path) of a URL or scp-like address, normalised for matching (pure):
    lowercase scheme and host, the scheme's default port dropped, no repeated or trailing "/" or ".git"."""
    if "://" not in text:
        match = _SCP_LIKE.fullmatch(text)
        if not match:
            return ("", "", text.lower(), "", "")
        scheme, user, host, port, path = "ssh", match["user"] or "", match["host"], "", "/" + match["path"]
    else:
        found = _URL_PARTS.fullmatch(text)
        if not found:
            return ("", "", text.lower(), "", "")
        scheme, user, host = found["scheme"].lower(), found["user"] or "", found["host"]
        port, path = found["port"] or "", found["path"] or ""
    if port and str(_SCHEMES.get(scheme)) == port:
        port = ""
    path = re.sub(r"/+", "/", path).rstrip("/")
    path = path[:-4] if path.endswith(".git") else path
    return (scheme, user, host.lower(), port, path)


def source_pattern(pattern: str) -> re.Pattern[str]:
    """A sources.allow entry as an expression over the whole URL: the scheme it names and only that,
    the user it names or none, then host, port and path ("*" within one part, "**" across path parts)."""
    scheme, user, host, port, path = url_parts(pattern)
    part = r"[^/@:]*"
    regex = re.escape(scheme) + "://"
    regex += (re.escape(user).replace(r"\*", part) + "@") if user else ""
    regex += re.escape(host).replace(r"\*", part)
    regex += (":" + re.escape(port).replace(r"\*", "[0-9]*")) if port else ""
    regex += "".join(
        {"**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token, re.escape(token))
        for token in re.split(r"(\*\*|\*|\?)", path)
    )
    return re.compile(regex)


def source_key(text: str) -> str:
    """The whole URL as source patterns see it (url_parts joined) (pure)."""
    scheme, user, host, port, path = url_parts(text)
    return f"{scheme}://{user + '@' if user else ''}{host}{':' + port if port else ''}{path}"


def strip_credentials(text: str) -> str:
    """The URL without user:password@ (for display and matching)."""
    if "://" not in text:
        return text.split("@", 1)[1] if "@" in text.split(":", 1)[0] else text
    scheme, rest = text.split("://", 1)
    authority, slash, path = rest.partition("/")
    return f"{scheme}://{authority.rpartition('@')[2]}{slash}{path}"


def repo_key(text: str) -> str:
    """A comparison key: host (lowercase, default port dropped) and path without .git, ignoring scheme and user."""
    if text.startswith(HOSTED_PREFIX):
        return text.lower()
    if "://" not in text:
        match = _SCP_LIKE.fullmatch(text)
        if not match:
            return text.lower()
        host, port, path = match["host"], None, "/" + match["path"]
        scheme = "ssh"
    else:
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        host, path = parts.hostname or "", parts.path
        try:
            port = parts.port
        except ValueError:
            port = None
    if port is not None and _SCHEMES.get(scheme) == port:
        port = None
    path = re.sub(r"/+", "/", path).rstrip("/")
    if path.endswith(".git"):
        path = path[:-4]
    return f"{host.lower()}{f':{port}' if port else ''}{path}".lower()


def check_branch(name: str, *, field: str = "branch") -> str:
    """A branch name git would accept (the subset DropHost allows); `git check-ref-format` runs too."""
    shown = _show(name) if isinstance(name, str) else repr(name)
    if not isinstance(name, str) or not name:
        raise ValidationError(f"{field} must be a branch name", field=field)
    if name.startswith("refs/heads/"):
        name = name[len("refs/heads/") :]
    if (
        len(name) > MAX_BRANCH
        or not _BRANCH_CHARS.fullmatch(name)
        or name.startswith(("-", "/", "."))
        or name.endswith(("/", ".", ".lock"))
        or ".." in name
        or "//" in name
        or "/." in name
        or name == "HEAD"
    ):
        raise ValidationError(f"{field} {shown} is not a valid branch name", field=field)
    return name


def check_repo_path(path: str | None, *, field: str = "path") -> str:
    """A subdirectory inside the repository ("", "." and "/" are the root); it must not escape it,
    start at "/" or pass through a dot folder (.git, .github, ...: never published, so never a site)."""
    if path is None or path in ("", ".", "/"):
        return ""
    shown = _show(path) if isinstance(path, str) else repr(path)
    if not isinstance(path, str) or len(path) > 512 or "\\" in path or path.startswith("-"):
        raise ValidationError(f"{field} {shown} is not a folder inside the repository", field=field)
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in path):
        raise ValidationError(f"{field} {shown} contains control characters", field=field)
    if path.startswith("/"):
        raise ValidationError(
            f'{field} {shown} is absolute: give a folder relative to the repository root, such as "public"',
            field=field,
        )
    parts = path.rstrip("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValidationError(f"{field} {shown} escapes the repository or is not a plain relative folder", field=field)
    if any(part.startswith(".") for part in parts):
        raise ValidationError(f"{field} {shown} names a dot folder, which is never published", field=field)
    return "/".join(parts)


def _show(text: str) -> str:
    return show(strip_credentials(text) if "@" in text else text, limit=100)
