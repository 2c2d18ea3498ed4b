"""The one rule for everything a subcommand writes, and the atomic replacement of an output folder.

A subcommand declares each thing it writes with ``add_output`` (which also gives it ``--overwrite``) and, first
thing in ``run``, checks it with ``output_dir`` / ``output_file`` / ``output_state``, before any model loads:

- an output that exists and is not empty is refused unless ``--overwrite`` is given;
- even with ``--overwrite``, tsi never writes into or replaces a folder that holds an activation store
  (``manifest.json``), an SAE (``cfg.json`` + ``.safetensors``) or a tuned lens, nor anything the command is
  reading: every other option naming an existing path is an input, and the resolved paths are compared,
  parent and child relations included;
- a folder is never replaced when it is (or holds) the current folder, the home folder or the root.

``OutputDir.writing()`` writes a new folder into a temporary sibling and renames it into place at the end; a
replaced folder is swapped out only then, so a failure leaves the old output as it was.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

OUTPUTS = "_tsi_outputs"  # parser default: {dest: kind} of the outputs a subcommand declared
FLAGS = "_tsi_flags"  # parser default: {dest: "--flag" or "NAME"}, set by main.build_parser
PATHS = "_tsi_paths"  # parser default: the dests whose values name files or folders (inputs when they exist)
PATH_METAVARS = frozenset({"DIR", "FILE", "PATH", "TEXTFILE", "IMAGE", "MODEL_A", "MODEL_B"})
MODEL_DESTS = frozenset({"model", "model_a", "model_b"})  # a model name, or the path of a local model
MAX_REPLACED_ENTRIES = 10_000  # --overwrite replaces output folders, not whole trees of a user's files
STAGING = ".tsi-new-"  # in the name of a folder being written (a sibling of the final one)
RETIRED = ".tsi-old-"  # in the name of a replaced folder, between the swap and its removal

Kind = Literal["dir", "file", "state"]


def add_output(parser: Any, flag: str, *, kind: Kind = "dir", **kwargs: Any) -> argparse.Action:
    """``parser.add_argument(flag, **kwargs)`` for something the subcommand writes, plus ``--overwrite``.

    ``kind``: ``"dir"`` (a folder the command creates or replaces), ``"file"`` (one file, written atomically)
    or ``"state"`` (a folder the command keeps writing into in place, such as checkpoints).
    """
    action = parser.add_argument(flag, **kwargs)
    declared = dict(parser.get_default(OUTPUTS) or {})
    declared[action.dest] = kind
    parser.set_defaults(**{OUTPUTS: declared})
    if kind != "state" and "--overwrite" not in parser._option_string_actions:
        parser.add_argument(
            "--overwrite",
            action="store_true",
            help="replace an output that exists and is not empty (never a store, an SAE, a lens or an input)",
        )
    return action


def declared_outputs(parser: Any) -> dict[str, Kind]:
    """``{dest: kind}`` of the outputs declared on ``parser`` with ``add_output``."""
    return dict(parser.get_default(OUTPUTS) or {})


def record_flags(parser: Any) -> None:
    """Remember how each option of ``parser`` is spelled, for the messages (called once per subparser)."""
    actions = [a for a in parser._actions if a.dest != "help"]
    flags = {a.dest: (a.option_strings[0] if a.option_strings else str(a.metavar or a.dest)) for a in actions}
    paths = {a.dest for a in actions if a.metavar in PATH_METAVARS or a.dest in MODEL_DESTS}
    parser.set_defaults(**{FLAGS: flags, PATHS: frozenset(paths)})


# ---- what is there ---------------------------------------------------------------------------------
def protected_kind(folder: Path) -> str | None:
    """What ``folder`` holds that tsi never writes into or replaces, in words, or None."""
    from ..lens._tuned import CONFIG_FILE as LENS_CONFIG
    from ..lens._tuned import WEIGHTS_FILE as LENS_WEIGHTS
    from ..sae._io import CFG as SAE_CFG
    from ..store._manifest import MANIFEST

    try:
        if (folder / MANIFEST).is_file():
            return f"an activation store ({MANIFEST})"
        if (folder / SAE_CFG).is_file() and any(folder.glob("*.safetensors")):
            return f"an SAE ({SAE_CFG} + safetensors)"
        if (folder / LENS_CONFIG).is_file() or (folder / LENS_WEIGHTS).is_file():
            return f"a tuned lens ({LENS_CONFIG})"
    except OSError:
        return None
    return None


def _protected_within(root: Path) -> tuple[str, Path] | None:
    """The first protected folder at or under ``root``; raises ``InputError`` for a tree too big to replace."""
    from ..core import InputError

    seen = 0
    for here, dirs, files in os.walk(root):
        seen += len(dirs) + len(files)
        if seen > MAX_REPLACED_ENTRIES:
            raise InputError(
                f"{str(root)!r} holds more than {MAX_REPLACED_ENTRIES:,} files and folders; --overwrite replaces "
                "output folders only, so choose another folder or delete it yourself"
            )
        kind = protected_kind(Path(here))
        if kind is not None:
            return kind, Path(here)
    return None


def _is_empty(path: Path) -> bool:
    return path.is_dir() and next(os.scandir(path), None) is None


def _rank() -> int:
    """This process's rank under torchrun (0 otherwise): only rank 0 judges whether a folder is empty, since
    the other ranks may look after rank 0 has begun."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def _within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def inputs(args: argparse.Namespace, dest: str) -> list[tuple[str, Path]]:
    """``(flag, resolved path)`` of every other path option of ``args`` (a ``DIR``/``FILE``/``PATH`` metavar, or a
    model) that names an existing path (an input), and of every other declared output (existing or not)."""
    flags: dict[str, str] = getattr(args, FLAGS, {}) or {}
    outputs: dict[str, str] = getattr(args, OUTPUTS, {}) or {}
    paths: frozenset[str] = getattr(args, PATHS, frozenset()) or frozenset()
    found: list[tuple[str, Path]] = []
    for name, value in vars(args).items():
        if name == dest or (name not in paths and name not in outputs):
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if not isinstance(v, str) or not v.strip():
                continue
            flag = flags.get(name, f"--{name.replace('_', '-')}")
            for text in {v, v.rpartition(":")[0] or v}:  # MODEL:int8 names the model MODEL
                p = Path(text).expanduser()
                if name in outputs or p.exists():
                    found.append((flag, p.resolve()))
    return found


# ---- the checks --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutputDir:
    """A checked output folder: ``path`` as given; ``replace`` when it exists and is not empty (--overwrite)."""

    path: Path
    flag: str
    replace: bool
    stage: bool

    @contextlib.contextmanager
    def writing(self) -> Iterator[Path]:
        """Yield the folder to write into. Staged: a new temporary sibling, renamed onto ``path`` when the block
        ends (the old folder is swapped out and removed only then); on any exception it is removed and the old
        output is left as it was. Not staged: ``path`` itself (created; removed again if the block fails while
        it is still empty)."""
        final = self.path
        if not self.stage:
            created = not final.exists()
            self._make(final)
            try:
                yield final
            except BaseException:
                if created and _is_empty(final):
                    with contextlib.suppress(OSError):
                        final.rmdir()
                raise
            return
        tmp = final.parent / f".{final.name}{STAGING}{secrets.token_hex(4)}"
        self._make(tmp)
        try:
            yield tmp
            self._swap(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _make(self, folder: Path) -> None:
        from ..core import InputError

        try:
            folder.mkdir(parents=True, exist_ok=folder == self.path)
        except OSError as exc:
            raise InputError(
                f"cannot write to {self.flag} {str(self.path)!r} ({exc.strerror or exc}); choose a writable folder"
            ) from None

    def _swap(self, tmp: Path) -> None:
        from .._io import fsync_dir
        from ..core import InputError

        final = self.path
        if final.exists() and not _is_empty(final):
            if not self.replace:
                raise InputError(
                    f"{self.flag} {str(final)!r} was filled by something else while this command ran; "
                    "nothing was replaced, run it again with another folder"
                )
            hit = _protected_within(final.resolve())  # checked again: it may have changed meanwhile
            if hit is not None:
                raise InputError(_protected_message(self.flag, final, *hit))
            old = final.parent / f".{final.name}{RETIRED}{secrets.token_hex(4)}"
            os.rename(final, old)
            try:
                os.rename(tmp, final)
            except BaseException:
                os.rename(old, final)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            if final.is_dir():
                final.rmdir()
            os.rename(tmp, final)
        fsync_dir(final.parent)


def _protected_message(flag: str, path: Path, kind: str, where: Path) -> str:
    inside = "" if where == path.resolve() else f" (in {str(where)!r})"
    return (
        f"{flag} {str(path)!r} holds {kind}{inside}; tsi never replaces one, even with --overwrite, "
        "so choose another folder or delete it yourself"
    )


def _common_checks(args: argparse.Namespace, dest: str, path: Path, flag: str, what: str) -> Path:
    """The checks every kind of output shares; returns the resolved path."""
    from .._io import writable_dir_problem
    from ..core import InputError

    resolved = path.resolve()
    folder = resolved if what != "file" else resolved.parent
    problem = writable_dir_problem(folder)
    if problem is not None and problem.kind != "file":
        why = "is not a directory" if problem.kind == "not_dir" else "is a directory you cannot write to"
        raise InputError(
            f"cannot write to {flag} {str(path)!r}: {str(problem.path)!r} {why}; choose another path"
        )
    for in_flag, inp in inputs(args, dest):
        if _within(resolved, inp) or _within(inp, resolved):
            relation = "is" if inp == resolved else ("is inside" if _within(resolved, inp) else "holds")
            raise InputError(
                f"{flag} {str(path)!r} {relation} the input {in_flag} {str(inp)!r}; "
                "tsi never writes into or replaces an input, so choose another path"
            )
    for parent in [folder, *folder.parents] if what == "file" else list(resolved.parents):
        kind = protected_kind(parent)
        if kind is not None:
            raise InputError(
                f"{flag} {str(path)!r} is inside {kind} at {str(parent)!r}; tsi never writes into one, "
                "so choose a path outside it"
            )
    return resolved


def _flag(args: argparse.Namespace, dest: str) -> str:
    flags: dict[str, str] = getattr(args, FLAGS, {}) or {}
    return flags.get(dest, f"--{dest.replace('_', '-')}")


def output_dir(
    args: argparse.Namespace,
    dest: str = "out",
    *,
    path: str | os.PathLike[str] | None = None,
    in_place: bool = False,
    stage_new: bool = True,
) -> OutputDir:
    """Check the output folder of option ``dest`` (or ``path``, a default computed by the subcommand) against
    the rule above; raises ``InputError`` naming what is wrong and what to do.

    ``in_place``: the command continues what the folder holds (``tsi harvest --resume``), so a non-empty folder
    is accepted and written in place. ``stage_new=False``: a new or empty folder is written in place (a harvest
    there can be resumed), and only a replaced one is staged.
    """
    from ..core import InputError

    flag = _flag(args, dest)
    value = getattr(args, dest) if path is None else path
    p = Path(value).expanduser()
    if p.exists() and not p.is_dir():
        raise InputError(f"{flag} {str(p)!r} is a file, not a directory; give a directory path")
    resolved = _common_checks(args, dest, p, flag, "dir")
    replace = False
    if not in_place and p.is_dir() and not _is_empty(p) and _rank() == 0:
        if not getattr(args, "overwrite", False):
            raise InputError(
                f"{flag} {str(p)!r} is not empty; choose a new or empty folder, or pass --overwrite to replace it"
            )
        for guard, name in ((Path.cwd(), "the current folder"), (Path.home(), "your home folder")):
            if _within(guard.resolve(), resolved):
                raise InputError(
                    f"{flag} {str(p)!r} is or holds {name}, which --overwrite would replace; give a folder of its own"
                )
        hit = _protected_within(resolved)
        if hit is not None:
            raise InputError(_protected_message(flag, p, *hit))
        replace = True
    if replace and os.environ.get("WORLD_SIZE", "1") not in ("", "1"):
        raise InputError(
            f"{flag} {str(p)!r} is not empty, and under torchrun it cannot be replaced atomically; "
            "delete it first or choose a new folder"
        )
    return OutputDir(p, flag, replace, stage=not in_place and (replace or stage_new))


def output_file(args: argparse.Namespace, dest: str, *, suggestion: str = "out.json") -> Path | None:
    """Check the output file of option ``dest`` (None when not given); the caller writes it atomically."""
    from ..core import InputError

    value = getattr(args, dest)
    if value is None:
        return None
    flag = _flag(args, dest)
    p = Path(value).expanduser()
    if p.is_dir():
        raise InputError(f"{flag} {str(p)!r} is a folder; give a file path such as {suggestion}")
    if not p.parent.is_dir():
        raise InputError(f"{flag} {str(p)!r}: the folder {str(p.parent)!r} does not exist; create it first")
    _common_checks(args, dest, p, flag, "file")
    if p.exists() and not getattr(args, "overwrite", False):
        raise InputError(f"{flag} {str(p)!r} already exists; choose a new file name or pass --overwrite")
    return p


def output_state(args: argparse.Namespace, dest: str) -> Path | None:
    """Check a folder the command keeps writing into in place (None when not given): not a file, not an input
    or another output, not inside a store, an SAE or a lens."""
    from ..core import InputError

    value = getattr(args, dest)
    if value is None:
        return None
    flag = _flag(args, dest)
    p = Path(value).expanduser()
    if p.exists() and not p.is_dir():
        raise InputError(f"{flag} {str(p)!r} is a file, not a directory; give a directory path")
    _common_checks(args, dest, p, flag, "dir")
    kind = protected_kind(p) if p.is_dir() else None
    if kind is not None:
        raise InputError(
            f"{flag} {str(p)!r} holds {kind}; tsi never writes into one, so choose another folder"
        )
    return p
