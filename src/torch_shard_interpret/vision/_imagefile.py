"""Reading one image file safely: checked size and type first, decoded with Pillow (PNG, JPEG, BMP, GIF)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core._errors import InputError

MAX_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 4096 * 4096
_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"BM": "BMP",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
}


def sniff(data: bytes) -> str | None:
    """The image type from the first bytes, or None when it is not one we read."""
    for magic, kind in _MAGIC.items():
        if data.startswith(magic):
            return kind
    return None


def decode(data: bytes, name: str = "the image") -> np.ndarray:
    """Bytes of a PNG/JPEG/BMP/GIF -> ``[H, W, 3]`` floats in [0, 1]; one-sentence errors otherwise."""
    if len(data) > MAX_BYTES:
        raise InputError(
            f"{name} is {len(data) / 2**20:.1f} MiB; give an image file of at most {MAX_BYTES // 2**20} MiB"
        )
    if sniff(data) is None:
        raise InputError(
            f"{name} is not a PNG, JPEG, BMP or GIF image; give an image file of one of those types"
        )
    try:
        import io

        from PIL import Image

        Image.MAX_IMAGE_PIXELS = MAX_PIXELS
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > MAX_PIXELS:
                raise InputError(f"{name} has {im.width}x{im.height} pixels; give one of at most 4096x4096")
            rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except InputError:
        raise
    except ImportError:
        raise InputError(
            "reading image files needs Pillow; pip install 'torch-shard-interpret[vision]'"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad file
        raise InputError(
            f"{name} could not be decoded as an image ({type(exc).__name__}); give a valid image file"
        ) from None
    return rgb


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """``decode`` of the file at ``path`` (checked to be a regular file first)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p} is not an image file that exists; give the path of a PNG or JPEG file")
    if p.stat().st_size > MAX_BYTES:
        raise InputError(
            f"{p} is {p.stat().st_size / 2**20:.1f} MiB; give an image file of at most {MAX_BYTES // 2**20} MiB"
        )
    return decode(p.read_bytes(), str(p))


def to_model_input(
    rgb: np.ndarray, shape: tuple[int, int, int, int], digits_style: bool = False
) -> torch.Tensor:
    """``[H, W, 3]`` in [0, 1] -> ``[1, C, h, w]`` of the model's input ``shape`` (area resize). With
    ``digits_style`` (the digits CNN: light ink on a dark ground) a light-ground image is inverted."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float()
    if shape[1] == 1:
        x = x.mean(1, keepdim=True)
    x = F.interpolate(x, size=tuple(shape[-2:]), mode="area")
    if digits_style:
        if float(x.mean()) > 0.5:
            x = 1.0 - x
        x = (x - x.min()) / (x.max() - x.min()).clamp_min(1e-6)
    return x
