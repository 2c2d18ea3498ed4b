"""Helpers for testing code that uses torch-shard-interpret (and for our own tests)."""

from ._assertions import assert_no_hooks as assert_no_hooks
from ._assertions import tsi_hooks as tsi_hooks
from ._models import TinyCNN as TinyCNN
from ._models import TinyMLP as TinyMLP
from ._models import tiny_config as tiny_config
from ._models import tiny_hf_model as tiny_hf_model
from ._models import tiny_tokenizer as tiny_tokenizer

__all__ = [
    "TinyCNN",
    "TinyMLP",
    "assert_no_hooks",
    "tiny_config",
    "tiny_hf_model",
    "tiny_tokenizer",
    "tsi_hooks",
]
