"""The embedded vision model: a small CNN trained on scikit-learn's digits, cached as safetensors.

``tsi.vision.load("digits-cnn")`` trains it on first use (deterministic seed, a few seconds on one CPU
core) and caches the weights under ``<cache>/vision/digits-cnn/`` (``model.safetensors`` + ``meta.json``,
written atomically); every later load reads the cache. ``"digits-cnn-random-labels"`` is the same network
trained on permuted labels: the model the label-randomization sanity check compares against.

Layout (modules named like a ResNet, so ``"layer4:output"`` works here as on torchvision's)::

    stem    Conv 1->16, 3x3, ReLU         [batch, 16, 8, 8]
    layer1  Conv 16->16, 3x3, ReLU        [batch, 16, 8, 8]
    layer2  Conv 16->32, 3x3, ReLU        [batch, 32, 8, 8]
    layer3  Conv 32->32, 3x3 stride 2     [batch, 32, 4, 4]
    layer4  Conv 32->64, 3x3, ReLU        [batch, 64, 4, 4]
    pool    global average                [batch, 64]
    fc      Linear 64->10                 [batch, 10]
"""

from __future__ import annotations

import json
import time

import torch
from torch import nn

from .._io import atomic_path, atomic_write
from .._progress import progress as _progress
from ..core._errors import ModelNotFoundError
from ..core._model import Model
from ._data import cache_root, digits, split

NAMES = ("digits-cnn", "digits-cnn-random-labels")
DEFAULT = NAMES[0]
"""The vision model used where none is named (``tsi vision-report``, the web app's Image tab)."""
FORMAT_VERSION = 3
SEED = 0


def _block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.ReLU())


class DigitsCNN(nn.Module):
    """A five-conv network for 8x8 grey digits (see the module docstring)."""

    def __init__(self, n_classes: int = 10):
        super().__init__()
        self.stem = _block(1, 16)
        self.layer1 = _block(16, 16)
        self.layer2 = _block(16, 32)
        self.layer3 = _block(32, 32, stride=2)
        self.layer4 = _block(32, 64)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [batch, 1, 8, 8]
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(self.pool(x).flatten(1))  # [batch, 10]


def train_digits_cnn(
    seed: int = SEED, epochs: int | None = None, random_labels: bool = False, progress: bool = True
) -> tuple[DigitsCNN, dict]:
    """Train a ``DigitsCNN`` on the fixed train split; returns the model (eval mode) and its metrics.

    On permuted labels it trains longer at a lower rate (40 epochs at 1e-3; at 3e-3 it collapses to a constant
    output, whose gradients are all zero), reaching about 24% train accuracy: it fits noise, as the
    label-randomization test needs."""
    epochs = epochs if epochs is not None else (40 if random_labels else 30)
    lr = 1e-3 if random_labels else 3e-3
    images, labels = digits()
    train, test = split(len(images), seed=0)
    gen = torch.Generator().manual_seed(seed)
    if random_labels:
        labels = labels[torch.randperm(len(labels), generator=gen)]
    torch.manual_seed(seed)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    start = time.perf_counter()
    with _progress(total=epochs, desc="digits-cnn", unit="epoch", enabled=progress) as bar:
        for _ in range(epochs):
            order = train[torch.randperm(len(train), generator=gen)]
            for i in range(0, len(order), 64):
                idx = order[i : i + 64]
                loss = nn.functional.cross_entropy(model(images[idx]), labels[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            bar.update(1)
    model.eval()
    with torch.no_grad():
        acc = (model(images[test]).argmax(-1) == labels[test]).float().mean().item()
        train_acc = (model(images[train]).argmax(-1) == labels[train]).float().mean().item()
    meta = {
        "format": FORMAT_VERSION,
        "seed": seed,
        "epochs": epochs,
        "random_labels": random_labels,
        "input_shape": [1, 1, 8, 8],
        "test_accuracy": acc,
        "train_accuracy": train_acc,
        "train_seconds": time.perf_counter() - start,
    }
    return model, meta


def load_module(name: str = "digits-cnn", progress: bool = True) -> tuple[DigitsCNN, dict]:
    """The trained ``DigitsCNN`` for ``name`` (from the cache, else trained and cached) and its metadata."""
    from safetensors.torch import load_file, save_file

    if name not in NAMES:
        raise ModelNotFoundError(f"unknown vision model {name!r}; the embedded ones are {', '.join(NAMES)}")
    folder = cache_root() / "vision" / name
    weights, meta_path = folder / "model.safetensors", folder / "meta.json"
    if weights.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("format") == FORMAT_VERSION:
            model = DigitsCNN()
            model.load_state_dict(load_file(weights))
            return model.eval(), meta
    model, meta = train_digits_cnn(random_labels=name.endswith("random-labels"), progress=progress)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(weights) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    atomic_write(meta_path, json.dumps(meta, indent=2))  # written last: the marker of a complete cache
    return model, meta


def load(name: str = "digits-cnn", progress: bool = True) -> Model:
    """The embedded vision model as a ``tsi.Model`` with canonical sites (``stem``, ``stages.{i}``, ``pool``,
    ``logits``) and raw sites for every module. ``model.meta`` has its test accuracy."""
    from ._sites import wrap

    module, meta = load_module(name, progress=progress)
    model = wrap(module)
    model.meta = meta  # type: ignore[attr-defined]
    return model
