"""Site rules compiled to nginx text, against case files: tests/fixtures/rules/<case>.json (the slot,
the deploy.yaml/API `site` keys, "refused") with optional <case>._redirects and <case>._headers;
<case>.conf is the expected part. To add a case, write its inputs, run the test, check the text it
prints and save it as the .conf.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drophost.errors import DrophostError
from drophost.pipeline import nginxconfig, sitecompile, siterules

CASES = Path(__file__).parent.parent / "fixtures" / "rules"


def compile_case(case: Path) -> str:
    spec = json.loads(case.read_text())
    redirects_file = case.with_suffix("._redirects")
    headers_file = case.with_suffix("._headers")
    redirects = siterules.parse_redirects(redirects_file.read_bytes().decode()) if redirects_file.exists() else ()
    headers = siterules.parse_headers(headers_file.read_bytes().decode()) if headers_file.exists() else ()
    options = siterules.parse_options(spec.get("site"), file="site")
    rules = siterules.combine(options, redirects, headers)
    return sitecompile.render_part(spec["slot"], rules, auth_file=spec.get("auth_file", ""))


def case_files() -> list[Path]:
    return sorted(CASES.glob("*.json"))


@pytest.mark.parametrize("case", case_files(), ids=lambda path: path.stem)
def test_compiled_rules_match_their_case_file(case: Path) -> None:
    spec = json.loads(case.read_text())
    expected = case.with_suffix(".conf")
    if "refused" in spec:
        with pytest.raises(DrophostError) as caught:
            compile_case(case)
        assert spec["refused"] in caught.value.message
        assert caught.value.status_code == 422
        assert not expected.exists(), "a refused case has no expected output"
        return
    text = compile_case(case)
    if not expected.exists() and not text:
        return  # nothing compiled: the slot keeps the generic location
    assert expected.exists(), f"no {expected.name}; the compiled text is:\n{text}"
    assert text == expected.read_text()


def test_every_case_file_is_used() -> None:
    stems = {p.name.split(".")[0] for p in case_files()}
    orphans = sorted(p.name for p in CASES.iterdir() if p.name.split(".")[0] not in stems)
    assert orphans == []


def test_a_bad_line_is_named_by_file_and_number() -> None:
    with pytest.raises(DrophostError) as caught:
        siterules.parse_redirects("# ok\n/a /b\n/c /d 999\n")
    assert caught.value.message.startswith("_redirects:3: status '999'")
    assert caught.value.details["line"] == 3


def test_no_user_text_can_leave_its_quotes() -> None:
    hostile = ['"', "\\", "$", "\r", "\x00", ";", "{", "}", "'"]
    for char in hostile:
        for text in (f"/a{char}b /c", f"/a /c{char}d", f"/a https://x.example/{char}x"):
            with pytest.raises(DrophostError):
                siterules.parse_redirects(text)
        for rule in ({"from": f"/a{char}", "to": "/b"}, {"from": "/a", "to": f"/b{char}\n"}):
            with pytest.raises(DrophostError):
                siterules.parse_options({"redirects": [rule]}, file="deploy.yaml")
    for char in ['"', "\\", "$", "\r", "\x00", "\x7f", "é"]:
        with pytest.raises(DrophostError):
            siterules.parse_headers(f"/a\n  X-A: a{char}b\n")


def test_options_from_the_api_come_before_the_files_rules() -> None:
    options = siterules.parse_options({"redirects": [{"from": "/a", "to": "/api"}], "spa": True}, file="site")
    files = siterules.parse_redirects("/a /file\n")
    rules = siterules.combine(options, files)
    assert [rule.target for rule in rules.redirects] == ["/api", "/file"]
    assert rules.spa and rules.clean_urls and not rules.plain


def test_many_exact_redirects_become_a_map_that_keeps_the_first_match() -> None:
    exact = "".join(f"/old/p{n} /new/p{n}\n" for n in range(sitecompile.MAP_ABOVE + 1))
    text = f"/old/* /pattern/:splat\n/first /a\n{exact}/first /b 302\n/First /c\n/old/x /never\n"
    part = sitecompile.render_part("m", siterules.combine(siterules.SiteOptions(), siterules.parse_redirects(text)))
    locations, marker, maps = part.partition(nginxconfig.MAPS_MARKER)
    assert marker and maps.startswith("m.conf,")
    server, http = nginxconfig.split_part(part)
    assert server == locations and http == maps.partition("\n")[2]
    assert '"/d/m/first" "$drophost_site_base/a$is_args$args";' in http  # the first of two rules for /first
    assert "/b" not in http
    assert "/d/m/old/p0" not in http  # /old/* comes first and matches every /old/... path
    assert '"/d/m/First"' not in http and 'if ($uri ~ "^/d/m/First/?$")' in server  # a map ignores case
    assert "if ($drophost_m_rpath != $uri)" in server
