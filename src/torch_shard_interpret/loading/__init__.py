"""Loading models: the embedded default model, local Hugging Face directories and Hub ids."""

from ._embedded import cache_root as cache_root
from ._load import ModelInfo as ModelInfo
from ._load import known_names as known_names
from ._load import list_models as list_models
from ._load import load as load

__all__ = ["ModelInfo", "cache_root", "known_names", "list_models", "load"]
