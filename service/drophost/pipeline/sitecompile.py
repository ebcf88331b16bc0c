"""A slot's rules as nginx text (pure): its own locations in the sites server, and the maps of its
exact redirects at http level.

Every value comes from siterules, which allow-listed it: paths and URLs of plain characters, header
values only inside double quotes without a quote, a backslash or a `$`.

What a request costs is what shapes the text (bench/RESULTS.md, "Site rules"):
- Header blocks. Up to SPLIT_ABOVE, one location and one regex per block, matched against the path
  as requested. Above it, each block's paths get locations of their own (a `dir/*` block a prefix
  location, a page block a `location =`), each carrying the headers that every path in it gets as
  plain `add_header` lines, so nginx's prefix tree picks the headers and a request runs no regex
  for them; only blocks with placeholders or an inner `*` are still matched per request, and only
  in the locations where they can match. Every location of a key has its own fallbacks (@files,
  @rules, @page), so a clean URL, a rule or the 404 page is answered with the headers of the path
  that was asked for, as before.
- Redirects. Rules that are not forced run only when no file answered. Above MAP_ABOVE exact rules
  (no `*`, no placeholder), those are one hash lookup in a per-slot `map $uri` instead of a regex
  each; a rule a map cannot hold exactly (shadowed by an earlier pattern, an over-long path, a
  case-only twin: nginx's map keys ignore case) stays a regex in order. Past SPLIT_ABOVE pattern
  rules the part is split too, with a prefix location per first segment of theirs (`/legacy/`), so a
  request tries only the rules of its own section, as a hand-written config nests them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from drophost.names import validate_slot
from drophost.pipeline.nginxconfig import MAPS_MARKER, clean_url_redirects
from drophost.pipeline.siterules import PLACEHOLDER, Access, HeaderRule, Redirect, RuleError, SiteRules

# More header blocks than this: locations per block (see the module docstring). Fewer locations
# are cheaper for nginx to parse at every reload, and a few regexes per request cost little.
SPLIT_ABOVE = 8
# Past this many first segments of pattern redirects, they get no locations of their own.
MAX_SECTIONS = 64
# More exact redirects than this: a map (four more `if`s to parse, so not for a handful).
MAP_ABOVE = 8
# Longer map keys stay regexes: nginx.conf.j2's map_hash_bucket_size holds keys up to ~240 bytes.
MAX_MAP_KEY = 200
# No extension, but JSON (as on Netlify and Cloudflare Pages).
AASA = "/.well-known/apple-app-site-association"
# Dotfiles are never published, and never served even if one appears on disk; the one exception is
# the folder .well-known/ at the top of the site, as in the generic location.
_DOTFILE = '"^(?!{prefix}/\\.well-known(?![^/])(?!.*/\\.)).*/\\."'


@dataclass(frozen=True)
class _Key:
    """Where a family of locations applies: a prefix (`^~`) or one exact path, under the slot."""

    path: str
    exact: bool = False


@dataclass
class _Family:
    number: int
    key: _Key
    headers: Sequence[HeaderRule]  # the blocks that may apply here, in order
    literal: bool  # every one of them applies to every path here: plain add_header lines
    redirects: Sequence[Redirect]  # the rules that are not forced and may match here, in order
    maps: bool  # consult the slot's maps first


def render_part(slot: str, rules: SiteRules, *, auth_file: str = "") -> str:
    """The slot's own part of the sites server, and after MAPS_MARKER its http-level maps.

    A file that exists is served as today; only when nginx would answer 404 (or 403 for a folder
    without index.html) does the request go on to @files, which tries <path>.html (clean URLs),
    then @rules: the rules that are not forced, the SPA's index.html, and finally the site's 404.
    `auth_file`: the htpasswd file, relative to nginx's configuration folder.
    """
    validate_slot(slot)
    if rules.plain:
        return ""
    return _Compiler(slot, rules, auth_file).render()


class _Compiler:
    def __init__(self, slot: str, rules: SiteRules, auth_file: str) -> None:
        self.slot = slot
        self.rules = rules
        self.prefix = f"/d/{slot}"
        self.var = f"$drophost_{slot.replace('-', '_')}"
        self.access = _access_lines(slot, rules.access, auth_file)
        unforced = [rule for rule in rules.redirects if not rule.force]
        self.map_entries, chained = _map_entries(self.prefix, unforced)
        self.unforced = chained if self.map_entries else unforced
        patterns = [rule for rule in self.unforced if _kind(rule.source) != "exact"]
        self.split = len(rules.headers) > SPLIT_ABOVE or len(patterns) > SPLIT_ABOVE
        self.sections = _sections(patterns)
        self._exact: dict[str, int] | None = None  # exact path -> index of its first unforced rule

    # -- the whole part ------------------------------------------------------------------
    def render(self) -> str:
        families = self._families()
        root, nested = families[0], families[1:]
        out = [f"location ^~ {self.prefix}/ {{"]
        body = [*self._main(root), *self._dotfile(root)]
        body += [
            f'location = "{self.prefix}{AASA}" {{',
            *_indent(["default_type application/json;", *self._rewrites(root)]),
            "}",
        ]
        for family in nested:
            match = "=" if family.key.exact else "^~"
            body.append(f'location {match} "{self.prefix}{family.key.path}" {{')
            body += _indent([*self._main(family), *([] if family.key.exact else self._dotfile(family))])
            body.append("}")
        out += [*_indent(body), "}"]
        for family in families:
            out += self._fallbacks(family)
        text = "".join(f"{line}\n" for line in out)
        maps = self._maps()
        if maps:
            text += f"{MAPS_MARKER}{self.slot}.conf, this slot's exact redirects (http level):\n{maps}"
        return text

    def _families(self) -> list[_Family]:
        keys = [_Key("/")]
        if self.split:
            keys += [key for key in _keys(self.rules.headers) if key not in self.sections] + self.sections
        families = []
        for number, key in enumerate(keys):
            headers, literal = _headers_at(self.prefix, key, self.rules.headers, split=self.split)
            if key.exact:
                # One path: the first rule that matches it is the only one that can apply.
                first = self._first_rule(key.path)
                redirects, maps = [first] if first else [], False
            else:
                redirects = [rule for rule in self.unforced if _may_match(rule.source, key.path)]
                maps = bool(self.map_entries)
            families.append(_Family(number, key, headers, literal, redirects, maps))
        return families

    def _first_rule(self, path: str) -> Redirect | None:
        """The first rule that is not forced and matches this literal path."""
        if self._exact is None:
            self._exact = {}
            for number, rule in enumerate(self.rules.redirects):
                if not rule.force and _kind(rule.source) == "exact" and "%" not in rule.source:
                    for twin in _twins(rule.source):
                        self._exact.setdefault(twin, number)
        found = self._exact.get(path, len(self.rules.redirects))
        for rule in self.rules.redirects[:found]:
            if rule.force or (_kind(rule.source) == "exact" and "%" not in rule.source):
                continue
            if _matches(self.prefix, rule.source, path):
                return rule
        return self.rules.redirects[found] if found < len(self.rules.redirects) else None

    # -- the locations of one family -------------------------------------------------------
    def _name(self, family: _Family, role: str) -> str:
        suffix = f"-{family.number}" if self.split else ""
        return f"@drophost-{self.slot}-{role}{suffix}"

    def _main(self, family: _Family) -> list[str]:
        first = self._name(family, "files" if self.rules.clean_urls else "rules")
        lines = [*self.access]
        if family.number == 0:
            # The fallbacks below send the site's 404 page themselves.
            lines.append("recursive_error_pages on;")
        lines += [f"error_page 404 = {first};", f"error_page 403 = {first};", *self._rewrites(family)]
        if self.rules.clean_urls:
            lines += clean_url_redirects(self.prefix)
        if self.rules.clean_urls:
            # A clean URL in one pass, as a hand-written config finds it, instead of a 404 and a
            # second pass through @files. A folder is never a file here: nginx serves it from @static,
            # as before (its redirect to the slash, its index.html).
            lines.append(f"try_files $uri $uri.html {self._name(family, 'static')};")
        elif family.key.exact and family.key.path.endswith("/") and not self._forced_rewrite(family.key.path):
            # nginx's index module would redirect internally to .../index.html, whose location (and
            # headers) may be another: serve it here instead.
            lines.append(f'try_files "${{uri}}index.html" {first};')
        return [*lines, *self._headers(family)]

    def _rewrites(self, family: _Family, *, forced: bool = True) -> list[str]:
        """What a location of the family runs first: nginx runs only the innermost location's."""
        # Where a redirect target starts (/d/<slot>, or the root on the slot's host name), read before
        # any rule's regex: working it out runs a regex of its own, which would replace their $1, $2...
        lines = ["set $drophost_site_base $drophost_base;"]
        if family.literal:
            value = _cache_control(_fold(family.headers))
            if value is not None:
                lines.append(f'set $drophost_cache_control "{value}";')
        else:
            lines += _header_lines(self.prefix, family.headers)[0]
        if forced:
            lines += [line for rule in self._forced(family) for line in self._rule_lines(rule, family)]
        return lines

    def _forced(self, family: _Family) -> list[Redirect]:
        """The forced rules that may match in the family's locations, in order."""
        key = family.key
        forced = [rule for rule in self.rules.redirects if rule.force]
        if key.exact:
            return [rule for rule in forced if _matches(self.prefix, rule.source, key.path)]
        return [rule for rule in forced if _may_match(rule.source, key.path)]

    def _headers(self, family: _Family) -> list[str]:
        # A location's own add_header lines replace the server's, so each one repeats the sites
        # origin's Cache-Control (a header rule for it sets $drophost_cache_control instead).
        lines = self._headers_slot()
        if not family.literal:
            return lines + _header_lines(self.prefix, family.headers)[1]
        folded = _fold(family.headers)
        return lines + [f'add_header "{name}" "{value}" always;' for name, value in folded if not _is_cc(name)]

    def _dotfile(self, family: _Family) -> list[str]:
        regex = _DOTFILE.format(prefix=self.prefix)
        if not self.split:
            # The site's 404 page is fetched again through the slot's location, which sets the headers.
            body = [*self.access, f"error_page 404 {self.prefix}/404.html;", "return 404;", *self._headers_slot()]
        else:
            body = [*self.access, *self._rewrites(family, forced=False), *self._page(family, 404, "/404.html")]
            body += ["return 404;", *self._headers(family)]
        return [f"location ~ {regex} {{", *_indent(body), "}"]

    def _headers_slot(self) -> list[str]:
        return [
            f"add_header X-Drophost-Slot {self.slot} always;",
            "add_header Cache-Control $drophost_cache_control always;",
        ]

    def _fallbacks(self, family: _Family) -> list[str]:
        files, fallback = self._name(family, "files"), self._name(family, "rules")
        headers = self._headers(family)
        out = []
        if self.rules.clean_urls:
            out += [f"location {files} {{", *_indent([*self.access, f"try_files $uri.html {fallback};", *headers]), "}"]
            # What the family's try_files found no file for: nginx's own answer for a folder (or for
            # its index.html, which the family's exact folder key serves itself), else the rules.
            static = [*self.access, "recursive_error_pages on;", f"error_page 404 = {fallback};"]
            static.append(f"error_page 403 = {fallback};")
            if family.key.exact and family.key.path.endswith("/") and not self._forced_rewrite(family.key.path):
                static.append(f'try_files "${{uri}}index.html" {fallback};')
            out += [f"location {self._name(family, 'static')} {{", *_indent([*static, *headers]), "}"]
        body = [*self.access]
        if self.split:
            body += ["recursive_error_pages on;", *self._page(family, 404, "/404.html")]
        else:
            body.append(f"error_page 404 {self.prefix}/404.html;")
        if family.maps:
            body += self._map_lines(family)
        body += [line for rule in family.redirects for line in self._rule_lines(rule, family)]
        body += [f'rewrite ^ "{self.prefix}/index.html" break;'] if self.rules.spa else ["return 404;"]
        out += [f"location {fallback} {{", *_indent([*body, *headers]), "}"]
        if self.split:
            page = [*self.access, "try_files $drophost_page =404;", *headers]
            out += [f"location {self._name(family, 'page')} {{", *_indent(page), "}"]
        return out

    def _page(self, family: _Family, status: int, page: str, *, variable: bool = False) -> list[str]:
        """Answer `status` with a page of the site: in the family's own @page when split (so it
        keeps the headers of the path asked for), else through the slot's location."""
        target = page if variable else f"{self.prefix}{page}"
        if not self.split:
            return [f"error_page {status} {target};"]
        quoted = target if variable else f'"{target}"'
        return [f"set $drophost_page {quoted};", f"error_page 404 410 {self._name(family, 'page')};"]

    # -- redirects -------------------------------------------------------------------------
    def _rule_lines(self, rule: Redirect, family: _Family) -> list[str]:
        regex, groups = _regex(self.prefix, rule.source)
        if rule.status == 200:
            return [f'rewrite "{regex}" "{self.prefix}{_substitute(rule.target, groups)}" break;']
        if rule.status in (404, 410):
            page = self._page(family, rule.status, rule.target)
            return [f'if ($uri ~ "{regex}") {{', *_indent([*page, f"return {rule.status};"]), "}"]
        target = _substitute(rule.target, groups)
        if not rule.target.startswith(("http://", "https://")):
            # /d/<slot> on the sites origin, nothing on the slot's own host name (see nginx.conf.j2).
            target = f"$drophost_site_base{target}"
        if "?" not in rule.target and "#" not in rule.target:
            target += "$is_args$args"  # the query string is passed on, as on Netlify
        return [f'if ($uri ~ "{regex}") {{', f'    return {rule.status} "{target}";', "}"]

    def _map_lines(self, family: _Family) -> list[str]:
        statuses = sorted({status for status, _ in self.map_entries.values()})
        # nginx looks map keys up without regard to case; the rules match case as sent.
        lines = [f"if ({self.var}_rpath != $uri) {{", *(f'    set {self.var}_r{code} "";' for code in statuses), "}"]
        for code in statuses:
            value = f"{self.var}_r{code}"
            if code == 200:
                action = [f"rewrite ^ {value} break;"]
            elif code in (404, 410):
                action = [*self._page(family, code, value, variable=True), f"return {code};"]
            else:
                action = [f"return {code} {value};"]
            lines += [f"if ({value}) {{", *_indent(action), "}"]
        return lines

    def _maps(self) -> str:
        if not self.map_entries:
            return ""
        out = [f"map $uri {self.var}_rpath {{", *(f'    "{key}" "{key}";' for key in self.map_entries), "}"]
        for code in sorted({status for status, _ in self.map_entries.values()}):
            out.append(f"map $uri {self.var}_r{code} {{")
            out += [f'    "{key}" "{value}";' for key, (status, value) in self.map_entries.items() if status == code]
            out.append("}")
        return "".join(f"{line}\n" for line in out)

    def _forced_rewrite(self, path: str) -> bool:
        return any(r.force and r.status == 200 and _matches(self.prefix, r.source, path) for r in self.rules.redirects)


# -- keys and headers ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=8192)
def _literal_prefix(pattern: str) -> str:
    """The start every path of the pattern has, usable as a location: before the first `*`, `:` or
    `%` (locations see decoded paths), and no dot segment (those are for the dotfile location)."""
    cut = len(pattern)
    for mark in ("*", ":", "%"):
        if mark in pattern:
            cut = min(cut, pattern.index(mark))
    if "/." in pattern:
        cut = min(cut, pattern.index("/.") + 1)
    literal = pattern[:cut]
    # A key must never catch nginx's own internal redirect of a folder to <folder>/index.html.
    last = literal.rsplit("/", 1)[1]
    if last and "index.html".startswith(last):
        literal = literal[: len(literal) - len(last)]
    return literal


@functools.lru_cache(maxsize=8192)
def _kind(pattern: str) -> str:
    """exact: one path (and its slash twin); prefix: `<literal>*`; runtime: matched per request."""
    literal = _literal_prefix(pattern)
    if literal == pattern:
        return "exact"
    if pattern == f"{literal}*":
        return "prefix"
    return "runtime"


def _sections(rules: Sequence[Redirect]) -> list[_Key]:
    """Prefix keys for the first segments of pattern rules (`/legacy/` for `/legacy/:year/*`), so a
    request tries only the rules of its own section, as a hand-written config nests them. Past
    MAX_SECTIONS, none: each key is several locations for nginx to parse."""
    sections = {f"/{start.split('/')[1]}/" for rule in rules if (start := _literal_prefix(rule.source)).count("/") > 1}
    return [_Key(path) for path in sorted(sections)] if len(sections) <= MAX_SECTIONS else []


def _keys(headers: Sequence[HeaderRule]) -> list[_Key]:
    keys: dict[_Key, None] = {}
    for rule in headers:
        kind = _kind(rule.pattern)
        if kind == "exact":
            keys[_Key(rule.pattern, exact=True)] = None
            if not rule.pattern.endswith("/"):
                keys[_Key(f"{rule.pattern}/", exact=True)] = None
        elif _literal_prefix(rule.pattern) != "/":
            keys[_Key(_literal_prefix(rule.pattern))] = None
    return list(keys)


def _headers_at(prefix: str, key: _Key, rules: Sequence[HeaderRule], *, split: bool) -> tuple[list[HeaderRule], bool]:
    """The blocks that may apply at a key, and whether they all apply to every path there."""
    if not split:
        return list(rules), False
    if key.exact:
        return [rule for rule in rules if _matches(prefix, rule.pattern, key.path)], True
    found, literal = [], True
    for rule in rules:
        kind, start = _kind(rule.pattern), _literal_prefix(rule.pattern)
        if kind == "exact" or not key.path.startswith(start):
            continue  # its paths have keys of their own, or none is here
        found.append(rule)
        literal = literal and kind == "prefix"
    return found, literal


def _fold(rules: Sequence[HeaderRule]) -> list[tuple[str, str]]:
    """The headers of blocks that all apply: in order, `! Name` dropping what came before."""
    found: list[tuple[str, str]] = []
    for rule in rules:
        removed = {name.lower() for name in rule.remove}
        found = [(name, value) for name, value in found if name.lower() not in removed]
        found += rule.set
    return found


def _is_cc(name: str) -> bool:
    return name.lower() == "cache-control"


def _cache_control(found: Sequence[tuple[str, str]]) -> str | None:
    values = [value for name, value in found if _is_cc(name)]
    return values[-1] if values else None


def _header_lines(prefix: str, rules: Sequence[HeaderRule]) -> tuple[list[str], list[str]]:
    """`set` lines (every matching block, in order; `! Name` clears what earlier blocks set) and
    the `add_header` lines. Matched against the path as requested, so a rewrite or the SPA
    fallback does not change which headers apply."""
    sets: list[str] = []
    adds: list[str] = []
    earlier: list[tuple[str, str]] = []  # (header name lowered, variable)
    cache_control: list[str] = []
    # With no `! Cache-Control` and no empty value, the last matching block's value wins whatever
    # came before: set directly in its block, without a variable and an `if` of its own (each `if`
    # is a location nginx builds and merges at every reload, for every slot with rules).
    direct = not any(_is_cc(name) for rule in rules for name in rule.remove) and all(
        value for rule in rules for name, value in rule.set if _is_cc(name)
    )
    for number, rule in enumerate(rules, start=1):
        regex, _ = _regex(prefix, rule.pattern)
        body: list[str] = []
        for name in rule.remove:
            body += [f'set {var} "";' for lowered, var in earlier if lowered == name.lower()]
        for index, (name, value) in enumerate(rule.set, start=1):
            if direct and _is_cc(name):
                body.append(f'set $drophost_cache_control "{value}";')
                continue
            var = f"$drophost_h{number}_{index}"
            sets.append(f'set {var} "";')
            body.append(f'set {var} "{value}";')
            if _is_cc(name):
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


# -- redirects ---------------------------------------------------------------------------------


def _map_entries(prefix: str, rules: Sequence[Redirect]) -> tuple[dict[str, tuple[int, str]], list[Redirect]]:
    """The exact rules as map keys ($uri -> status, value), and the rules that stay regexes, in
    order. Empty maps when there are too few exact rules to be worth one."""
    if sum(1 for rule in rules if _kind(rule.source) == "exact") <= MAP_ABOVE:
        return {}, list(rules)
    entries: dict[str, tuple[int, str]] = {}
    folded: set[str] = set()
    chained: list[Redirect] = []
    # What earlier rules match: exact ones by their paths, the others by their regexes.
    taken: set[str] = set()
    patterns: list[re.Pattern[str]] = []
    for rule in rules:
        if _kind(rule.source) != "exact" or "%" in rule.source:
            chained.append(rule)
            patterns.append(_compiled(prefix, rule.source))
            continue
        twins = _twins(rule.source)
        # An earlier rule that matches a path wins there anyway (first match): no key for it.
        keys = [f"{prefix}{path}" for path in twins if path not in taken]
        keys = [key for key in keys if not any(regex.match(key) for regex in patterns)]
        taken.update(twins)
        if any(len(key) > MAX_MAP_KEY or key.lower() in folded for key in keys):
            chained.append(rule)
            continue
        for key in keys:
            entries[key] = (rule.status, _map_value(prefix, rule))
            folded.add(key.lower())
    return entries, chained


def _twins(path: str) -> tuple[str, ...]:
    """The paths an exact pattern matches: /about also matches /about/, as on Netlify."""
    return (path,) if path.endswith("/") else (path, f"{path}/")


def _map_value(prefix: str, rule: Redirect) -> str:
    if rule.status in (200, 404, 410):
        return f"{prefix}{rule.target}"
    target = rule.target if rule.target.startswith(("http://", "https://")) else f"$drophost_site_base{rule.target}"
    if "?" not in rule.target and "#" not in rule.target:
        target += "$is_args$args"
    return target


def _matches(prefix: str, pattern: str, path: str) -> bool:
    """Does a rule's pattern match this literal path (as nginx's regex would)?"""
    if _kind(pattern) == "exact" and "%" not in pattern:
        return path in _twins(pattern)
    return _compiled(prefix, pattern).match(f"{prefix}{path}") is not None


@functools.lru_cache(maxsize=4096)
def _compiled(prefix: str, pattern: str) -> re.Pattern[str]:
    return re.compile(_regex(prefix, pattern)[0])


def _may_match(pattern: str, key: str) -> bool:
    """Can a rule match a path under this prefix key? (Too many is only slower, never wrong.)"""
    start = _literal_prefix(pattern)
    return key.startswith(start) or start.startswith(key)


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
    return PLACEHOLDER.sub(lambda match: f"${groups[match.group(1)]}", target)


def _indent(lines: list[str]) -> list[str]:
    return [f"    {line}" for line in lines]


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
