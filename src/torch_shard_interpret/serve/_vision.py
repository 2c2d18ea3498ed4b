"""The Image tab: an uploaded PNG or JPEG explained by ``tsi.vision.report_from_bytes``.

The upload is the raw request body with ``Content-Type: image/png`` or ``image/jpeg`` (a type that no cross-site
form can send). Before any model work it is checked by its bytes: the size (413, also enforced while the body
is read), the magic bytes (415: PNG and JPEG only, whatever the header says) and the pixel count read from the
image's own header (413), each refusal one sentence naming what was wrong and what would be right. It is then
written into a fresh ``tempfile.TemporaryDirectory`` (private to this user), read back from there for the report,
and the folder is removed in ``finally``, whether the report succeeds, fails or is cancelled: nothing of the
upload outlives the request.

The vision model is separate from the language model the server was started with: an embedded name (default
``digits-cnn``, loaded on first use) or a ``tsi.Model`` / ``nn.Module`` of the caller's. Reports run one at a
time; a job is cancelled between the report's phases.
"""

from __future__ import annotations

import struct
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..vision._zoo import DEFAULT as DEFAULT_VISION_MODEL
from ._specs import RequestError

MAX_IMAGE_BYTES = 4 * 2**20
MAX_IMAGE_PIXELS = 2048 * 2048
MAX_STEPS = 512
DEFAULT_STEPS = 32
MAX_TOP_CHANNELS = 8
CONTENT_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG"}
_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"
# JPEG start-of-frame markers (they carry the size); C4, C8 and CC are other segments.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}

Progress = Callable[[float, str], None]


def _mib(n: int) -> str:
    if n < 2**20:
        return f"{n / 2**10:.0f} KiB" if n >= 2**10 else f"{n} bytes"
    return f"{n / 2**20:.1f} MiB" if n % 2**20 else f"{n // 2**20} MiB"


def size_hint(max_bytes: int) -> str:
    """What a right upload is, for the 413 the request guard sends before the body is read."""
    return f"upload a PNG or JPEG image of at most {_mib(max_bytes)} ({max_bytes:,} bytes)"


def image_size(data: bytes) -> tuple[str, int, int] | None:
    """``(kind, width, height)`` from a PNG's IHDR or a JPEG's start-of-frame segment, or None if not found."""
    if data.startswith(_PNG):
        if len(data) < 24 or data[12:16] != b"IHDR":
            return None
        width, height = struct.unpack(">II", data[16:24])
        return "PNG", width, height
    if not data.startswith(_JPEG):
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD9)):  # segments without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _SOF:
            if i + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return "JPEG", width, height
        if marker == 0xDA or length < 2:  # start of scan before any frame header: not a usable JPEG
            return None
        i += 2 + length
    return None


@dataclass(frozen=True)
class Upload:
    """An uploaded image that passed every check."""

    data: bytes
    kind: str  # "PNG" | "JPEG"
    width: int
    height: int
    name: str


def check_upload(
    data: bytes,
    content_type: str,
    name: str = "upload",
    max_bytes: int = MAX_IMAGE_BYTES,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> Upload:
    """The upload, or a ``RequestError`` (413 / 415) whose one sentence says what is wrong and what is right."""
    ctype = content_type.split(";")[0].strip().lower()
    what = "the upload" if name == "upload" else f"the upload {name!r}"
    if ctype not in CONTENT_TYPES:
        raise RequestError(
            f"send the image as the request body with Content-Type image/png or image/jpeg, not {ctype or 'none'!r}",
            415,
        )
    if len(data) > max_bytes:
        raise RequestError(f"{what} is {_mib(len(data))} ({len(data):,} bytes); {size_hint(max_bytes)}", 413)
    if not data:
        raise RequestError(f"{what} is empty; upload a PNG or JPEG image", 400)
    if not (data.startswith(_PNG) or data.startswith(_JPEG)):
        raise RequestError(
            f"{what} is not a PNG or JPEG image (its first bytes are {data[:8].hex(' ')}); upload a PNG or JPEG file",
            415,
        )
    found = image_size(data)
    if found is None:
        raise RequestError(f"{what} has no readable image header; upload a valid PNG or JPEG file", 400)
    kind, width, height = found
    if width < 1 or height < 1:
        raise RequestError(f"{what} is {width}x{height} pixels; upload an image with at least one pixel", 400)
    if width * height > max_pixels:
        raise RequestError(
            f"{what} has {width}x{height} = {width * height:,} pixels; upload an image of at most "
            f"{max_pixels:,} pixels (for example {_side(max_pixels)}x{_side(max_pixels)})",
            413,
        )
    return Upload(data, kind, width, height, name)


def _side(pixels: int) -> int:
    return int(pixels**0.5)


def _name(raw: str | None) -> str:
    """A display name from the client's ``name`` parameter: printable, at most 80 characters."""
    text = "".join(c for c in (raw or "") if c.isprintable() and c not in "/\\")[:80].strip()
    return text or "upload"


def _int(query: Mapping[str, str], key: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = query.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RequestError(f"{key!r} must be an integer between {lo} and {hi}, not {raw[:20]!r}") from None
    if not lo <= value <= hi:
        raise RequestError(f"{key!r} must be between {lo} and {hi}, not {value}")
    return value


class VisionTab:
    """The image model behind the tab, its limits, and the report of one upload."""

    def __init__(
        self,
        model: Any = DEFAULT_VISION_MODEL,
        max_bytes: int = MAX_IMAGE_BYTES,
        max_pixels: int = MAX_IMAGE_PIXELS,
    ):
        self.spec = model
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self._model: Any = None
        self._label: Any = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()  # one report at a time (each already uses every core)

    @property
    def enabled(self) -> bool:
        return self.spec is not None

    @property
    def model_name(self) -> str | None:
        if self.spec is None:
            return None
        return (
            self.spec
            if isinstance(self.spec, str)
            else type(getattr(self.spec, "module", self.spec)).__name__
        )

    def describe(self) -> dict[str, Any]:
        """``GET /api/vision``: whether the tab is on, its model and its limits."""
        return {
            "enabled": self.enabled,
            "model": self.model_name,
            "types": sorted(CONTENT_TYPES),
            "max_bytes": self.max_bytes,
            "max_pixels": self.max_pixels,
            "max_steps": MAX_STEPS,
            "default_steps": DEFAULT_STEPS,
            "note": "" if self.enabled else "this server was started without a vision model (--vision-model)",
        }

    def models(self) -> tuple[Any, Any]:
        """``(model, label model or None)``, loaded once (an embedded name trains on its first use ever)."""
        if self.spec is None:
            raise RequestError(
                "the image tab is off: start the server with --vision-model digits-cnn (or pass vision_model=)",
                409,
            )
        with self._load_lock:
            if self._model is None:
                from .. import vision
                from ..core import Model

                if isinstance(self.spec, str):
                    from ..vision._zoo import NAMES

                    if self.spec not in NAMES:
                        raise RequestError(
                            f"unknown vision model {self.spec!r}; the embedded ones are {', '.join(NAMES)}",
                            409,
                        )
                    self._model = vision.load(self.spec, progress=False)
                    if self.spec == "digits-cnn":
                        self._label = vision.load("digits-cnn-random-labels", progress=False)
                else:
                    self._model = self.spec if isinstance(self.spec, Model) else vision.wrap(self.spec)
        return self._model, self._label

    def options(self, query: Mapping[str, str]) -> dict[str, Any]:
        """Report options from the query string: ``target`` (a class), ``steps``, ``top_channels``, ``name``."""
        return {
            "target": _int(query, "target", None, 0, 1_000_000),
            "vis_steps": _int(query, "steps", DEFAULT_STEPS, 1, MAX_STEPS),
            "top_channels": _int(query, "top_channels", 4, 1, MAX_TOP_CHANNELS),
            "name": _name(query.get("name")),
        }

    def check(self, data: bytes, content_type: str, name: str) -> Upload:
        return check_upload(data, content_type, name, self.max_bytes, self.max_pixels)

    def analyse(self, upload: Upload, options: Mapping[str, Any], progress: Progress) -> dict[str, Any]:
        """The vision report of ``upload``: the page's HTML and its summary (prediction, sanity verdicts, ...)."""
        from .. import vision

        model, label_model = self.models()
        opts = dict(options)
        name = opts.pop("name", upload.name)
        phases = iter((0.1, 0.6, 0.9))

        def step(message: str) -> None:
            progress(next(phases, 0.95), f"computing {message}")

        progress(0.02, "waiting for the image model" if self._run_lock.locked() else "reading the image")
        with self._run_lock:
            tmp = tempfile.TemporaryDirectory(prefix="tsi-serve-image-")
            try:
                path = Path(tmp.name) / ("upload.png" if upload.kind == "PNG" else "upload.jpg")
                path.write_bytes(upload.data)
                html, summary = vision.report_from_bytes(
                    model, path.read_bytes(), name=name, label_model=label_model, step=step, **opts
                )
            finally:
                tmp.cleanup()
        flagged = sorted(k for k, s in summary["sanity"].items() if s.get("flagged"))
        return {
            "name": name,
            "image": {
                "type": upload.kind,
                "width": upload.width,
                "height": upload.height,
                "bytes": len(upload.data),
            },
            "model": self.model_name,
            "prediction": summary["prediction"],
            "target": summary["target"],
            "probability": round(float(summary["probabilities"][summary["prediction"]]), 5),
            "flagged": flagged,
            "summary": summary,
            "html": html,
        }
