"""Modular addition: the Fourier analysis finds the key frequencies, and they are all the model uses.

Rows: held-out accuracy of the grokked model; the fraction of embedding variance the found frequencies
explain (>= 0.9); held-out accuracy when the embeddings keep only those frequencies (restricted, >= 0.95);
and when they lose exactly those frequencies (excluded: must fall to near chance, <= 0.2).
"""

from __future__ import annotations

TOOLS = ("analysis.fourier",)


def restricted_accuracy(task, keys: list[int], exclude: bool = False) -> float:
    """Held-out accuracy with the token embeddings projected onto ``keys`` (``exclude``: with ``keys`` removed)."""
    import torch

    import torch_shard_interpret as tsi

    from ..analysis._fourier import project_onto, token_embeddings

    table = token_embeddings(task.model, task.p).float()  # [p, d] centred token embeddings
    kept = project_onto(keys, task.p, table)
    if exclude:
        kept = table - kept + project_onto([], task.p, table)  # remove the key frequencies, keep the mean
    delta = kept - table  # [p, d] change per token
    ids = task.inputs[~task.train_mask]
    emb = task.model.run(ids, cache="embed").cache["embed"].clone()
    emb[:, :2] += delta[ids[:, :2]].to(emb.dtype)
    with torch.no_grad():
        logits = task.model.run(ids, interventions={"embed": tsi.Set(emb)}).logits[:, -1, : task.p]
    return float((logits.argmax(-1) == task.labels[~task.train_mask]).float().mean())


def checks(quick: bool) -> list[dict]:
    from ..analysis import fourier_key_frequencies, variance_explained
    from ._modular import modular_addition

    task = modular_addition()
    keys = fourier_key_frequencies(task.model)
    name = f"modular addition p={task.p}"
    note = f"key frequencies {keys}"
    return [
        {"tool": "analysis.fourier", "task": name, "metric": "model held-out accuracy", "value": task.accuracy,
         "threshold": 0.99, "higher_is_better": True},
        {"tool": "analysis.fourier", "task": name, "metric": "embedding variance explained", "threshold": 0.9,
         "value": variance_explained(task.model, keys), "higher_is_better": True, "note": note},
        {"tool": "analysis.fourier", "task": name, "metric": "restricted accuracy (keys only)", "threshold": 0.95,
         "value": restricted_accuracy(task, keys), "higher_is_better": True, "note": note},
        {"tool": "analysis.fourier", "task": name, "metric": "excluded accuracy (keys removed)", "threshold": 0.2,
         "value": restricted_accuracy(task, keys, exclude=True), "higher_is_better": False, "note": note},
        {"tool": "analysis.fourier", "task": name, "metric": "number of key frequencies", "threshold": (task.p - 1) // 6,
         "value": float(len(keys)), "higher_is_better": False, "note": "a sparse spectrum: at most a third of the frequencies"},
    ]  # fmt: skip
