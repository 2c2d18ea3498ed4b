"""Real behaviour: indirect object identification (IOI, Wang et al. 2022) on the embedded SmolLM2-135M.

There is no planted truth here, so the check scores what is known about IOI circuits (full suite only; the quick
suite skips it, and ``tests/circuits/test_ioi.py`` covers it as a slow test):

- *faithfulness* (the circuit issue's metric): EAP-IG's top 1% of edges alone restore at least 80% of the clean
  ``logit(IO) - logit(S)`` against the name-swapped prompts;
- *patching heads in the circuit*: the 3 heads whose activation patching moves the logit difference most are
  nodes of that circuit (two methods agree);
- *name movers*: IOI's name-mover heads sit late and write the indirect object straight to the logits, so the
  3 heads with the largest direct effect (DLA) on ``logit(IO) - logit(S)`` must all be positive and lie in the
  second half of the layers.
"""

from __future__ import annotations

TOOLS = ("circuits", "patching.activation", "attribution.dla")
PAIRS = (
    ("When Mary and John went to the store, John gave a drink to", " Mary", " John"),
    ("When Tom and James went to the park, James gave a ball to", " Tom", " James"),
    ("When Anna and Mark went to the shop, Mark gave a book to", " Anna", " Mark"),
)
TASK = "IOI (smollm2-135m, 3 prompt pairs)"


def _swap(text: str, a: str, b: str) -> str:
    return text.replace(a, "\0").replace(b, a).replace("\0", b)


def ioi_pairs(model):
    """``(clean, corrupt, right, wrong)``: the IOI prompts, the same with the two names swapped, and the ids of
    the indirect object (the right answer) and of the subject (the wrong one), one per prompt."""
    import torch

    clean = [p for p, _, _ in PAIRS]
    corrupt = [_swap(p, a.strip(), b.strip()) for p, a, b in PAIRS]
    right = torch.tensor([model.token_id(a) for _, a, _ in PAIRS])
    wrong = torch.tensor([model.token_id(b) for _, _, b in PAIRS])
    return clean, corrupt, right, wrong


def logit_diff(right, wrong):
    """The metric ``logits[i, -1, right[i]] - logits[i, -1, wrong[i]]`` per prompt ``i``."""
    import torch

    def metric(logits):
        rows = torch.arange(logits.shape[0])
        return logits[rows, -1, right[rows]] - logits[rows, -1, wrong[rows]]

    return metric


def checks(quick: bool) -> list[dict]:
    if quick:
        return []
    import torch

    import torch_shard_interpret as tsi

    model = tsi.load("smollm2-135m")
    clean, corrupt, right, wrong = ioi_pairs(model)
    metric = logit_diff(right, wrong)
    scored = tsi.circuits.attribute(model, clean, corrupt, metric, method="eap-ig", steps=5, progress=False)
    circuit = scored.top(frac=0.01)
    faith = float(tsi.circuits.faithfulness(model, circuit, clean, corrupt, metric))
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    names = [f"a{layer}.h{h}" for layer in range(n_layers) for h in range(n_heads)]
    patched = tsi.patching.activation_patching(
        model, clean[0], corrupt[0], lambda lg: lg[:, -1, right[0]] - lg[:, -1, wrong[0]],
        sites="blocks.*.attn.z", heads=True, positions=None, progress=False,
    )  # fmt: skip
    top_patch = [names[i] for i in torch.topk(patched.effects.abs().flatten(), 3).indices.tolist()]
    in_circuit = sum(h in set(circuit.nodes) for h in top_patch) / 3
    dla = torch.stack(
        [tsi.attribution.direct_logit_attribution(model, p, target=a, baseline=b).heads for p, a, b in PAIRS]
    ).mean(0)  # [n_layers, n_heads], averaged over the prompts
    values, index = torch.topk(dla.flatten(), 3)
    movers = [(names[i], v) for i, v in zip(index.tolist(), values.tolist(), strict=True)]
    late = [
        i // n_heads >= n_layers // 2 and v > 0 for i, v in zip(index.tolist(), values.tolist(), strict=True)
    ]
    return [
        {"tool": "circuits", "task": TASK, "metric": "eap-ig top-1% faithfulness", "value": faith,
         "threshold": 0.8, "higher_is_better": True, "note": f"{len(circuit.edges)} edges"},
        {"tool": "patching.activation", "task": TASK, "metric": "top-3 patched heads in the EAP-IG circuit",
         "value": in_circuit, "threshold": 1.0, "higher_is_better": True, "note": ", ".join(top_patch)},
        {"tool": "attribution.dla", "task": TASK, "metric": "top-3 DLA heads are late positive name movers",
         "value": sum(late) / 3, "threshold": 1.0, "higher_is_better": True,
         "note": ", ".join(f"{n} {v:+.2f}" for n, v in movers)},
    ]  # fmt: skip
