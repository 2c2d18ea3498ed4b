"""Offline image data: scikit-learn's 8x8 digits (1,797 images, shipped inside its wheel), and the cache root.

Nothing is downloaded: ``load_digits`` reads ``datasets/data/digits.csv.gz`` from the installed package.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..core._errors import TsiError


def cache_root() -> Path:
    """``$TSI_CACHE``, else ``$XDG_CACHE_HOME/torch-shard-interpret``, else ``~/.cache/torch-shard-interpret``."""
    if os.environ.get("TSI_CACHE"):
        return Path(os.environ["TSI_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "torch-shard-interpret"


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The digits as ``images [1797, 1, 8, 8]`` in ``[0, 1]`` and ``labels [1797]`` (0-9)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise TsiError(
            "the digits data set comes with scikit-learn; install it with pip install 'torch-shard-interpret[vision]'"
        ) from None
    data: Any = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return images, torch.tensor(data.target, dtype=torch.long)


def split(n: int, seed: int = 0, test_fraction: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed train/test split of ``n`` items: ``(train_idx, test_idx)``."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = int(n * test_fraction)
    return perm[n_test:], perm[:n_test]
