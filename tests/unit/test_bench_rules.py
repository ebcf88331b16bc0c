from __future__ import annotations

from bench.rulegen import (
    HeaderBlock,
    RedirectRule,
    baseline_config,
    clean_url,
    covers,
    generate_headers,
    generate_redirects,
    headers_for,
    headers_text,
    redirects_text,
)
from bench.rules import SHAPES, comparable_headers, probe_rules, probe_site_rules, shape_text

from drophost.pipeline import siterules
from drophost.pipeline.nginxconfig import split_part
from drophost.pipeline.sitecompile import render_part

PAGES = [f"/docs/section-{n % 20:02d}/page-{n:04d}" for n in range(200)]


def test_generated_rules_have_the_issue_counts_and_the_pattern_rules_last() -> None:
    redirects = generate_redirects(PAGES)
    assert len(redirects) == 2000
    assert len(generate_headers(PAGES)) == 100
    assert "*" in redirects[-1].source and redirects[-1].target.startswith("https://")
    assert any(":" in rule.source for rule in redirects)
    assert not any(rule.source.removesuffix("/*") in PAGES for rule in redirects)


def test_generated_files_are_accepted_by_the_drophost_parser_unchanged() -> None:
    redirects = generate_redirects(PAGES)
    headers = generate_headers(PAGES)
    parsed = siterules.parse_redirects(redirects_text(redirects))
    assert [(r.source, r.target, r.status) for r in parsed] == [(r.source, r.target, r.status) for r in redirects]
    blocks = siterules.parse_headers(headers_text(headers))
    assert [(b.pattern, b.set, b.remove) for b in blocks] == [(h.pattern, h.values, h.remove) for h in headers]


def test_headers_for_applies_every_covering_block_in_order_and_removes() -> None:
    blocks = [
        HeaderBlock("/*", (("X-Frame-Options", "DENY"), ("A", "1"))),
        HeaderBlock("/docs/*", (("B", "2"),)),
        HeaderBlock("/embed/:page", (("X-Frame-Options", "SAMEORIGIN"),), ("x-frame-options",)),
    ]
    assert covers("/*", "/docs/x") and covers("/docs/*", "/docs/x") and not covers("/docs/*", "/doc")
    assert headers_for(blocks, "/docs/*") == [("X-Frame-Options", "DENY"), ("A", "1"), ("B", "2")]
    assert headers_for(blocks, "/embed/:page") == [("A", "1"), ("X-Frame-Options", "SAMEORIGIN")]


def test_baseline_config_writes_each_rule_kind_as_a_person_would() -> None:
    rules = [
        RedirectRule("/old", "/new", 301),
        RedirectRule("/guides/:page", "/docs/:page", 302),
        RedirectRule("/external/*", "https://archive.example.com/:splat", 308),
    ]
    blocks = [HeaderBlock("/*", (("X-A", "1"),)), HeaderBlock("/docs/*", (("X-B", "2"),))]
    text = baseline_config("/d/s", "/srv/root", rules, blocks)
    assert 'location = /d/s/old {\n    return 301 "/d/s/new$is_args$args";\n}' in text
    guides = 'location /d/s/guides/ {\n    try_files $uri $uri.html $uri/ =404;\n    location ~ "^/d/s/guides/([^/]+)$"'
    assert guides in text
    assert 'return 302 "/d/s/docs/$1$is_args$args";' in text
    assert 'return 308 "https://archive.example.com/$1$is_args$args";' in text
    # Server-level headers, repeated where a location has its own (add_header is not merged).
    assert text.count('add_header X-A "1";') == 2
    assert 'location /d/s/docs/ {\n    try_files $uri $uri.html $uri/ =404;\n    add_header X-A "1";\n' in text
    assert text.count("{") == text.count("}")


def test_clean_url_and_compared_headers() -> None:
    assert clean_url("docs/a/page.html") == "/docs/a/page"
    sent = {"etag": "x", "vary": "y", "x-a": "1", "location": "/n"}
    assert comparable_headers(sent) == {"x-a": "1", "location": "/n"}


def test_probe_rules_change_with_their_number_only() -> None:
    assert probe_rules("s", 1) != probe_rules("s", 2)
    assert probe_rules("s", 1) == probe_rules("s", 1)
    siterules.parse_redirects(probe_rules("s", 1)["_redirects"].decode())
    siterules.parse_headers(probe_rules("s", 1)["_headers"].decode())


def test_configuration_shapes_scale_as_their_names_say() -> None:
    slots = ["fill-00000", "fill-00010"]
    texts = {shape: shape_text(shape, slots) for shape in SHAPES}
    assert texts["none"] == shape_text("none", [])
    assert texts["today"] == tuple(
        "".join(pieces)
        for pieces in zip(*(split_part(render_part(slot, probe_site_rules(slot))) for slot in slots), strict=True)
    )
    # Rules as data: the shared locations once, and per slot 0, 1 or 2 maps of its own.
    for shape, own in (("entries", 0), ("maps-1", 1), ("maps-2", 2)):
        server, http = texts[shape]
        assert server.count("location") == texts["entries"][0].count("location")
        assert sum(
            f"$drophost_{slot.replace('-', '_')}_" in line
            for line in http.splitlines()
            for slot in slots
            if line.startswith("map ")
        ) == own * len(slots)
    assert texts["ifs"][0].count("if (") == 8 * len(slots)
