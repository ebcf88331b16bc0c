"""A site's rules (redirects, rewrites, headers, SPA fallback, clean URLs, access) as data, and as
nginx text (pure).

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
from drophost.names import validate_slot
from drophost.settings import Settings

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
STATUSES = REDIRECT_STATUSES | {200, 404, 410}

# Framing and hop-by-hop headers belong to nginx; a site setting them would corrupt responses.
REFUSED_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer", "host"}
)

# A path pattern: plain URL path characters, `*` (the splat) and `:name` segments.
_PATH_CHARS = re.compile(r"^/[A-Za-z0-9._~%+,=@/*:-]*$")
_PLACEHOLDER = re.compile(r":([A-Za-z][A-Za-z0-9_]{0,31})")
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
    used = set(_PLACEHOLDER.findall(target.split("://", 1)[-1]))
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
            match = re.fullmatch(_PLACEHOLDER, segment)
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


# -- rendering -------------------------------------------------------------------------------


def render_part(slot: str, rules: SiteRules, *, auth_file: str = "") -> str:
    """The slot's own part of the sites server: a `location ^~ /d/<slot>/` and its fallbacks.

    A file that exists is served as today; only when nginx would answer 404 (or 403 for a folder
    without index.html) does the request go on to @<slot>, which tries <path>.html (clean URLs),
    the rules that are not forced, the SPA's index.html, and finally the site's 404 page.
    The header variables are set once, in the first location (nginx keeps them across the jumps to
    the named locations); an `if` in a named location would also drop its try_files.
    `auth_file`: the htpasswd file, relative to nginx's configuration folder.
    """
    validate_slot(slot)
    if rules.plain:
        return ""
    prefix = f"/d/{slot}"
    files, fallback = f"@drophost-{slot}-files", f"@drophost-{slot}-rules"
    first = files if rules.clean_urls else fallback
    access = _access_lines(slot, rules.access, auth_file)
    sets, adds = _header_lines(prefix, rules.headers)
    # Where a redirect target starts (/d/<slot>, or the root on the slot's host name), read before
    # any rule's regex: working it out runs a regex of its own, which would replace their $1, $2...
    sets.insert(0, "set $drophost_site_base $drophost_base;")
    # A location's own add_header lines replace the server's, so each one repeats the sites origin's
    # Cache-Control (a header rule for it sets $drophost_cache_control, see _header_lines).
    slot_header = [
        f"add_header X-Drophost-Slot {slot} always;",
        "add_header Cache-Control $drophost_cache_control always;",
    ]
    forced = [line for rule in rules.redirects if rule.force for line in _rule_lines(prefix, rule)]
    unforced = [line for rule in rules.redirects if not rule.force for line in _rule_lines(prefix, rule)]
    clean = []
    if rules.clean_urls:
        # Matched against the request as sent (as if to /d/<slot>/ on the slot's host name), so
        # nginx's own internal redirect to index.html (a folder was asked for) does not redirect again.
        clean = [
            f'if ($drophost_request_uri ~ "^{prefix}/((?:[^?]*/)?)index\\.html(?:\\?|$)") {{',
            '    return 301 "$drophost_site_base/$1$is_args$args";',
            "}",
            f'if ($drophost_request_uri ~ "^{prefix}/([^?]*[^/?])\\.html(?:\\?|$)") {{',
            '    return 301 "$drophost_site_base/$1$is_args$args";',
            "}",
        ]
    out = [f"location ^~ {prefix}/ {{"]
    out += _indent(
        [
            *access,
            # The fallbacks below send the site's 404 page themselves.
            "recursive_error_pages on;",
            f"error_page 404 = {first};",
            f"error_page 403 = {first};",
            *sets,
            *forced,
            *clean,
            *slot_header,
            *adds,
            # Dotfiles are never published, and never served even if one appears on disk; the one
            # exception is the folder .well-known/ at the top of the site, as in the generic location.
            f'location ~ "^(?!{prefix}/\\.well-known(?![^/])(?!.*/\\.)).*/\\." {{',
            *_indent([*access, f"error_page 404 {prefix}/404.html;", "return 404;", *slot_header]),
            "}",
            # No extension, but JSON. nginx runs only this location's own rewrites, hence the copies.
            f'location ~ "^{prefix}/\\.well-known/apple-app-site-association$" {{',
            *_indent(["default_type application/json;", *sets, *forced]),
            "}",
        ]
    )
    out.append("}")
    if rules.clean_urls:
        out.append(f"location {files} {{")
        out += _indent([*access, f"try_files $uri.html {fallback};", *slot_header, *adds])
        out.append("}")
    out.append(f"location {fallback} {{")
    tail = [f'rewrite ^ "{prefix}/index.html" break;'] if rules.spa else ["return 404;"]
    out += _indent([*access, f"error_page 404 {prefix}/404.html;", *unforced, *tail, *slot_header, *adds])
    out.append("}")
    return "".join(f"{line}\n" for line in out)


def _indent(lines: list[str]) -> list[str]:
    return [f"    {line}" for line in lines]


def _regex(prefix: str, pattern: str) -> tuple[str, dict[str, int]]:
    """A path pattern as an anchored PCRE on $uri, and the capture number of each placeholder."""
    groups: dict[str, int] = {}
    out = [f"^{prefix}"]
    for piece in re.split(r"(\*|:[A-Za-z][A-Za-z0-9_]*)", pattern):
        if piece == "*":
            groups["splat"] = len(groups) + 1
            out.append("(.*)")
        elif piece.startswith(":"):
            groups[piece[1:]] = len(groups) + 1
            out.append("([^/]+)")
        else:
            out.append(re.sub(r"([.+])", r"\\\1", piece))
    text = "".join(out)
    if not pattern.endswith(("/", "*")):
        text += "/?"  # /about also matches /about/, as on Netlify
    return f"{text}$", groups


def _substitute(target: str, groups: Mapping[str, int]) -> str:
    return _PLACEHOLDER.sub(lambda match: f"${groups[match.group(1)]}", target)


def _rule_lines(prefix: str, rule: Redirect) -> list[str]:
    regex, groups = _regex(prefix, rule.source)
    if rule.status == 200:
        return [f'rewrite "{regex}" "{prefix}{_substitute(rule.target, groups)}" break;']
    if rule.status in (404, 410):
        return [
            f'if ($uri ~ "{regex}") {{',
            f"    error_page {rule.status} {prefix}{rule.target};",
            f"    return {rule.status};",
            "}",
        ]
    target = _substitute(rule.target, groups)
    if not rule.target.startswith(("http://", "https://")):
        # /d/<slot> on the sites origin, nothing on the slot's own host name (see nginx.conf.j2).
        target = f"$drophost_site_base{target}"
    if "?" not in rule.target and "#" not in rule.target:
        target += "$is_args$args"  # the query string is passed on, as on Netlify
    return [f'if ($uri ~ "{regex}") {{', f'    return {rule.status} "{target}";', "}"]


def _header_lines(prefix: str, rules: Sequence[HeaderRule]) -> tuple[list[str], list[str]]:
    """`set` lines (every matching block, in order; `! Name` clears what earlier blocks set) and
    the `add_header` lines. Matched against the path as requested, so a rewrite or the SPA
    fallback does not change which headers apply."""
    sets: list[str] = []
    adds: list[str] = []
    earlier: list[tuple[str, str]] = []  # (header name lowered, variable)
    cache_control: list[str] = []
    for number, rule in enumerate(rules, start=1):
        regex, _ = _regex(prefix, rule.pattern)
        body: list[str] = []
        for name in rule.remove:
            body += [f'set {var} "";' for lowered, var in earlier if lowered == name.lower()]
        for index, (name, value) in enumerate(rule.set, start=1):
            var = f"$drophost_h{number}_{index}"
            sets.append(f'set {var} "";')
            body.append(f'set {var} "{value}";')
            if name.lower() == "cache-control":
                cache_control.append(var)
            else:
                adds.append(f'add_header "{name}" {var} always;')
            earlier.append((name.lower(), var))
        if body:
            sets += [f'if ($drophost_requested_path ~ "{regex}") {{', *_indent(body), "}"]
    # Cache-Control replaces the sites origin's default (one header, never two): the last block
    # that sets it wins, and one whose value a later `! Cache-Control` cleared leaves the default.
    for var in cache_control:
        sets += [f'if ({var} != "") {{', f"    set $drophost_cache_control {var};", "}"]
    return sets, adds


def _access_lines(slot: str, access: Access | None, auth_file: str) -> list[str]:
    if access is None:
        return []
    # Both given: the address AND the password. Adding an allow-list to a protected site must
    # never open it to a visitor without the password (satisfy any would).
    lines = ["satisfy all;"]
    if access.allow:
        lines += [*(f"allow {cidr};" for cidr in access.allow), "deny all;"]
    if access.basic_auth_env:
        if not re.fullmatch(r"auth/[a-z0-9-]+-[0-9a-f]{16}\.htpasswd", auth_file):
            raise RuleError("the password file is missing", file="access")
        lines += [f'auth_basic "{slot}";', f"auth_basic_user_file {auth_file};"]
    return lines
