"""Images for offline pages: a numpy array as an inline PNG ``data:`` URI (zlib only, no Pillow)."""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_bytes(image: np.ndarray) -> bytes:
    """Encode ``image`` ([H, W] grey or [H, W, 3] RGB; uint8, or floats in [0, 1]) as PNG bytes."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = (np.clip(np.nan_to_num(a.astype(np.float64)), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        colour = 0
    elif a.ndim == 3 and a.shape[2] == 3:
        colour = 2
    else:
        raise ValueError(f"png_bytes takes an [H, W] or [H, W, 3] array, not shape {tuple(a.shape)}")
    h, w = a.shape[:2]
    rows = a.reshape(h, -1)
    raw = b"".join(b"\x00" + rows[i].tobytes() for i in range(h))  # filter type 0 on every row
    header = struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 6))
        + _chunk(b"IEND", b"")
    )


def png_data_uri(image: np.ndarray) -> str:
    """``data:image/png;base64,...`` for an ``<img src>``."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def img_tag(image: np.ndarray, *, width: int | None = None, title: str = "", pixelated: bool = True) -> str:
    """An ``<img>`` element showing ``image``; small images are scaled up without smoothing."""
    from ._svg import esc

    style = "image-rendering: pixelated;" if pixelated else ""
    size = f' width="{int(width)}"' if width else ""
    return f'<img src="{png_data_uri(image)}"{size} style="{style}" alt="{esc(title)}" title="{esc(title)}">'
