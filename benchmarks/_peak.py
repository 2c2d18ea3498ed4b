"""Peak resident memory of this process, for benchmarks that run each case in its own subprocess (Linux)."""

from __future__ import annotations

from pathlib import Path


def rss(field: str = "VmRSS") -> int:
    """A ``/proc/self/status`` size field in bytes (``VmRSS`` now, ``VmHWM`` the peak since the last reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def reset_peak() -> int:
    """Reset ``VmHWM`` to the current resident set (``/proc/self/clear_refs``) and return that resident set."""
    Path("/proc/self/clear_refs").write_text("5")
    return rss("VmRSS")
