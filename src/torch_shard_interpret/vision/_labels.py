"""The label-randomization model of a sanity check, for any classifier (Adebayo et al. 2018, data randomization).

``random_label_model(model, images, labels)`` copies the network, re-initialises every layer that can be
(``reset_parameters``), and trains the copy on a fixed permutation of ``labels``: a model of the same
architecture that learned nothing about the images' classes. An attribution that looks the same on it
explains the images, not the labels: ``result.sanity(label_model=...)`` flags it. The user's model and the
global random state are left as they were.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F

from .._progress import progress as _progress
from ..core._errors import InputError
from ..core._model import Model
from ._common import as_model, check_images, logits_of
from ._sites import wrap


def random_label_model(
    model: Model | torch.nn.Module,
    images: torch.Tensor,
    labels: Any,
    epochs: int = 40,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = True,
) -> Model:
    """A re-initialised copy of ``model`` trained ``epochs`` times over ``images`` with permuted ``labels``
    (Adam at ``lr``); ``.meta["train_accuracy"]`` is its accuracy on the permuted labels it fitted."""
    model, images = as_model(model), check_images(images)
    y = torch.as_tensor(labels, dtype=torch.long).reshape(-1).to(images.device)
    if y.numel() != images.shape[0]:
        raise InputError(f"labels has {y.numel()} entries for {images.shape[0]} images; give one per image")
    if epochs < 1 or batch_size < 1:
        raise InputError(f"epochs and batch_size must be at least 1, not {epochs} and {batch_size}")
    gen = torch.Generator().manual_seed(seed)
    permuted = y[torch.randperm(len(y), generator=gen).to(y.device)]
    net = copy.deepcopy(model.module)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        reset = [m for m in net.modules() if callable(getattr(m, "reset_parameters", None))]
        for m in reset:
            m.reset_parameters()  # type: ignore[operator]
    if not reset:
        raise InputError("the model has no layer with reset_parameters(), so it cannot be re-initialised")
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    copy_ = wrap(net)
    with _progress(total=epochs, desc="random labels", unit="epoch", enabled=progress) as bar:
        for _ in range(epochs):
            order = torch.randperm(len(y), generator=gen).to(images.device)
            for i in range(0, len(order), batch_size):
                idx = order[i : i + batch_size]
                loss = F.cross_entropy(logits_of(copy_, images[idx]), permuted[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            bar.update(1)
    net.eval()
    with torch.no_grad():
        acc = float((logits_of(copy_, images).argmax(-1) == permuted).float().mean())
    copy_.meta = {"random_labels": True, "epochs": epochs, "lr": lr, "seed": seed, "train_accuracy": acc}  # type: ignore[attr-defined]
    return copy_
