"""The dashboard's table pages, sort and search (web/lists.py), and chart colours (web/charts.py)."""

from __future__ import annotations

from drophost.web import charts, lists, views

ROWS = [{"name": f"site-{i:02d}", "size": i % 5 or None} for i in range(57)]
COLUMNS = (lists.Column("name", lambda r: r["name"]), lists.Column("size", lambda r: r["size"]))


def listing(query: dict[str, str], prefix: str = "") -> lists.Listing:
    return lists.list_page(
        ROWS, query, columns=COLUMNS, searched=lambda r: r["name"], default_sort="name", prefix=prefix, path="/x"
    )


def test_a_page_of_25_with_its_count_and_links_that_keep_the_other_parameters() -> None:
    first = listing({"status": "live"})
    assert [r["name"] for r in first.rows][:2] == ["site-00", "site-01"] and len(first.rows) == 25
    assert (first.first, first.last, first.matched, first.pages) == (1, 25, 57, 3)
    assert first.href(page=2) == "/x?status=live&sort=name&order=asc&page=2"
    last = listing({"page": "3"})
    assert (last.first, last.last, len(last.rows)) == (51, 57, 7)
    assert listing({"page": "99"}).page == 3 and listing({"page": "-1"}).page == 1


def test_sorting_turns_round_on_the_same_column_and_none_never_breaks_it() -> None:
    down = listing({"sort": "name", "order": "desc"})
    assert down.rows[0]["name"] == "site-56" and down.aria_sort("name") == "descending"
    assert "order=asc" in down.sort_href("name") and "order=asc" in down.sort_href("size")
    by_size = listing({"sort": "size"})
    assert by_size.rows[0]["size"] == 1 and listing({"sort": "nonsense"}).sort == "name"


def test_search_counts_what_it_kept_and_a_prefix_keeps_two_tables_apart() -> None:
    found = listing({"q": "SITE-1"})
    assert found.matched == 10 and found.total == 57
    other = listing({"dq": "site-2", "page": "2"}, prefix="d")
    assert other.matched == 10 and other.page == 1
    assert other.href(page=1) == "/x?page=2&dq=site-2&dsort=name&dorder=asc"


def test_chart_colours_never_repeat() -> None:
    for count in (1, 8, 9, 57):
        colours = charts.colours_for([f"s{i}" for i in range(count)])
        assert len(set(colours.values())) == count


def test_a_chart_axis_labels_each_value_once() -> None:
    report = {
        "from": "2026-12-01T00:00:00+00:00",
        "to": "2026-12-02T00:00:00+00:00",
        "per_day": [{"day": "2026-12-01", "slot": "a", "requests": 1, "bytes": 1}],
    }
    assert [t["text"] for t in charts.daily_bars(report, "requests")["ticks"]] == ["0", "1"]


def test_times_are_utc_for_the_page_and_its_script() -> None:
    assert views.iso("2026-12-07T08:11:03.123456-05:00") == "2026-12-07T13:11:03.123456+00:00"
    assert views.utc_label("2026-12-07T08:11:03-05:00") == "2026-12-07 13:11 UTC"
