"""The process group: start it with a timeout, always end it, and turn a lost rank into a clear error."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from ..core._errors import TsiError

T = TypeVar("T")

TIMEOUT_ENV = "TSI_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0


class DistributedError(TsiError):
    """A collective failed or timed out: another rank died, hung or ran different code."""


def timeout_seconds(value: float | str | None = None) -> float:
    """The one parser of the process-group timeout: ``value`` if given, else ``$TSI_DIST_TIMEOUT``, else 300.

    Raises ``TsiError`` (one sentence naming the setting) unless it is a finite number of seconds above 0."""
    source = "timeout" if value is not None else TIMEOUT_ENV
    raw = value if value is not None else os.environ.get(TIMEOUT_ENV)
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        raise TsiError(f"{source}={raw!r} is not a number of seconds; set it to e.g. 300") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise TsiError(f"{source}={raw!r} must be a positive, finite number of seconds, e.g. 300")
    return seconds


def default_timeout() -> float:
    """Seconds a collective may wait for the other ranks: ``$TSI_DIST_TIMEOUT``, else 300."""
    return timeout_seconds()


def group_timeout() -> float | None:
    """The timeout (seconds) of the running default process group, as its backend holds it; None without one."""
    if not is_initialized():
        return None
    from torch.distributed.distributed_c10d import _get_default_group

    group = _get_default_group()
    device = torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")
    try:
        return group._get_backend(device).options._timeout.total_seconds()  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):  # a backend that does not expose its options
        return None


def launched() -> bool:
    """True in a process started as one of several ranks (torchrun sets ``WORLD_SIZE`` > 1)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        raise TsiError(
            f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a whole number of processes"
        ) from None


def join(backend: str | None = None, timeout: float | None = None) -> bool:
    """Start the default process group (see ``init``) when this process is one of several ranks and none
    runs yet. Returns True when this call started it; the caller then ends it with ``leave(True)``."""
    if is_initialized() or not launched():
        return False
    init(backend, timeout)
    return True


def leave(started: bool, *, wait: bool = True) -> None:
    """End the process group if ``started`` (as returned by ``join``); ``wait``: after a barrier, so that no
    rank tears gloo down while another is still talking to it."""
    if not started or not is_initialized():
        return
    try:
        if wait and world_size() > 1:
            dist.barrier()
    finally:
        dist.destroy_process_group()


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def init(backend: str | None = None, timeout: float | None = None) -> None:
    """Start the default process group, unless one is already running (then do nothing).

    ``backend``: ``"nccl"`` when CUDA is available, else ``"gloo"``. ``timeout``: seconds any collective
    may wait (default ``$TSI_DIST_TIMEOUT`` or 300); past it the waiting ranks raise instead of hanging.
    Under ``torchrun`` the rank and world size come from the environment; outside it this starts a world
    of one process, so the same script also runs alone.
    """
    if is_initialized():
        return
    if not dist.is_available():
        raise DistributedError("this build of torch has no torch.distributed; install a standard torch build")
    seconds = timeout_seconds(timeout)
    cuda = torch.cuda.is_available()
    backend = backend or ("nccl" if cuda else "gloo")
    kwargs: dict = {"backend": backend, "timeout": timedelta(seconds=seconds)}
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        if backend == "nccl" and cuda:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
            kwargs["device_id"] = device
    else:  # a plain `python script.py`: a world of one, no rendezvous needed
        # HashStore is public at runtime (torch.distributed re-exports it) but missing from torch's stub exports
        kwargs.update(store=dist.HashStore(), rank=0, world_size=1)  # pyright: ignore[reportPrivateImportUsage]
    dist.init_process_group(**kwargs)


@contextmanager
def process_group(backend: str | None = None, timeout: float | None = None) -> Iterator[None]:
    """``with tsi.distributed.process_group(): ...`` starts the process group (see ``init``) and destroys it
    on the way out, whatever happened inside. A group that was already running is left alone."""
    started = not is_initialized()
    init(backend, timeout)
    try:
        yield
    finally:
        if started and is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:  # noqa: BLE001 - a group whose peers died may not shut down cleanly
                pass


def rank() -> int:
    """This process's rank (0 when no process group runs)."""
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    """How many processes take part (1 when no process group runs)."""
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    """True on rank 0: the rank that writes files and prints."""
    return rank() == 0


def shard(items: Sequence[T]) -> Sequence[T]:
    """This rank's contiguous slice of ``items`` (sizes differ by at most one; gathering in rank order
    restores the original order)."""
    n, r, w = len(items), rank(), world_size()
    start = r * (n // w) + min(r, n % w)
    return items[start : start + n // w + (1 if r < n % w else 0)]


def _timeout_s() -> float:
    live = group_timeout()
    return live if live is not None else default_timeout()


def lost_rank_error(what: str, exc: BaseException) -> DistributedError:
    """The error every rank raises when ``what`` (a collective) failed because of another rank."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DistributedError(
        f"rank {rank()} of {world_size()}: {what} failed ({detail}). Another rank has probably died, hung or "
        f"run different code; check its log. Collectives wait at most {_timeout_s():g} s (set {TIMEOUT_ENV} "
        "in seconds to change this)."
    )


@contextmanager
def collective(what: str) -> Iterator[None]:
    """Turn a communication failure inside the block into a ``DistributedError`` naming ``what``."""
    try:
        yield
    except DistributedError:
        raise
    except (dist.DistError, RuntimeError) as exc:
        raise lost_rank_error(what, exc) from exc


def barrier() -> None:
    """Wait for every rank (no-op without a process group). On gloo the error names the missing ranks."""
    if not is_initialized() or world_size() == 1:
        return
    with collective("barrier"):
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=timedelta(seconds=_timeout_s()), wait_all_ranks=True)
        else:
            dist.barrier()
