"""Reference decoders (LLaMA-style and GPT-2-style) in Flax NNX and Equinox, loading HF safetensors."""

from ._config import DecoderConfig
from ._load import EMBEDDED, build, cache_dir, from_pretrained, load, random, random_tensors, tiny_config
from ._ops import init_kv

__all__ = [
    "EMBEDDED", "DecoderConfig", "build", "cache_dir", "from_pretrained", "init_kv", "load", "random",
    "random_tensors", "tiny_config",
]  # fmt: skip
