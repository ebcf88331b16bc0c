"""Plain ZIP archives built with zipfile (tests/zipcraft.py builds the ones zipfile will not write)."""

from __future__ import annotations

import io
import zipfile


def make_zip(files: dict[str, bytes | str], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()
