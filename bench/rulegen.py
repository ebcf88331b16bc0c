"""Site rules for the rules benchmark (pure): a migrated documentation site's `_redirects` and
`_headers`, and the same rules as a person writes them in a hand-written nginx config.

The site is bench.site's: `docs/section-NN/page-NNNN.html` in 20 sections and `assets/{css,js,media}/`.
No redirect source is a file of the site, so Netlify's "a file wins over a rule that is not forced"
changes nothing for the baseline, which does not model it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

SECTIONS = 20

# The sites origin's clean URLs (a slot with rules has them by default): /x.html -> 301 /x.
_CLEAN_REDIRECTS = (
    ("((?:[^?]*/)?)index\\.html(?:\\?|$)", "$1"),
    ("([^?]*[^/?])\\.html(?:\\?|$)", "$1"),
)


@dataclass(frozen=True)
class RedirectRule:
    source: str
    target: str
    status: int = 301


@dataclass(frozen=True)
class HeaderBlock:
    pattern: str
    values: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


def clean_url(path: str) -> str:
    """'docs/a/page.html' -> '/docs/a/page' (what links on a site with clean URLs say)."""
    return "/" + path.removesuffix(".html")


def generate_redirects(pages: Sequence[str], count: int = 2000) -> list[RedirectRule]:
    """`count` rules as a migrated site has them: old URLs one by one (to its clean `pages`), then
    `:placeholder` rules, then `*` splats, the last of them to another host."""
    placeholders = [
        rule
        for n in range(SECTIONS)
        for rule in (
            RedirectRule(f"/guides/section-{n:02d}/:page", f"/docs/section-{n:02d}/:page", 301),
            RedirectRule(f"/tutorials/section-{n:02d}/:year/:page", f"/docs/section-{n:02d}/:page", 302),
        )
    ]
    splats = [RedirectRule(f"/legacy/section-{n:02d}/*", f"/docs/section-{n:02d}/:splat", 301) for n in range(SECTIONS)]
    splats += [
        RedirectRule(f"/external/{n:02d}/*", f"https://archive.example.com/{n:02d}/:splat", 308)
        for n in range(SECTIONS)
    ]
    exact_count = count - len(placeholders) - len(splats)
    if exact_count < 0 or not pages:
        raise ValueError(f"{count} redirects leave no room for the {len(placeholders) + len(splats)} pattern rules")
    exact = [
        RedirectRule(f"/archive/{2010 + n % 12}/post-{n:04d}", pages[n % len(pages)], 302 if n % 10 == 0 else 301)
        for n in range(exact_count)
    ]
    return exact + placeholders + splats


def generate_headers(pages: Sequence[str], count: int = 100) -> list[HeaderBlock]:
    """`count` blocks: security headers for every path, caching for assets, a preload per section,
    frame-able embeds (Cloudflare's `! Name`), and a few pages of their own (from `pages`)."""
    blocks = [
        HeaderBlock(
            "/*",
            (
                ("X-Frame-Options", "DENY"),
                ("X-Content-Type-Options", "nosniff"),
                ("Referrer-Policy", "strict-origin-when-cross-origin"),
                ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
                ("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
            ),
        ),
        HeaderBlock("/assets/*", (("Cache-Control", "public, max-age=31536000, immutable"),)),
        HeaderBlock("/assets/media/*", (("Access-Control-Allow-Origin", "*"),)),
    ]
    blocks += [
        HeaderBlock(f"/docs/section-{n:02d}/*", (("Link", f"</assets/css/style-{n:03d}.css>; rel=preload; as=style"),))
        for n in range(SECTIONS)
    ]
    blocks += [
        HeaderBlock(
            f"/embed/section-{n:02d}/:page",
            (("Content-Security-Policy", f"frame-ancestors https://partner-{n:02d}.example.com"),),
            ("X-Frame-Options", "Content-Security-Policy"),
        )
        for n in range(SECTIONS)
    ]
    own = count - len(blocks)
    if own < 0 or own > len(pages):
        raise ValueError(f"{count} header blocks do not fit {len(pages)} pages")
    blocks += [HeaderBlock(page, (("X-Robots-Tag", "noindex"),)) for page in pages[:own]]
    return blocks


def redirects_text(rules: Sequence[RedirectRule]) -> str:
    """A `_redirects` file (Netlify's and Cloudflare's format)."""
    lines = ["# Moved when the site left its old host."]
    lines += [f"{rule.source} {rule.target} {rule.status}" for rule in rules]
    return "\n".join(lines) + "\n"


def headers_text(blocks: Sequence[HeaderBlock]) -> str:
    """A `_headers` file: a path line, then indented `Name: value` and `! Name` lines."""
    lines: list[str] = []
    for block in blocks:
        lines.append(block.pattern)
        lines += [f"  ! {name}" for name in block.remove]
        lines += [f"  {name}: {value}" for name, value in block.values]
    return "\n".join(lines) + "\n"


def covers(pattern: str, other: str) -> bool:
    """Does a header block for `pattern` apply to every path `other` matches (as far as the
    generated patterns go: `/*`, prefixes ending in `/*`, exact paths, `:placeholder` patterns)?"""
    if pattern == other:
        return True
    return pattern.endswith("/*") and other.startswith(pattern[:-1])


def headers_for(blocks: Sequence[HeaderBlock], pattern: str) -> list[tuple[str, str]]:
    """The headers every path of `pattern` gets: each covering block in order, `! Name` removing."""
    found: list[tuple[str, str]] = []
    for block in blocks:
        if covers(block.pattern, pattern):
            removed = {name.lower() for name in block.remove}
            found = [(name, value) for name, value in found if name.lower() not in removed]
            found += block.values
    return found


def baseline_config(prefix: str, root: str, rules: Sequence[RedirectRule], blocks: Sequence[HeaderBlock]) -> str:
    """The same site in a hand-written nginx server (the lines go inside `server { }`).

    As a person writes it: the headers for every path at server level (`add_header` is inherited
    only by locations that have none of their own, so each location with its own headers repeats
    them), a prefix location per `dir/*` header block, `location =` per exact path, and the pattern
    rules as regex locations nested in the prefix location of their first segment, so a request
    elsewhere never tries them. Clean URLs: `try_files $uri $uri.html`, and /x.html -> /x.
    """
    out = [f"root {root};", "absolute_redirect off;"]
    for regex, target in _CLEAN_REDIRECTS:
        out += [f'if ($request_uri ~ "^{prefix}/{regex}") {{', f'    return 301 "{prefix}/{target}$is_args$args";', "}"]
    out += _add_headers(headers_for(blocks, "/"))
    serve = "try_files $uri $uri.html $uri/ =404;"
    out += [f"location {prefix}/ {{", f"    {serve}", "}"]
    out += [f"location = {prefix}/{name} {{ return 404; }}" for name in ("_redirects", "_headers")]
    nested: dict[str, list[str]] = {}
    for block in blocks:
        if block.pattern == "/*":
            continue
        body = [serve, *_add_headers(headers_for(blocks, block.pattern))]
        if ":" in block.pattern:
            nested.setdefault(_first_segment(block.pattern), []).append(_regex_location(prefix, block.pattern, body))
        elif block.pattern.endswith("/*"):
            out += _location(f"{prefix}{block.pattern[:-1]}", body)
        else:
            out += _location(f"= {prefix}{block.pattern}", body)
    for rule in rules:
        target = rule.target if "://" in rule.target else f"{prefix}{rule.target}"
        if "*" not in rule.source and ":" not in rule.source:
            out += _location(f"= {prefix}{rule.source}", [f'return {rule.status} "{target}$is_args$args";'])
            continue
        regex, names = _regex(prefix, rule.source)
        for number, name in enumerate(names, start=1):
            target = target.replace(f":{name}", f"${number}")
        location = _location(f'~ "{regex}"', [f'return {rule.status} "{target}$is_args$args";'])
        nested.setdefault(_first_segment(rule.source), []).append("\n".join(location))
    for segment, locations in nested.items():
        out += _location(f"{prefix}/{segment}/", [serve, *"\n".join(locations).splitlines()])
    return "".join(f"{line}\n" for line in out)


def _first_segment(pattern: str) -> str:
    return pattern.split("/")[1]


def _regex(prefix: str, pattern: str) -> tuple[str, list[str]]:
    """`/a/:b/*` -> `^<prefix>/a/([^/]+)/(.*)$` and the names of its captures ('splat' for `*`)."""
    names: list[str] = []
    pieces = []
    for segment in pattern.split("/")[1:]:
        if segment == "*":
            names.append("splat")
            pieces.append("(.*)")
        elif segment.startswith(":"):
            names.append(segment[1:])
            pieces.append("([^/]+)")
        else:
            pieces.append(segment.replace(".", "\\."))
    return f"^{prefix}/{'/'.join(pieces)}$", names


def _regex_location(prefix: str, pattern: str, body: list[str]) -> str:
    regex, _ = _regex(prefix, pattern)
    return "\n".join(_location(f'~ "{regex}"', body))


def _location(match: str, body: list[str]) -> list[str]:
    return [f"location {match} {{", *(f"    {line}" for line in body), "}"]


def _add_headers(values: Sequence[tuple[str, str]]) -> list[str]:
    return [f'add_header {name} "{value}";' for name, value in values]
