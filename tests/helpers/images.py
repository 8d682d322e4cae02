"""Image files for the tests that cannot be written with Pillow alone."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_huge_png(path: Path, width: int, height: int) -> Path:
    """A valid 1-bit gray PNG of ``width`` x ``height`` black pixels, written in a blink.

    1 bit a pixel keeps the raw rows small (20000^2: 50 MB through zlib, ~50 KB on disk).
    """
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte "none" + the packed pixels
    z = zlib.compressobj(9)
    rows_per_piece = max(1, (1 << 20) // len(row))
    piece = row * rows_per_piece
    parts, left = [], height
    while left:
        n = min(left, rows_per_piece)
        parts.append(z.compress(piece if n == rows_per_piece else row * n))
        left -= n
    parts.append(z.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit gray, no interlace
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", b"".join(parts))
        + _chunk(b"IEND", b"")
    )
    return path
