"""Modular addition (Nanda et al. 2023): a one-layer transformer that has grokked ``a + b mod p``.

``modular_addition()`` loads the weights shipped in ``bench/data/`` (made by ``bench/_modular_train.py``,
which ``train=True`` runs in-process instead, a quarter of an hour on one CPU core) into a Hugging Face
GPT-2 of one layer, wrapped as a ``tsi.Model``: the canonical sites (``embed``, ``blocks.0.attn.z``,
``blocks.0.mlp.out``...) come from the GPT-2 adapter. Truth: the embeddings are sparse in the Fourier basis
over ``Z_p`` (a few key frequencies).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..core._errors import InputError
from ..core._result import logits_of
from . import _modular_train as recipe

if TYPE_CHECKING:
    from ..core._model import Model

DATA = Path(__file__).parent / "data"


@dataclass
class ModularAddition:
    """``.model`` (a ``tsi.Model``), ``.p``, ``.accuracy`` (on the pairs held out of training)."""

    model: Model
    p: int
    accuracy: float
    inputs: torch.Tensor
    """``[p*p, 3]`` every ``[a, b, =]``."""
    labels: torch.Tensor
    """``[p*p]`` ``(a + b) % p``."""
    train_mask: torch.Tensor
    """``[p*p]`` True for the pairs the model was trained on."""

    def accuracy_with(self, interventions: dict | None = None) -> float:
        """Accuracy on the held-out pairs with ``interventions`` applied (e.g. ``{"embed": tsi.Set(...)}``)."""
        test = ~self.train_mask
        ids = self.inputs[test]
        with torch.no_grad():
            run = self.model.run(ids, interventions=interventions or {})
            logits = logits_of(run, "accuracy_with")[:, -1, : self.p]
        return float((logits.argmax(-1) == self.labels[test]).float().mean())


def modular_addition(p: int = recipe.P, *, train: bool = False) -> ModularAddition:
    """The grokked modular-addition model (``p=59`` ships; another ``p`` or ``train=True`` trains it)."""
    import torch_shard_interpret as tsi

    from ._cache import load_or_build

    if p < 3:
        raise InputError(f"p must be a modulus of at least 3, not {p}")
    shipped = DATA / f"modular_p{p}.safetensors"
    if shipped.is_file() and not train:
        from safetensors.torch import load_file

        state = load_file(str(shipped))
    else:

        def build():
            return recipe.train(p).state_dict(), {"p": p}

        state, _ = load_or_build(f"modular-p{p}-s{recipe.SEED}", build)
    module = recipe.make_model(p)
    module.load_state_dict(state)
    module.eval()
    inputs, labels, mask = recipe.dataset(p)
    model = tsi.wrap(module)
    task = ModularAddition(model, p, 0.0, inputs, labels, mask)
    task.accuracy = task.accuracy_with()
    return task
