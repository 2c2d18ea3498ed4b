"""Safe file output: atomic writes and "can this directory be written" checks.

Every file the package writes goes through ``atomic_path`` (or ``atomic_write``): the data goes to a temporary
file in the same directory, which is renamed onto the final name with ``os.replace`` only once it is complete,
so a reader sees the old file or the new one, never half of one; the temporary file is removed on any failure
(``KeyboardInterrupt`` included). The checks return *why* something cannot be written, so that each caller
raises its own error class with its own message.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal, NamedTuple


@contextlib.contextmanager
def atomic_path(
    final: str | os.PathLike[str],
    *,
    mode: int | None = 0o644,
    prefix: str | None = None,
    suffix: str = ".tmp",
    create_error: Callable[[OSError], BaseException] | None = None,
) -> Iterator[Path]:
    """Yield the path of a new, empty temporary file beside ``final``; write it in the block.

    When the block ends normally the file gets permissions ``mode`` (``None``: keep ``mkstemp``'s 0600) and
    is renamed onto ``final``; on any exception it is removed and the exception propagates. The temporary name
    is ``prefix`` (default ``.<final name>.``) + random + ``suffix``. ``create_error``: turns an ``OSError``
    from creating the temporary file into the exception to raise instead (raised ``from None``).
    """
    final = Path(final)
    try:
        fd, name = tempfile.mkstemp(
            prefix=f".{final.name}." if prefix is None else prefix, suffix=suffix, dir=final.parent
        )
    except OSError as exc:
        if create_error is None:
            raise
        raise create_error(exc) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(
    final: str | os.PathLike[str],
    data: bytes | str,
    *,
    mode: int | None = 0o644,
    prefix: str | None = None,
    suffix: str = ".tmp",
    fsync: bool = False,
    mkdir: bool = False,
    create_error: Callable[[OSError], BaseException] | None = None,
) -> Path:
    """Write ``data`` (``str``: as UTF-8 text) to ``final`` through ``atomic_path``; returns ``final`` as a Path.

    ``fsync``: flush the data to disk before the rename. ``mkdir``: create the missing parent directories
    first. The other arguments are those of ``atomic_path``.
    """
    final = Path(final)
    if mkdir:
        final.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(final, mode=mode, prefix=prefix, suffix=suffix, create_error=create_error) as tmp:
        # a mode that is not a literal makes open() an IO[Any], which takes str and bytes alike
        text = isinstance(data, str)
        with open(tmp, "w" if text else "wb", encoding="utf-8" if text else None) as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
    return final


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Flush a directory's entries (a rename in it) to disk; a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on some platforms (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class DirProblem(NamedTuple):
    """Why files cannot be created in a directory: ``kind`` and the ``path`` at fault.

    ``"file"``: the directory itself is a file (``path`` is the directory); ``"not_dir"``: its nearest
    existing ancestor is not a directory; ``"not_writable"``: that ancestor is a directory the process cannot
    create entries in (``path`` is the ancestor in both)."""

    kind: Literal["file", "not_dir", "not_writable"]
    path: Path


def nearest_existing(path: Path) -> Path:
    """``path`` itself if it exists, else its nearest existing ancestor (the root at the latest)."""
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return probe


def writable_dir_problem(path: str | os.PathLike[str]) -> DirProblem | None:
    """``None`` when directory ``path`` (which need not exist yet) can be created and written, else why not.

    Creates nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        return DirProblem("file", path)
    probe = nearest_existing(path)
    if not probe.is_dir():
        return DirProblem("not_dir", probe)
    if not os.access(probe, os.W_OK | os.X_OK):
        return DirProblem("not_writable", probe)
    return None


def slug(text: str, limit: int, fallback: str) -> str:
    """A file-system-safe name from ``text``: its lowercase words joined by dashes, at most ``limit``
    characters (whole words only); ``fallback`` when no word fits."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    out = ""
    for w in words:
        if len(out) + len(w) + 1 > limit:
            break
        out = f"{out}-{w}" if out else w
    return out or fallback
