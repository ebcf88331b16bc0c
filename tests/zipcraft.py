"""ZIP archives built byte by byte, good and hostile, shared by the unit and integration tests.

zipfile refuses to write many of these (duplicates warn, flags are reset, entries cannot share data),
so the hostile ones are assembled here from local headers, a central directory and an end record.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

MiB = 1024 * 1024
UTF8_FLAG = 0x800

# The archive limits the bad-input tests run with (unit: ArchiveLimits, integration: Settings),
# small so that "too many" and "too big" archives stay cheap to build and send.
LIMITS = {"max_entries": 50, "max_unpacked_bytes": 2 * MiB}


@dataclass
class Entry:
    name: str | bytes
    data: bytes = b""
    method: int = zipfile.ZIP_STORED
    flags: int = 0
    create_system: int = 3
    external_attr: int = (stat.S_IFREG | 0o644) << 16
    # Lies a hostile archive may tell in its central directory.
    declared_size: int | None = None
    crc: int | None = None
    payload: bytes | None = field(default=None, repr=False)

    @property
    def raw_name(self) -> bytes:
        return self.name if isinstance(self.name, bytes) else self.name.encode("utf-8")

    @property
    def name_flags(self) -> int:
        if isinstance(self.name, str) and not self.name.isascii():
            return self.flags | UTF8_FLAG
        return self.flags

    @property
    def compressed(self) -> bytes:
        if self.payload is not None:
            return self.payload
        if self.method == zipfile.ZIP_DEFLATED:
            packer = zlib.compressobj(9, zlib.DEFLATED, -15)
            return packer.compress(self.data) + packer.flush()
        return self.data

    @property
    def checksum(self) -> int:
        return zlib.crc32(self.data) if self.crc is None else self.crc

    @property
    def size(self) -> int:
        return len(self.data) if self.declared_size is None else self.declared_size


def local_record(entry: Entry) -> bytes:
    body = entry.compressed
    header = struct.pack(
        "<4s5H3L2H",
        b"PK\x03\x04",
        20,
        entry.name_flags,
        entry.method,
        0,
        0x21,
        entry.checksum,
        len(body),
        entry.size,
        len(entry.raw_name),
        0,
    )
    return header + entry.raw_name + body


def central_record(entry: Entry, offset: int) -> bytes:
    header = struct.pack(
        "<4s6H3L5H2L",
        b"PK\x01\x02",
        (entry.create_system << 8) | 20,
        20,
        entry.name_flags,
        entry.method,
        0,
        0x21,
        entry.checksum,
        len(entry.compressed),
        entry.size,
        len(entry.raw_name),
        0,
        0,
        0,
        0,
        entry.external_attr,
        offset,
    )
    return header + entry.raw_name


def assemble(body: bytes, central: list[bytes]) -> bytes:
    directory = b"".join(central)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(central), len(central), len(directory), len(body), 0)
    return body + directory + end


def craft_zip(*entries: Entry) -> bytes:
    """Entries one after another, each listed once in the central directory."""
    records: list[bytes] = []
    central = []
    offset = 0
    for entry in entries:
        central.append(central_record(entry, offset))
        records.append(local_record(entry))
        offset += len(records[-1])
    return assemble(b"".join(records), central)


def std_zip(files: dict[str, bytes | str], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """An ordinary archive, written by zipfile itself."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def zipinfo_zip(info: zipfile.ZipInfo, data: bytes) -> bytes:
    """One entry described by a ZipInfo (mode bits, create_system), written by zipfile."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.html", "<h1>ok</h1>")
        archive.writestr(info, data)
    return buffer.getvalue()


class _Unseekable(io.RawIOBase):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.chunks.append(bytes(data))
        return len(data)


def streamed_zip(files: dict[str, bytes]) -> bytes:
    """An archive written to a pipe: sizes and CRCs follow each entry in data descriptors."""
    sink = _Unseekable()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            with archive.open(name, "w") as handle:
                handle.write(data)
    return b"".join(sink.chunks)


# -- the hostile archives ----------------------------------------------------------------------
INDEX = Entry("index.html", b"<h1>fine</h1>")


def _corrupt_crc() -> bytes:
    data = craft_zip(INDEX, Entry("page.html", b"<p>" + b"a" * 200 + b"</p>"))
    spot = data.index(b"a" * 200)
    return data[:spot] + b"b" + data[spot + 1 :]


def _truncated() -> bytes:
    data = std_zip({"index.html": os.urandom(4000), "b.bin": os.urandom(4000)})
    return data[: len(data) // 2]


def _truncated_inside_entry() -> bytes:
    # The central directory is intact but claims more data than the file holds before it.
    return craft_zip(INDEX, Entry("big.html", b"x" * 100, payload=b"x" * 40, declared_size=100))


def _set_flag(data: bytes, signature: bytes, at: int) -> bytes:
    name = b"secret.html"
    start = 0
    while True:
        start = data.index(signature, start)
        name_at = start + (30 if signature == b"PK\x03\x04" else 46)
        if data[name_at : name_at + len(name)] == name:
            flags = struct.unpack_from("<H", data, start + at)[0] | 0x1
            return data[: start + at] + struct.pack("<H", flags) + data[start + at + 2 :]
        start += 4


def encrypted_zip() -> bytes:
    """zipfile writes a normal entry; its flag bit 0 (encrypted) is then set in both headers."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.html", "<h1>ok</h1>")
        archive.writestr(zipfile.ZipInfo("secret.html"), b"<p>secret</p>")
    data = buffer.getvalue()
    return _set_flag(_set_flag(data, b"PK\x03\x04", 6), b"PK\x01\x02", 8)


def _symlink() -> bytes:
    info = zipfile.ZipInfo("link.html")
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return zipinfo_zip(info, b"/etc/passwd")


def _device() -> bytes:
    info = zipfile.ZipInfo("fifo")
    info.create_system = 3
    info.external_attr = (stat.S_IFIFO | 0o644) << 16
    return zipinfo_zip(info, b"")


def _same_header_twice() -> bytes:
    # Two central-directory entries for one local header and its data.
    first = Entry("index.html", b"<h1>" + b"z" * 1000 + b"</h1>", method=zipfile.ZIP_DEFLATED)
    twin = Entry("other.html", first.data, method=zipfile.ZIP_DEFLATED)
    body = local_record(first)
    return assemble(body, [central_record(first, 0), central_record(twin, 0)])


def _nested_overlap() -> bytes:
    # The classic overlapping bomb: entry B's header and data lie inside entry A's (stored) data.
    inner = Entry("b.html", b"<p>" + b"q" * 2000 + b"</p>", method=zipfile.ZIP_DEFLATED)
    inner_bytes = local_record(inner)
    outer = Entry("a.html", inner_bytes)
    body = local_record(outer)
    inner_offset = 30 + len(outer.raw_name)
    return assemble(body, [central_record(outer, 0), central_record(inner, inner_offset)])


def _ratio_one_entry() -> bytes:
    return craft_zip(INDEX, Entry("zeros.bin", bytes(int(1.5 * MiB)), method=zipfile.ZIP_DEFLATED))


def _ratio_many_entries() -> bytes:
    # Each entry is under the per-entry threshold; together they expand ~800 times.
    zeros = bytes(100 * 1024)
    return craft_zip(INDEX, *(Entry(f"z{i}.bin", zeros, method=zipfile.ZIP_DEFLATED) for i in range(20)))


def _over_total() -> bytes:
    # Stored, so the ratio is 1: only the cap on the unpacked total can stop it.
    block = os.urandom(1024) * 1024
    return craft_zip(INDEX, *(Entry(f"part{i}.bin", block) for i in range(3)))


def _lying_size() -> bytes:
    # Declares 10 bytes; the data inflates to 100 KiB. zipfile stops at the declared size, the CRC fails.
    data = b"y" * (100 * 1024)
    return craft_zip(INDEX, Entry("liar.html", data, method=zipfile.ZIP_DEFLATED, declared_size=10))


def _names(*names: str | bytes) -> Callable[[], bytes]:
    def build() -> bytes:
        entries = []
        for name in names:
            text = name if isinstance(name, str) else name.decode("cp437")
            entries.append(Entry(name, b"" if text.endswith("/") else f"<p>{text!r}</p>".encode()))
        return craft_zip(*entries)

    return build


def _nul_in_local_name() -> bytes:
    # The central directory says index.html; the local header before the data says more.
    listed = Entry("index.html", b"<h1>listed</h1>")
    local = local_record(Entry(b"index.html\x00../../escape.html", listed.data))
    return assemble(local, [central_record(listed, 0)])


@dataclass(frozen=True)
class BadZip:
    id: str
    build: Callable[[], bytes]
    # A fragment the readable error message must contain (lowercase).
    says: str


BAD_ZIPS: tuple[BadZip, ...] = (
    BadZip("not-a-zip", lambda: b"<html>this is not an archive</html>\n" * 20, "not a readable zip"),
    BadZip("empty-data", lambda: b"", "not a readable zip"),
    BadZip("truncated", _truncated, "not a readable zip"),
    BadZip("truncated-entry", _truncated_inside_entry, "corrupt or truncated"),
    BadZip("corrupt-crc", _corrupt_crc, "corrupt"),
    BadZip("no-entries", lambda: assemble(b"", []), "empty"),
    BadZip("encrypted", encrypted_zip, "encrypted"),
    BadZip(
        "bzip2",
        lambda: std_zip({"index.html": "<h1>bz</h1>" * 50}, compression=zipfile.ZIP_BZIP2),
        "unsupported compression",
    ),
    BadZip(
        "lzma",
        lambda: std_zip({"index.html": "<h1>xz</h1>" * 50}, compression=zipfile.ZIP_LZMA),
        "unsupported compression",
    ),
    BadZip("dot-dot", _names("index.html", "../escape.html"), "'..'"),
    BadZip("dot-dot-inside", _names("index.html", "a/../../escape.html"), "'..'"),
    BadZip("absolute", _names("index.html", "/abs/escape.html"), "absolute"),
    BadZip("backslash", _names("index.html", "..\\escape.html"), "backslash"),
    BadZip("drive-letter", _names("index.html", "C:/escape.html"), "drive letter"),
    BadZip("drive-letter-relative", _names("index.html", "c:escape.html"), "drive letter"),
    BadZip("symlink", _symlink, "symbolic link"),
    BadZip("fifo", _device, "not a regular file"),
    BadZip("bomb-ratio-entry", _ratio_one_entry, "zip bomb"),
    BadZip("bomb-ratio-total", _ratio_many_entries, "zip bomb"),
    BadZip("bomb-total-size", _over_total, "unpacks to more than"),
    BadZip("bomb-overlap-same-header", _same_header_twice, "overlap"),
    BadZip("bomb-overlap-nested", _nested_overlap, "overlap"),
    BadZip("lying-size", _lying_size, "corrupt"),
    BadZip(
        "too-many-entries", _names(*(f"f{i}.html" for i in range(LIMITS["max_entries"] + 1))), "more than 50 entries"
    ),
    BadZip("long-component", _names("index.html", "n" * 256 + ".html"), "longer than 255 bytes"),
    BadZip("long-path", _names("index.html", "/".join(["d" * 200] * 6) + "/x.html"), "longer than 1024 bytes"),
    BadZip("deep-path", _names("index.html", "d/" * 40 + "x.html"), "nested deeper"),
    BadZip("duplicate", _names("index.html", "page.html", "page.html"), "collides"),
    BadZip("case-collision", _names("A.html", "a.html"), "collides"),
    BadZip("case-collision-folder", _names("Docs/a.html", "docs/b.html", "DOCS/a.html"), "collides"),
    BadZip("unicode-collision", _names("caf\u00e9.html", "cafe\u0301.html"), "collides"),
    BadZip("control-bell", _names("index.html", "be\x07ll.html"), "control characters"),
    BadZip("control-newline", _names("index.html", "new\nline.html"), "control characters"),
    BadZip("control-bidi", _names("index.html", "evil\u202elmth.exe"), "control characters"),
    BadZip("control-cp437-byte", _names(b"index.html", b"esc\x1bape.html"), "control characters"),
    # zipfile reads this name as "index.html": only the raw name shows the NUL and what follows it.
    BadZip("nul-in-name", _names("page.html", b"index.html\x00../../escape.html"), "control characters"),
    BadZip("nul-in-local-name", _nul_in_local_name, "control characters"),
    BadZip("nul-in-utf8-name", _names("page.html", "index.html\x00../../\u00e9.html"), "control characters"),
    BadZip(
        "invalid-utf8-name",
        lambda: craft_zip(INDEX, Entry(b"bad\xff\xfe.html", b"x", flags=UTF8_FLAG)),
        "not a readable zip",
    ),
    BadZip("file-then-folder", _names("index.html", "docs", "docs/a.html"), "inside a file"),
    BadZip("folder-then-file", _names("index.html", "docs/a.html", "docs"), "collides"),
    BadZip("folder-entry-then-file", _names("index.html", "docs/", "DOCS"), "collides"),
    BadZip("only-dotfiles", _names(".env", ".git/config"), "no files to publish"),
)
