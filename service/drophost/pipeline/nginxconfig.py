"""nginx configuration as text (pure): the main config, a slot's entry, the sites map. Only allow-listed values."""

from __future__ import annotations

import grp
import hashlib
import pwd
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import jinja2

from drophost.errors import SettingsError
from drophost.names import validate_slot
from drophost.paths import is_plain_path
from drophost.settings import Settings

# Addresses that end up in a config must match these; anything else is refused, not escaped.
_SAFE_LISTEN = re.compile(r"^(?:\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$")


_SAFE_UPSTREAM = re.compile(r"^http://(?:unix:/[A-Za-z0-9/._-]+:|[A-Za-z0-9.-]+:[0-9]{1,5})$")


# nginx leaves requests with this User-Agent out of the access log (see nginx.conf.j2).
PROBE_USER_AGENT = "drophost-reload-check"


_SAFE_HOST_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


_SAFE_ORIGIN = re.compile(r"^https?://(?:\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?$")


# A domain of lowercase DNS labels: it becomes part of a regex in the config, dots escaped.
_SAFE_DOMAIN = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


_RELEASE_PARTS = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}/[0-9]{1,18}$")


# The line of a stored config after which the slot's own part of the sites server follows.
PART_MARKER = "# nginx/slots/"
# The line of a part after which its http-level maps follow (nginx/maps/<slot>.conf).
MAPS_MARKER = "# nginx/maps/"


# Where a slot's path starts in $drophost_request_uri, for the generic location (any slot).
ANY_SLOT_PREFIX = "/d/[a-z0-9][a-z0-9-]{0,62}"


def clean_url_redirects(prefix: str) -> list[str]:
    """The other half of clean URLs: /about.html answers 301 to /about, /blog/index.html to /blog/.

    `prefix` is a regex for /d/<slot> (a slot name is one). `$drophost_site_base` must be set before
    (a map's regex would replace $1). Matched against the request as sent (as if to /d/<slot>/ on the
    slot's host name), so nginx's own internal redirect to index.html (a folder was asked for) and the
    site's 404 page do not redirect again.
    """
    # The path after the slash never starts with another slash or a backslash (the request as sent
    # keeps them): on a host name, where the base is empty, "//evil.example" would be another site.
    return [
        f'if ($drophost_request_uri ~ "^{prefix}/(?![/\\x5c])((?:[^?]*/)?)index\\.html(?:\\?|$)") {{',
        '    return 301 "$drophost_site_base/$1$is_args$args";',
        "}",
        f'if ($drophost_request_uri ~ "^{prefix}/(?![/\\x5c])([^?]*[^/?])\\.html(?:\\?|$)") {{',
        '    return 301 "$drophost_site_base/$1$is_args$args";',
        "}",
    ]


@dataclass(frozen=True)
class SiteConfig:
    slot: str
    version: int
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def template_environment(template_dir: str = "") -> jinja2.Environment:
    loader: jinja2.BaseLoader
    if template_dir:
        loader = jinja2.FileSystemLoader(template_dir)
    else:
        loader = jinja2.PackageLoader("drophost.nginx_templates", ".")
    return jinja2.Environment(
        loader=loader, autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )


def safe_path(path: Path | str) -> str:
    text = str(path)
    if not is_plain_path(text):
        raise SettingsError(f"the path {text!r} has characters DropHost will not put in an nginx config")
    return text


def render_site_config(
    env: jinja2.Environment, *, slot: str, version: int, release_dir: Path, deployment_id: int, part: str = ""
) -> SiteConfig:
    """The nginx config of one slot version; every value is allow-listed first.

    `part`: the slot's own location compiled from its rules (siterules.render_part), empty for a
    slot without rules (the generic location serves it).
    """
    validate_slot(slot)
    if Path(safe_path(release_dir)).parent.name != slot:
        raise SettingsError(f"{str(release_dir)!r} is not a release directory of slot {slot!r}")
    text = env.get_template("site.conf.j2").render(
        slot=slot,
        version=int(version),
        # Relative to the data directory: the stored text names no server path and survives a move.
        release=release_link_target(release_dir).removeprefix("../"),
        release_dir=str(release_dir),  # for templates written before the links (already checked)
        deployment_id=int(deployment_id),
        part=part,
    )
    return SiteConfig(slot=slot, version=int(version), text=text)


def site_entry(text: str) -> str:
    """The slot's sites map line(s) of a config, without the comments (pure).

    Two versions of a slot whose entries and parts are equal differ only in their files: switching
    between them moves the slot's link and changes nothing nginx has loaded.
    """
    entry, _ = split_config(text)
    lines = (line.strip() for line in entry.splitlines())
    return "".join(f"{line}\n" for line in lines if line and not line.startswith("#"))


def expired_config(slot: str) -> str:
    """The sites map entry of an expired slot, which has no files: nginx answers 410, not 404 (pure)."""
    return f"{validate_slot(slot)} expired;\n"


def site_part(text: str) -> str:
    """The slot's own part of the sites server (nginx/slots/<slot>.conf); empty without rules."""
    return split_config(text)[1]


def split_config(text: str) -> tuple[str, str]:
    """A stored config: the map entry (with its comments), and the slot's part after the marker."""
    head, marker, rest = text.partition(f"\n{PART_MARKER}")
    if not marker:
        return text, ""
    return head + "\n", rest.partition("\n")[2]


def split_part(part: str) -> tuple[str, str]:
    """A slot's part: its locations in the sites server, and its maps at http level."""
    head, marker, rest = part.partition(MAPS_MARKER)
    if not marker or (head and not head.endswith("\n")):
        return part, ""
    return head, rest.partition("\n")[2]


def compose_config(entry: str, part: str) -> str:
    """A config text that splits into this entry and part (what nginx has, for putting back)."""
    if not part:
        return entry
    return f"{entry}{PART_MARKER} (restored)\n{part}"


def release_link_target(release_dir: Path | str) -> str:
    """Where live/<slot> points for a release: relative, so a moved data directory keeps working.

    Only the last two parts of a stored release path (<slot>/<deployment id>) are used, and both are
    checked here: nothing else can ever become a link target.
    """
    parts = Path(release_dir).parts
    if len(parts) < 2 or not _RELEASE_PARTS.fullmatch(f"{parts[-2]}/{parts[-1]}"):
        raise SettingsError(f"{str(release_dir)!r} is not a release directory")
    validate_slot(parts[-2])
    return f"../releases/{parts[-2]}/{parts[-1]}"


def render_main_config(
    env: jinja2.Environment,
    settings: Settings,
    *,
    sites_map: str,
    worker_user: str = "",
    slot_includes: Sequence[str] | None = None,
    map_includes: Sequence[str] | None = None,
) -> str:
    """The whole nginx.conf; sites_map is the live entries file, or a candidate for nginx -t, and
    slot_includes the slots' own parts (default: every file in nginx/slots/), map_includes their
    maps (default: every file in nginx/maps/)."""
    listen = f"{settings.host}:{settings.port}"
    if not _SAFE_LISTEN.fullmatch(listen):
        raise SettingsError(f"{listen!r} is not an address nginx can listen on")
    sites_listen = f"{settings.host}:{settings.sites_listen_port}"
    if settings.sites_host and not _SAFE_HOST_NAME.fullmatch(settings.sites_host):
        raise SettingsError(f"{settings.sites_host!r} is not a host name")
    if sites_listen == listen and not settings.sites_host:
        raise SettingsError("the sites need their own port, or a host name (DROPHOST_SITES_HOST) on the same port")
    domain_regex = sites_domain_regex(settings)
    upstream = service_upstream(settings)
    if not _SAFE_UPSTREAM.fullmatch(upstream):
        raise SettingsError(f"{upstream!r} is not an address DropHost will proxy to")
    if settings.tls and not (settings.tls_cert and settings.tls_key):
        raise SettingsError("HTTPS needs both a certificate and its key (--tls-cert and --tls-key)")
    if worker_user and not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31} [a-z_][a-z0-9_-]{0,31}", worker_user):
        raise SettingsError(f"{worker_user!r} is not a user name")
    return env.get_template("nginx.conf.j2").render(
        nginx_dir=safe_path(settings.nginx_dir),
        listen=listen,
        sites_listen=sites_listen,
        sites_host=settings.sites_host,
        sites_redirect=sites_redirect(settings),
        sites_domain=settings.sites_domain,
        domain_regex=domain_regex,
        site_hosts_redirect=site_hosts_redirect(settings),
        # upstream's `server` takes the address alone: unix:/path or host:port.
        service_server=upstream.removeprefix("http://").removesuffix(":"),
        sites_map=safe_path(sites_map),
        site_root=safe_path(settings.nginx_dir / "root"),
        slot_includes=(
            [safe_path(path) for path in slot_includes]
            if slot_includes is not None
            else [safe_path(settings.nginx_dir / "slots") + "/*.conf"]
        ),
        map_includes=(
            [safe_path(path) for path in map_includes]
            if map_includes is not None
            else [safe_path(settings.nginx_dir / "maps") + "/*.conf"]
        ),
        live_dir=safe_path(settings.data_dir / "live"),
        releases_dir=safe_path(settings.releases_dir),
        symlink_check=bool(settings.nginx_symlink_check),
        tls_cert=safe_path(Path(settings.tls_cert).absolute()) if settings.tls else "",
        tls_key=safe_path(Path(settings.tls_key).absolute()) if settings.tls else "",
        mime_types=safe_path(settings.nginx_dir / "mime.types"),
        max_body_bytes=int(settings.max_upload_bytes) + 1024 * 1024,
        worker_user=worker_user,
        worker_processes="auto",
        clean_url_redirects="\n".join(clean_url_redirects(ANY_SLOT_PREFIX)),
    )


def compose_sites(entries: dict[str, str]) -> str:
    """The sites map file: every live slot's entry (see site_entry), in a stable order (pure)."""
    body = "".join(entries[slot] for slot in sorted(entries))
    return f"# Generated by DropHost: the live entry of every slot. Do not edit.\n{body}"


def sites_domain_regex(settings: Settings) -> str:
    """The sites domain as it appears in the config's host-name regexes; checked, dots escaped.

    The dashboard's host is never a site's host name (<label>.<domain>): a site would share its
    host, so its cookies, whatever the port.
    """
    domain = settings.sites_domain
    if not _SAFE_DOMAIN.fullmatch(domain) or len(domain) > 190:
        raise SettingsError(f"{domain!r} is not a domain for the sites' host names (lowercase, like sites.example.lan)")
    named = {"public URL": urlsplit(settings.public_url).hostname or "", "sites host": settings.sites_host}
    for name, host in named.items():
        _label, dot, rest = host.lower().partition(".")
        if dot and rest == domain:
            raise SettingsError(
                f"the {name} {host!r} is one of the sites' host names (<slot>.{domain}); "
                "give the dashboard and the sites different names or DROPHOST_SITES_DOMAIN another domain"
            )
    return domain.replace(".", "\\.")


def site_hosts_redirect(settings: Settings) -> str:
    """Where the main port sends a site's host name: the same host on the sites port."""
    scheme, port = settings.sites_scheme_and_port
    return f"{scheme}://$host{port}"


def sites_redirect(settings: Settings) -> str:
    """The origin the main port sends /d/... to: the configured one, else the host the browser used."""
    if settings.sites_url:
        origin = settings.sites_url.rstrip("/")
        if not _SAFE_ORIGIN.fullmatch(origin):
            raise SettingsError(f"{origin!r} is not an origin like http://sites.example:8081 (no path)")
        return origin
    port = settings.sites_listen_port
    suffix = "" if port == (443 if settings.tls else 80) else f":{port}"
    return f"$scheme://{settings.sites_host or '$host'}{suffix}"


def worker_user_directive(user: str) -> str:
    """ "user group" for nginx's user directive (Debian's nobody has no group of that name)."""
    try:
        entry = pwd.getpwnam(user)
        return f"{user} {grp.getgrgid(entry.pw_gid).gr_name}"
    except KeyError:
        raise SettingsError(f"the nginx worker user {user!r} does not exist") from None


def service_upstream(settings: Settings) -> str:
    address = settings.service_socket or str(settings.data_dir / "run" / "service.sock")
    if address.startswith("/"):
        return f"http://unix:{address}:"
    return f"http://{address}"


def changed_entries(entries: dict[str, str], changes: Mapping[str, str | None]) -> dict[str, str]:
    """A copy of `entries` with each slot set to its config's entry (None: removed)."""
    result = dict(entries)
    for slot, text in changes.items():
        if text is None:
            result.pop(validate_slot(slot), None)
        else:
            result[validate_slot(slot)] = site_entry(text)
    return result


def changed_parts(parts: dict[str, str], changes: Mapping[str, str | None]) -> dict[str, str]:
    """A copy of `parts` with each slot set to its config's part (None or no rules: none)."""
    result = dict(parts)
    for slot, text in changes.items():
        part = site_part(text) if text is not None else ""
        if part:
            result[validate_slot(slot)] = part
        else:
            result.pop(validate_slot(slot), None)
    return result
