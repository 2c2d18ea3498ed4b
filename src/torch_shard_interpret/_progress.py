"""One progress bar for every long job: tqdm on a terminal, a line now and then elsewhere.

    from .._progress import progress
    with progress(total=steps, desc="SAE", unit="step", enabled=progress_flag) as bar:
        for step in range(steps):
            ...
            bar.update(1)
            bar.set_postfix_str(f"loss {loss:.3f}")

When stderr is not a terminal (CI logs, pipes, notebooks' captured output) the bar prints a plain line
(``train SAE: 120/500 step (24%), 31 s  loss 0.12``) at each further 10% of the work, or after 10 s
without one, instead of hundreds of carriage-return updates; and a last line when it closes (not when the
``with`` block it closes ends in an error).
A leaf module: it imports nothing of ours; tqdm is optional.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_LINE_EVERY_S = 10.0
_LINE_EVERY_FRACTION = 0.1


class _Silent:
    """The bar of ``enabled=False``: every call is a no-op."""

    def update(self, n: float = 1) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def set_postfix(
        self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kw: Any
    ) -> None:
        """tqdm's ``set_postfix``: ``name=value`` pairs, shown after the count."""
        self.set_postfix_str(", ".join(f"{k}={v}" for k, v in {**(ordered_dict or {}), **kw}.items()))

    def set_description(self, desc: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Lines(_Silent):
    """A bar for non-terminals: ``desc: 40/100 step (40%), 12 s  postfix`` on its own line, rarely."""

    def __init__(self, total: float | None, desc: str, unit: str, stream: Any, initial: float = 0) -> None:
        self.total, self.desc, self.unit, self.stream = total, desc, unit, stream
        self.n = float(initial)
        self.postfix = ""
        self._t0 = self._last_t = time.monotonic()
        self._last_frac = self.n / total if total else 0.0
        self._last_n = self.n  # the count of the last line (or the start): close prints only what is new
        self._closed = False

    def update(self, n: float = 1) -> None:
        self.n += n
        now = time.monotonic()
        frac = self.n / self.total if self.total else 0.0
        if now - self._last_t >= _LINE_EVERY_S or (
            self.total and frac - self._last_frac >= _LINE_EVERY_FRACTION
        ):
            self._emit(now)
            self._last_t, self._last_frac, self._last_n = now, frac, self.n

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def _emit(self, now: float) -> None:
        count = (
            f"{self.n:g}/{self.total:g} {self.unit} ({100 * self.n / self.total:.0f}%)"
            if self.total
            else f"{self.n:g} {self.unit}"
        )
        tail = f"  {self.postfix}" if self.postfix else ""
        # No stream given: the stderr of the moment, so a bar finished late (a generator closed by the
        # garbage collector) never writes to a stream that was swapped out and closed since it began.
        stream = sys.stderr if self.stream is None else self.stream
        try:
            print(f"{self.desc}: {count}, {now - self._t0:.0f} s{tail}", file=stream, flush=True)
        except (ValueError, OSError):  # a closed or broken stream: progress is never worth a failure
            pass

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.n != self._last_n:
                self._emit(time.monotonic())

    def __exit__(self, exc_type: object = None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:  # a job that failed: its error is the last word, not one more progress line
            self._closed = True


def progress(
    total: float | None = None,
    *,
    desc: str = "",
    unit: str = "it",
    enabled: bool = True,
    stream: Any = None,
    initial: float = 0,
) -> Any:
    """A bar with ``update(n)``, ``set_postfix_str(s)``, ``set_postfix(**kw)``, ``set_description(s)`` and
    ``close()``; also a context manager. ``enabled=False`` gives a silent bar; ``initial``: work already done
    (a resumed run)."""
    if not enabled:
        return _Silent()
    target = sys.stderr if stream is None else stream
    isatty = getattr(target, "isatty", None)
    if isatty is not None and isatty():
        try:
            from tqdm.auto import tqdm
        except ImportError:  # tqdm is optional (hf extra); fall back to plain lines
            pass
        else:
            return tqdm(total=total, desc=desc, unit=unit, leave=False, file=target, initial=initial)
    return _Lines(total, desc, unit, stream, initial)


def track(
    items: Iterable[T], *, total: int | None = None, desc: str = "", unit: str = "it", enabled: bool = True
) -> Iterator[T]:
    """Iterate ``items`` with a bar (``total`` defaults to ``len(items)`` when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    bar = progress(total, desc=desc, unit=unit, enabled=enabled)
    try:
        for item in items:
            yield item
            bar.update(1)
    finally:
        bar.close()
