"""Sort, search and pages for the dashboard's tables, from query parameters so they work without JavaScript (pure)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

Row = dict[str, Any]


@dataclass(frozen=True)
class Column:
    """A sortable column: its query name, and how a row sorts under it."""

    name: str
    key: Callable[[Row], Any]


@dataclass(frozen=True)
class Listing:
    """One page of a table, with what the links to other pages and orders need."""

    rows: list[Row]
    total: int  # rows before the search
    matched: int  # rows the search kept
    page: int
    pages: int
    first: int  # 1-based number of the first row shown (0 when none)
    last: int
    sort: str
    descending: bool
    search: str
    prefix: str
    params: dict[str, str]  # the page's other query parameters, kept in every link
    path: str  # the page's own address (a form's answer may have been rendered under another)

    def href(self, **changes: str | int) -> str:
        """This page's address with this list's parameters changed (the page goes back to 1 unless given)."""
        values = {k: v for k, v in self.params.items() if v}
        own = {"q": self.search, "sort": self.sort, "order": "desc" if self.descending else "asc", "page": "1"}
        own.update({k: str(v) for k, v in changes.items()})
        for key, value in own.items():
            values[self.prefix + key] = value
        if values.get(self.prefix + "page") == "1":
            del values[self.prefix + "page"]
        if not values.get(self.prefix + "q"):
            values.pop(self.prefix + "q", None)
        return self.path + "?" + urlencode(values)

    def sort_href(self, column: str) -> str:
        """A column header's link: sorts by it, or turns the order round when it already sorts."""
        descending = not self.descending if column == self.sort else False
        return self.href(sort=column, order="desc" if descending else "asc")

    def aria_sort(self, column: str) -> str:
        if column != self.sort:
            return "none"
        return "descending" if self.descending else "ascending"

    def arrow(self, column: str) -> str:
        if column != self.sort:
            return ""
        return "▼" if self.descending else "▲"

    def field(self, name: str) -> str:
        return self.prefix + name


def list_page(
    rows: Sequence[Row],
    query: Mapping[str, str],
    *,
    columns: Sequence[Column],
    searched: Callable[[Row], str],
    default_sort: str,
    default_descending: bool = False,
    per_page: int = 25,
    prefix: str = "",
    path: str,
) -> Listing:
    """Search (case-insensitive, in the text `searched` gives), sort and cut one page out of `rows`."""
    by_name = {c.name: c for c in columns}
    own = {prefix + name for name in ("q", "sort", "order", "page")}
    search = query.get(prefix + "q", "").strip()[:200]
    sort = query.get(prefix + "sort", "")
    if sort not in by_name:
        sort = default_sort
    order = query.get(prefix + "order", "")
    if order in ("asc", "desc"):
        descending = order == "desc"
    else:
        descending = default_descending and sort == default_sort
    needle = search.lower()
    kept = [r for r in rows if needle in searched(r).lower()] if needle else list(rows)
    kept.sort(key=lambda r: _sortable(by_name[sort].key(r)), reverse=descending)
    pages = max(1, -(-len(kept) // per_page))
    page = _page_number(query.get(prefix + "page", "1"), pages)
    start = (page - 1) * per_page
    shown = kept[start : start + per_page]
    return Listing(
        rows=shown,
        total=len(rows),
        matched=len(kept),
        page=page,
        pages=pages,
        first=start + 1 if shown else 0,
        last=start + len(shown),
        sort=sort,
        descending=descending,
        search=search,
        prefix=prefix,
        params={k: v for k, v in query.items() if k not in own},
        path=path,
    )


def _page_number(raw: str, pages: int) -> int:
    if not raw.isascii() or not raw.isdigit() or len(raw) > 6:
        return 1
    return min(max(1, int(raw)), pages)


def _sortable(value: Any) -> tuple[int, Any]:
    """None sorts last in either order's first pass; text sorts without regard to case."""
    if value is None:
        return (1, "")
    if isinstance(value, str):
        return (0, value.lower())
    return (0, value)


__all__ = ["Column", "Listing", "list_page"]
