"""Generated workloads: a deterministic static site, and ZIP archives of it."""

from __future__ import annotations

import random
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

# Shares of the file count per kind, and the share of the bytes that text files take;
# binaries (images, fonts) fill the rest, as on a typical documentation or marketing site.
_KINDS = (("html", 0.45), ("css", 0.10), ("js", 0.15), ("bin", 0.30))
_TEXT_SHARE = {"html": 0.12, "css": 0.05, "js": 0.17}
_BINARY_SUFFIXES = ("png", "jpg", "webp", "woff2")
_ZIP_DATE = (2024, 1, 1, 0, 0, 0)
_MIN_FILE_BYTES = 256


@dataclass(frozen=True)
class SiteFile:
    path: str
    data: bytes


def generate_site(seed: int, *, files: int = 1000, total_bytes: int = 26_000_000) -> list[SiteFile]:
    """A site of exactly `files` files and `total_bytes` bytes; the same seed gives the same bytes."""
    if files < len(_KINDS) or total_bytes < files * _MIN_FILE_BYTES * 4:
        raise ValueError(f"a site needs at least 4 files and {_MIN_FILE_BYTES * 4} bytes per file")
    rng = random.Random(seed)
    corpus = _corpus(rng)
    counts = _split(files, [share for _, share in _KINDS])
    counts[0] -= 1  # index.html is one of the HTML files
    budgets = {kind: int(total_bytes * _TEXT_SHARE[kind]) for kind in _TEXT_SHARE}
    budgets["bin"] = total_bytes - sum(budgets.values())
    by_kind: dict[str, list[str]] = {kind: [] for kind, _ in _KINDS}
    by_kind["html"].append("index.html")
    for (kind, _), count in zip(_KINDS, counts, strict=True):
        by_kind[kind].extend(_path(rng, kind, number) for number in range(count))
    site: list[SiteFile] = []
    for kind, paths in by_kind.items():
        sizes = _sizes(rng, len(paths), budgets[kind])
        for path, size in zip(paths, sizes, strict=True):
            site.append(SiteFile(path, _content(rng, corpus, kind, path, size)))
    site.sort(key=lambda f: f.path)
    return site


def write_folder(site: Sequence[SiteFile], folder: Path) -> Path:
    """The site as files under `folder` (made as needed); returns the folder."""
    for item in site:
        target = folder / item.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(item.data)
    return folder


def write_zip(files: Iterable[SiteFile], target: Path, *, top_folder: str = "") -> Path:
    """A ZIP like `zip -r` makes: text deflated, binaries stored, files readable by everyone."""
    with zipfile.ZipFile(target, "w") as archive:
        for item in files:
            info = zipfile.ZipInfo(f"{top_folder}/{item.path}" if top_folder else item.path, _ZIP_DATE)
            info.external_attr = 0o100644 << 16
            info.create_system = 3
            info.compress_type = zipfile.ZIP_STORED if _kind_of(item.path) == "bin" else zipfile.ZIP_DEFLATED
            archive.writestr(info, item.data)
    return target


def write_incompressible_zip(target: Path, *, seed: int, total_bytes: int, file_bytes: int = 1 << 20) -> Path:
    """A stored ZIP of random bytes (plus an index.html), written file by file, never whole in memory."""
    rng = random.Random(seed)
    with zipfile.ZipFile(target, "w") as archive:
        index = zipfile.ZipInfo("index.html", _ZIP_DATE)
        index.external_attr = 0o100644 << 16
        archive.writestr(index, b"<!doctype html><title>big</title><p>big</p>\n")
        left, number = total_bytes, 0
        while left > 0:
            size = min(file_bytes, left)
            info = zipfile.ZipInfo(f"blobs/{number:05d}.bin", _ZIP_DATE)
            info.external_attr = 0o100644 << 16
            archive.writestr(info, rng.randbytes(size), compress_type=zipfile.ZIP_STORED)
            left -= size
            number += 1
    return target


def _split(total: int, shares: list[float]) -> list[int]:
    counts = [int(total * share) for share in shares]
    counts[0] += total - sum(counts)
    return counts


def _sizes(rng: random.Random, count: int, budget: int) -> list[int]:
    """`count` sizes, spread like real files (a few large, many small), summing to `budget`."""
    weights = [rng.lognormvariate(0, 0.8) for _ in range(count)]
    scale = budget / sum(weights)
    sizes = [max(_MIN_FILE_BYTES, int(w * scale)) for w in weights]
    sizes[-1] += budget - sum(sizes)
    if sizes[-1] < _MIN_FILE_BYTES:
        raise ValueError("the byte budget is too small for the file count")
    return sizes


def _corpus(rng: random.Random) -> str:
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    words = ["".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(3000)]
    text = " ".join(rng.choices(words, k=200_000))
    return text + " " + text  # read with wrap-around: a slice from any offset in the first half


def _path(rng: random.Random, kind: str, number: int) -> str:
    if kind == "html":
        return f"docs/section-{number % 20:02d}/page-{number:04d}.html"
    if kind == "css":
        return f"assets/css/style-{number:03d}.css"
    if kind == "js":
        return f"assets/js/chunk-{number:03d}.js"
    return f"assets/media/file-{number:03d}.{rng.choice(_BINARY_SUFFIXES)}"


def _kind_of(path: str) -> str:
    suffix = path.rsplit(".", 1)[-1]
    return suffix if suffix in _TEXT_SHARE else "bin"


def _content(rng: random.Random, corpus: str, kind: str, path: str, size: int) -> bytes:
    if kind == "bin":
        return rng.randbytes(size)
    if kind == "html":
        head = f"<!doctype html>\n<html lang=en><head><meta charset=utf-8><title>{path}</title></head><body><p>"
        tail = "</p></body></html>\n"
    elif kind == "css":
        head, tail = f'/* {path} */\n.c {{ content: "', '"; }\n'
    else:
        head, tail = f'// {path}\nexport const text = "', '";\n'
    room = max(size - len(head) - len(tail), 0)
    if room > len(corpus) // 2:
        raise ValueError(f"{path}: {size} bytes is more text than the corpus holds")
    start = rng.randrange(len(corpus) // 2)
    return (head + corpus[start : start + room] + tail).encode()[:size]
