"""A site's rules (redirects, rewrites, headers, SPA fallback, clean URLs, access) as data (pure);
sitecompile turns them into nginx text.

The rule files use the format Netlify and Cloudflare Pages share (`_redirects`, `_headers`);
deploy.yaml and the API give the same rules as YAML/JSON. Every value that reaches the nginx text
passed an allow-list first: paths and URLs are built from a few plain characters, a header value
may only appear inside double quotes and never holds a quote, a backslash, a `$` or a control
character, so no user text can expand a variable, end a string, a directive or a block.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from drophost.errors import ValidationError
from drophost.settings import Settings

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
STATUSES = REDIRECT_STATUSES | {200, 404, 410}

# Framing and hop-by-hop headers belong to nginx; a site setting them would corrupt responses.
REFUSED_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer", "host"}
)

# A path pattern: plain URL path characters, `*` (the splat) and `:name` segments.
_PATH_CHARS = re.compile(r"^/[A-Za-z0-9._~%+,=@/*:-]*$")
PLACEHOLDER = re.compile(r":([A-Za-z][A-Za-z0-9_]{0,31})")
# A redirect target on this site (with :splat/:name, a query and a fragment).
_TARGET_PATH = re.compile(r"^/[A-Za-z0-9._~%+,=@/:?&#-]*$")
# Another host: only absolute http(s) URLs with a plain host name and the same characters.
_TARGET_URL = re.compile(
    r"^https?://[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~%+,=@/:?&#-]*)?$"
)
# RFC 9110 token characters, less `$` and `'`, which mean something to nginx.
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#%&*+.^_`|~-]{1,64}$")
# Printable ASCII, never a quote, a backslash or `$`; the value is written inside double quotes.
_HEADER_VALUE = re.compile(r"^[ !#%&-\[\]-~]*$")
_CIDR = re.compile(r"^(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?:/[0-9]{1,2})?|[0-9A-Fa-f:]{2,39}(?:/[0-9]{1,3})?)$")
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")


@dataclass(frozen=True)
class RuleLimits:
    max_redirects: int = 2000
    max_header_rules: int = 100
    max_line: int = 2000
    max_value: int = 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> RuleLimits:
        return cls(
            max_redirects=settings.max_redirect_rules,
            max_header_rules=settings.max_header_rules,
            max_line=settings.max_rule_line,
            max_value=settings.max_header_value,
        )


@dataclass(frozen=True)
class Redirect:
    source: str
    target: str
    status: int = 301
    force: bool = False


@dataclass(frozen=True)
class HeaderRule:
    pattern: str
    set: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class Access:
    # The environment variable (or NAME_FILE) holding htpasswd lines; empty: no password.
    basic_auth_env: str = ""
    allow: tuple[str, ...] = ()


@dataclass(frozen=True)
class SiteOptions:
    """What deploy.yaml or the API says about a site; None: not said (the files or the default decide)."""

    spa: bool | None = None
    clean_urls: bool | None = None
    redirects: tuple[Redirect, ...] = ()
    headers: tuple[HeaderRule, ...] = ()
    access: Access | None = None


@dataclass(frozen=True)
class SiteRules:
    """Everything the slot's part of the nginx configuration is compiled from."""

    redirects: tuple[Redirect, ...] = ()
    headers: tuple[HeaderRule, ...] = ()
    spa: bool = False
    clean_urls: bool = True
    access: Access | None = None
    # True when nothing at all was said: the slot keeps the generic location (today's behaviour).
    plain: bool = field(default=False, compare=False)


class RuleError(ValidationError):
    """A rule file or key is wrong; the message starts with "file:line:"."""

    def __init__(self, message: str, *, file: str, line: int | None = None) -> None:
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {message}", file=file, line=line)
        self.reason = message


# -- parsing ---------------------------------------------------------------------------------


def parse_redirects(text: str, *, file: str = "_redirects", limits: RuleLimits = RuleLimits()) -> tuple[Redirect, ...]:
    """`from to [status][!]` a line, `#` comments (Netlify's and Cloudflare's format)."""
    rules: list[Redirect] = []
    for number, line in _lines(text, file, limits):
        fields = line.split()
        if len(fields) < 2:
            raise RuleError("a rule needs a path and a target", file=file, line=number)
        if len(fields) > 3:
            raise RuleError("conditions (country, language, role, query) are not supported", file=file, line=number)
        status, force = (fields[2], False) if len(fields) == 3 else ("301", False)
        if status.endswith("!"):
            status, force = status[:-1], True
        rules.append(_redirect(fields[0], fields[1], status, force, file=file, line=number))
        if len(rules) > limits.max_redirects:
            raise RuleError(f"more than {limits.max_redirects} redirect rules", file=file, line=number)
    return tuple(rules)


def parse_headers(text: str, *, file: str = "_headers", limits: RuleLimits = RuleLimits()) -> tuple[HeaderRule, ...]:
    """A path pattern line, then indented `Name: value` (or Cloudflare's `! Name`) lines."""
    blocks: list[tuple[int, str, list[tuple[str, str]], list[str]]] = []
    for number, line in _lines(text, file, limits, keep_indent=True):
        if not line[0].isspace():
            pattern = line.strip()
            _pattern(pattern, file=file, line=number)
            blocks.append((number, pattern, [], []))
            if len(blocks) > limits.max_header_rules:
                raise RuleError(f"more than {limits.max_header_rules} header rules", file=file, line=number)
            continue
        if not blocks:
            raise RuleError("a header line comes before any path", file=file, line=number)
        body = line.strip()
        if body.startswith("!"):
            blocks[-1][3].append(_header_name(body[1:].strip(), file=file, line=number))
            continue
        name, colon, value = body.partition(":")
        if not colon:
            raise RuleError('a header line is "Name: value"', file=file, line=number)
        blocks[-1][2].append(
            (_header_name(name.strip(), file=file, line=number), _header_value(value.strip(), limits, file, number))
        )
    rules = []
    for number, pattern, sets, removes in blocks:
        if not sets and not removes:
            raise RuleError(f"the path {pattern} has no header lines", file=file, line=number)
        rules.append(HeaderRule(pattern=pattern, set=tuple(sets), remove=tuple(removes)))
    return tuple(rules)


def parse_options(data: object, *, file: str, limits: RuleLimits = RuleLimits()) -> SiteOptions:
    """The `site` keys of deploy.yaml or the API: spa, clean_urls, redirects, headers, access."""
    if data is None:
        return SiteOptions()
    if not isinstance(data, Mapping):
        raise RuleError("site must be an object", file=file)
    unknown = sorted(set(data) - {"spa", "clean_urls", "redirects", "headers", "access"})
    if unknown:
        raise RuleError(f"unknown key {unknown[0]!r}", file=file)
    for key in ("spa", "clean_urls"):
        if key in data and not isinstance(data[key], bool):
            raise RuleError(f"{key} must be true or false", file=file)
    redirects = _redirect_list(data.get("redirects", []), file, limits)
    headers = _header_list(data.get("headers", []), file, limits)
    access = parse_access(data["access"], file=file) if data.get("access") is not None else None
    return SiteOptions(
        spa=data.get("spa"), clean_urls=data.get("clean_urls"), redirects=redirects, headers=headers, access=access
    )


def parse_access(data: object, *, file: str) -> Access:
    if not isinstance(data, Mapping) or not data:
        raise RuleError("access must be an object with basic_auth_env and/or allow", file=file)
    unknown = sorted(set(data) - {"basic_auth_env", "allow"})
    if unknown:
        raise RuleError(f"unknown access key {unknown[0]!r}", file=file)
    env = data.get("basic_auth_env", "")
    if env and (not isinstance(env, str) or not _ENV_NAME.fullmatch(env)):
        raise RuleError("basic_auth_env must name an environment variable (A-Z, 0-9, _)", file=file)
    allow = data.get("allow", [])
    if not isinstance(allow, list) or not all(isinstance(item, str) and _CIDR.fullmatch(item) for item in allow):
        raise RuleError('allow must be a list of addresses or CIDR ranges like "192.168.10.0/24"', file=file)
    if not env and not allow:
        raise RuleError("access needs basic_auth_env or allow", file=file)
    return Access(basic_auth_env=str(env), allow=tuple(allow))


def options_json(options: SiteOptions) -> dict[str, Any]:
    """SiteOptions in the form parse_options reads (what deploy.yaml and the API send)."""
    out: dict[str, Any] = {}
    if options.spa is not None:
        out["spa"] = options.spa
    if options.clean_urls is not None:
        out["clean_urls"] = options.clean_urls
    if options.redirects:
        out["redirects"] = [
            {"from": r.source, "to": r.target, "status": r.status, "force": r.force} for r in options.redirects
        ]
    if options.headers:
        out["headers"] = [
            {"for": h.pattern, "values": dict(h.set), **({"remove": list(h.remove)} if h.remove else {})}
            for h in options.headers
        ]
    if options.access is not None:
        access: dict[str, Any] = {}
        if options.access.basic_auth_env:
            access["basic_auth_env"] = options.access.basic_auth_env
        if options.access.allow:
            access["allow"] = list(options.access.allow)
        out["access"] = access
    return out


def combine(
    options: SiteOptions,
    file_redirects: Sequence[Redirect] = (),
    file_headers: Sequence[HeaderRule] = (),
    *,
    limits: RuleLimits = RuleLimits(),
) -> SiteRules:
    """deploy.yaml/API rules come before the files' rules; their spa, clean_urls and access win."""
    redirects = (*options.redirects, *file_redirects)
    headers = (*options.headers, *file_headers)
    if len(redirects) > limits.max_redirects:
        raise RuleError(f"more than {limits.max_redirects} redirect rules in all", file="site")
    if len(headers) > limits.max_header_rules:
        raise RuleError(f"more than {limits.max_header_rules} header rules in all", file="site")
    plain = options == SiteOptions() and not redirects and not headers
    return SiteRules(
        redirects=redirects,
        headers=headers,
        spa=bool(options.spa),
        clean_urls=True if options.clean_urls is None else options.clean_urls,
        access=options.access,
        plain=plain,
    )


def _lines(text: str, file: str, limits: RuleLimits, *, keep_indent: bool = False) -> Iterable[tuple[int, str]]:
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r")
        if len(line) > limits.max_line:
            raise RuleError(f"the line is longer than {limits.max_line} characters", file=file, line=number)
        if any(ord(char) < 0x20 and char != "\t" or ord(char) == 0x7F for char in line):
            raise RuleError("the line has a control character (CR, NUL, ...)", file=file, line=number)
        if not line.strip() or line.strip().startswith("#"):
            continue
        yield number, (line if keep_indent else line.strip())


def _redirect(source: str, target: str, status: str, force: bool, *, file: str, line: int | None) -> Redirect:
    if not status.isdigit() or int(status) not in STATUSES:
        raise RuleError(
            f"status {status!r} is not one of {', '.join(map(str, sorted(STATUSES)))}", file=file, line=line
        )
    code = int(status)
    names = _pattern(source, file=file, line=line)
    if target.startswith(("http://", "https://")):
        if code == 200:
            raise RuleError(
                "a 200 rule to another host would be a proxy: proxying is not supported", file=file, line=line
            )
        if not _TARGET_URL.fullmatch(target):
            raise RuleError(f"{_show(target)} is not an http(s) URL DropHost accepts", file=file, line=line)
        if code in (404, 410):
            raise RuleError(f"a {code} rule serves a page of this site, not a URL", file=file, line=line)
    elif not _TARGET_PATH.fullmatch(target):
        raise RuleError(
            f"the target {_show(target)} is not a path or an http(s) URL DropHost accepts", file=file, line=line
        )
    elif "/../" in f"{target}/" or "/./" in f"{target}/":
        raise RuleError("the target has . or .. segments", file=file, line=line)
    used = set(PLACEHOLDER.findall(target.split("://", 1)[-1]))
    if used - names - {"splat"} or ("splat" in used and "*" not in source):
        missing = sorted(used - names)[0]
        raise RuleError(f":{missing} in the target is not in the path", file=file, line=line)
    if code != 200 and code not in REDIRECT_STATUSES and used:
        raise RuleError(f"a {code} rule's page cannot use placeholders", file=file, line=line)
    if code in (200, 404, 410) and ("?" in target or "#" in target):
        raise RuleError(f"a {code} rule's target is a file path, without ? or #", file=file, line=line)
    return Redirect(source=source, target=target, status=code, force=force)


def _pattern(pattern: str, *, file: str, line: int | None) -> set[str]:
    """Check a path pattern; return its placeholder names."""
    if not _PATH_CHARS.fullmatch(pattern):
        if pattern.startswith(("http://", "https://")):
            raise RuleError("rules for other hosts are not supported: the path starts with /", file=file, line=line)
        raise RuleError(f"the path {_show(pattern)} has characters DropHost does not accept", file=file, line=line)
    if pattern.count("*") > 1:
        raise RuleError("a path has at most one *", file=file, line=line)
    if "/../" in f"{pattern}/" or "/./" in f"{pattern}/":
        raise RuleError("the path has . or .. segments", file=file, line=line)
    names: list[str] = []
    for segment in pattern.split("/"):
        if ":" in segment:
            match = re.fullmatch(PLACEHOLDER, segment)
            if not match:
                raise RuleError(f"{_show(segment)}: a placeholder is a whole segment like :name", file=file, line=line)
            names.append(match.group(1))
    if len(set(names)) != len(names):
        raise RuleError("a placeholder appears twice in the path", file=file, line=line)
    if len(names) + pattern.count("*") > 9:
        raise RuleError("a path has at most 9 placeholders", file=file, line=line)
    return set(names)


def _header_name(name: str, *, file: str, line: int | None) -> str:
    if not _HEADER_NAME.fullmatch(name):
        raise RuleError(f"{_show(name)} is not a header name", file=file, line=line)
    lower = name.lower()
    if lower == "basic-auth":
        raise RuleError("Basic-Auth in _headers is not supported: use access: basic_auth_env", file=file, line=line)
    if lower in REFUSED_HEADERS or lower.startswith("proxy-") or lower == "x-drophost-slot":
        raise RuleError(f"the header {name} is nginx's own and cannot be set", file=file, line=line)
    return name


def _header_value(value: str, limits: RuleLimits, file: str, line: int | None) -> str:
    if len(value) > limits.max_value:
        raise RuleError(f"the value is longer than {limits.max_value} characters", file=file, line=line)
    if not value:
        raise RuleError("the header value is empty", file=file, line=line)
    if not _HEADER_VALUE.fullmatch(value):
        raise RuleError('a header value is printable ASCII without ", \\ or $', file=file, line=line)
    return value


def _redirect_list(items: object, file: str, limits: RuleLimits) -> tuple[Redirect, ...]:
    if not isinstance(items, list):
        raise RuleError("redirects must be a list", file=file)
    if len(items) > limits.max_redirects:
        raise RuleError(f"more than {limits.max_redirects} redirect rules", file=file)
    rules = []
    for index, item in enumerate(items):
        where = f"{file} redirects[{index}]"
        if (
            not isinstance(item, Mapping)
            or not isinstance(item.get("from"), str)
            or not isinstance(item.get("to"), str)
        ):
            raise RuleError("a redirect is {from: /path, to: target, status?: 301, force?: false}", file=where)
        if set(item) - {"from", "to", "status", "force"}:
            raise RuleError(f"unknown key {sorted(set(item) - {'from', 'to', 'status', 'force'})[0]!r}", file=where)
        status, force = item.get("status", 301), item.get("force", False)
        if isinstance(status, bool) or not isinstance(status, int) or not isinstance(force, bool):
            raise RuleError("status is a number and force true or false", file=where)
        for text in (item["from"], item["to"]):
            if len(text) > limits.max_line:
                raise RuleError(f"longer than {limits.max_line} characters", file=where)
        rules.append(_redirect(item["from"], item["to"], str(status), force, file=where, line=None))
    return tuple(rules)


def _header_list(items: object, file: str, limits: RuleLimits) -> tuple[HeaderRule, ...]:
    if not isinstance(items, list):
        raise RuleError("headers must be a list", file=file)
    if len(items) > limits.max_header_rules:
        raise RuleError(f"more than {limits.max_header_rules} header rules", file=file)
    rules = []
    for index, item in enumerate(items):
        where = f"{file} headers[{index}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("for"), str):
            raise RuleError("a header rule is {for: /path, values: {Name: value}, remove?: [Name]}", file=where)
        values, remove = item.get("values", {}), item.get("remove", [])
        if not isinstance(values, Mapping) or not isinstance(remove, list) or (not values and not remove):
            raise RuleError("values is a map of Name: value, remove a list of names", file=where)
        _pattern(item["for"], file=where, line=None)
        sets = tuple(
            (_header_name(str(k), file=where, line=None), _header_value(str(v), limits, where, None))
            for k, v in values.items()
        )
        removes = tuple(_header_name(str(name), file=where, line=None) for name in remove)
        rules.append(HeaderRule(pattern=item["for"], set=sets, remove=removes))
    return tuple(rules)


def _show(text: str) -> str:
    """A piece of a rule in a message: printable, short."""
    return repr(text[:80])
