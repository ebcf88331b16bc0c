"""All of DropHost's settings in one frozen object, built once and passed in."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from drophost.errors import SettingsError

ENV_PREFIX = "DROPHOST_"

MiB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """Everything DropHost can be told; every limit has a documented default."""

    data_dir: Path
    database_url: str = ""
    api_token: str = ""
    # Where nginx listens and where the service can reach it (for "is it live yet" checks).
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""
    # Sites get their own origin so a tenant's JavaScript cannot act on the dashboard: nginx serves
    # /d/<slot>/ on sites_port (0: the main port + 1), or, with sites_host set and sites_port equal
    # to port, on the same port under that server_name. sites_url overrides the advertised address.
    sites_port: int = 0
    sites_host: str = ""
    sites_url: str = ""
    # Every slot also answers at <slot>.<sites_domain> on the sites port, at its own origin, and every
    # deployment at <id>--<slot>.<sites_domain>; browsers resolve *.localhost to the loopback.
    sites_domain: str = "localhost"
    # The service listens here behind nginx (a unix socket path, or empty for host/port).
    service_socket: str = ""
    nginx_binary: str = "nginx"
    # "local": nginx is a child or a process on this machine (signals, /proc); "watcher": nginx runs in
    # another container and a watcher there runs nginx -t and reloads on request (see nginx/watcher.sh).
    nginx_control: str = "local"
    # host:port where the service reaches nginx to confirm a version is served (default host:port).
    nginx_probe: str = ""
    # When DropHost runs as root, nginx's workers run as this user (the master only reads config).
    nginx_worker_user: str = "nobody"
    # Releases are checked for links once, when sealed (releases.py). On: nginx also refuses a link
    # inside a release at every request (an open per folder of the path, about 1/6 of throughput),
    # for data directories that something other than DropHost writes into.
    nginx_symlink_check: bool = False
    # When empty the packaged templates are used; tests point this elsewhere.
    nginx_template_dir: str = ""
    # How long to wait for nginx to serve a freshly activated version.
    reload_confirm_timeout: float = 5.0
    # Upload and archive limits.
    max_upload_bytes: int = 512 * MiB
    max_unpacked_bytes: int = 1024 * MiB
    max_entries: int = 20_000
    max_compression_ratio: int = 200
    max_path_length: int = 1024
    max_name_length: int = 255
    max_path_depth: int = 32
    default_ttl_seconds: int = 0
    max_ttl_seconds: int = 365 * 24 * 3600
    expiry_interval: float = 5.0
    # Site rules (_redirects, _headers, deploy.yaml/API `site`): at most this many per site, and
    # these lengths (a rule file's line, a header value), in characters.
    max_redirect_rules: int = 2000
    max_header_rules: int = 100
    max_rule_line: int = 2000
    max_header_value: int = 1024
    # Retention: the newest N config versions of each slot keep their files (active and pinned always).
    keep_versions: int = 20
    gc_interval: float = 3600.0
    # nginx's access log is read into PostgreSQL this often; rows older than the retention are
    # deleted (0 keeps them), and the file is rotated (renamed, nginx reopens it) past this size.
    access_log_interval: float = 5.0
    access_log_retention_days: int = 90
    access_log_rotate_bytes: int = 64 * MiB
    # How long a dashboard sign-in lasts (seconds); changing the API token ends every session.
    session_max_age: int = 12 * 3600
    # Sign-in (dashboard, git's basic auth): past this many failures within the window, from one
    # client address or for one user name, the next try is answered 429 until the window has passed.
    signin_max_failures: int = 10
    signin_window: float = 300.0
    db_pool_size: int = 8
    subprocess_timeout: float = 60.0
    # GitOps: the deploy.yaml to apply (DROPHOST_CONFIG), and git's limits.
    config: str = ""
    # Seconds between checks of every declared branch (0: off); deploy.yaml's poll_interval wins.
    poll_interval: float = 60.0
    webhook_max_bytes: int = 1 * MiB
    git_binary: str = "git"
    git_timeout: float = 300.0
    # A fetched repository (its bare mirror) larger than this is refused and removed.
    max_repository_bytes: int = 2048 * MiB
    # ssh remotes: a private deploy key (empty: none, so only public repositories answer), and the
    # known_hosts file of the servers DropHost trusts (empty: <data>/git/known_hosts). Nothing else
    # of ssh's is read: no agent, no ~/.ssh, no host key accepted on first sight.
    git_ssh_key: str = ""
    git_ssh_known_hosts: str = ""
    # HTTPS: a certificate (with its chain) and its key, both PEM, read by nginx's master at start.
    # Set together; then every port speaks only TLS and a plain-HTTP request is redirected.
    tls_cert: str = ""
    tls_key: str = ""
    # Builds (deploy.yaml build:): "bwrap" runs each in a bubblewrap sandbox and refuses to build
    # where one cannot be made; "none" runs them unconfined, trusting everyone who can push.
    build_sandbox: str = "bwrap"
    build_bwrap: str = "bwrap"
    # Builds run as this user when DropHost runs as root (created when missing).
    build_user: str = "drophost-build"
    build_concurrency: int = 1
    # A build's wall time: deploy.yaml's timeout (default 10 minutes), never more than this.
    build_max_timeout: int = 3600
    build_memory_bytes: int = 8192 * MiB
    build_processes: int = 512
    build_open_files: int = 4096
    build_file_bytes: int = 1024 * MiB
    # The log kept per deployment (its start and end when longer).
    build_log_bytes: int = 1 * MiB
    # Folders besides /usr bound read-only into the sandbox, their bin/ first on PATH
    # (":"-separated; e.g. a virtualenv holding mkdocs).
    build_tools: str = ""
    # The outbox (commit statuses, notifications): attempts per call before it is marked failed, the
    # first retry's delay in seconds (doubled at each attempt, at most an hour), and each call's timeout.
    outbox_attempts: int = 8
    outbox_backoff: float = 5.0
    outbox_timeout: float = 10.0

    def __post_init__(self) -> None:
        # One canonical spelling: release paths are stored and compared as text, and the links in
        # live/ are checked against them, so the data directory is resolved once here.
        object.__setattr__(self, "data_dir", Path(self.data_dir).resolve())

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert or self.tls_key)

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def tls_dir(self) -> Path:
        """Where `drophost tls init` keeps the local authority and the server certificate."""
        return self.data_dir / "tls"

    @property
    def releases_dir(self) -> Path:
        return self.data_dir / "releases"

    @property
    def nginx_dir(self) -> Path:
        return self.data_dir / "nginx"

    @property
    def builds_dir(self) -> Path:
        """Each build's copy of its repository (work/), the slots' caches (cache/), the logs (logs/)."""
        return self.data_dir / "builds"

    @property
    def git_dir(self) -> Path:
        return self.data_dir / "git"

    @property
    def api_token_file(self) -> Path:
        """Where `drophost up` keeps the API token it made, for commands run without DROPHOST_API_TOKEN."""
        return self.data_dir / "api-token"

    @property
    def local_api_address(self) -> str:
        """host:port where a process on this machine reaches the API: nginx's main port on the loopback."""
        return f"127.0.0.1:{self.port}"

    @property
    def ssh_known_hosts_file(self) -> Path:
        return Path(self.git_ssh_known_hosts) if self.git_ssh_known_hosts else self.git_dir / "known_hosts"

    @property
    def sites_listen_port(self) -> int:
        return self.sites_port or self.port + 1

    @property
    def site_base_url(self) -> str:
        """Where browsers reach the sites (the `url` fields of the API)."""
        if self.sites_url:
            return self.sites_url.rstrip("/")
        host = self.sites_host or urlsplit(self.public_url).hostname or self.host
        if ":" in host:
            host = f"[{host}]"
        port = self.sites_listen_port
        default_port = 443 if self.tls else 80
        return f"{self.scheme}://{host}" if port == default_port else f"{self.scheme}://{host}:{port}"

    def host_url(self, label: str) -> str:
        """Where browsers reach <label>.<sites_domain>: a slot's or a deployment's own origin."""
        return f"{self.sites_scheme_and_port[0]}://{label}.{self.sites_domain}{self.sites_scheme_and_port[1]}"

    @property
    def sites_scheme_and_port(self) -> tuple[str, str]:
        """The sites' scheme, and ":<port>" unless it is the scheme's default (from sites_url if set)."""
        if self.sites_url:
            base = urlsplit(self.sites_url)
            return base.scheme, f":{base.port}" if base.port else ""
        port = self.sites_listen_port
        return self.scheme, "" if port == (443 if self.tls else 80) else f":{port}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: object) -> Settings:
        """Build settings from DROPHOST_* variables (plus DATABASE_URL); overrides win."""
        values: dict[str, object] = {}
        for spec in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + spec.name.upper())
            if raw is None or raw == "":
                continue
            values[spec.name] = _convert(spec, raw)
        if "database_url" not in values and environ.get("DATABASE_URL"):
            values["database_url"] = environ["DATABASE_URL"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "data_dir" not in values:
            values["data_dir"] = default_data_dir(environ)
        values["data_dir"] = Path(str(values["data_dir"])).absolute()
        return cls(**values)  # type: ignore[arg-type]


def default_data_dir(environ: Mapping[str, str]) -> Path:
    """Where `drophost up` keeps its state when not told otherwise."""
    if environ.get("XDG_DATA_HOME"):
        return Path(environ["XDG_DATA_HOME"]) / "drophost"
    home = environ.get("HOME", "")
    if not home or home == "/root":
        # root's home is private; the unprivileged children need to reach the data.
        return Path("/var/lib/drophost")
    return Path(home) / ".local" / "share" / "drophost"


def _convert(spec: dataclasses.Field[object], raw: str) -> object:
    kind = spec.type if isinstance(spec.type, str) else getattr(spec.type, "__name__", "")
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            return raw.strip().lower() in {"1", "true", "yes", "on"}
    except ValueError:
        raise SettingsError(f"{ENV_PREFIX}{spec.name.upper()} must be a number, not {raw!r}") from None
    return raw


__all__ = ["Settings", "default_data_dir"]
