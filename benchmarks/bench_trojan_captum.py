"""Trojan trigger recovery, side by side: tsi saliency and IG vs captum, on the same backdoored models and inputs.

Issue 12 asks that captum's saliency and IG be scored on the same trojan task as ours (``tsi.bench.trojan``):

- ``lm``: the 2-layer LLaMA whose trigger token forces the target. For each triggered input (clean label not the
  target), every method attributes ``logit(target)`` at the last position to the input embeddings, one score per
  token (summed over the embedding width), and the trigger's rank among the 12 positions is recorded. Score: the
  fraction of inputs where the trigger ranks first (target >= 0.9).
- ``digits``: the CNN with a 2x2 bright patch as the trigger. Score: the fraction of triggered digits whose top
  pixel lies in the patch.

captum does not install beside the project's torch build (it is no dependency); install it into a folder of its
own and put that on the path for this script only:

    pip install --target /tmp/captum --no-deps captum
    PYTHONPATH=src:/tmp/captum python benchmarks/bench_trojan_captum.py [--n 40]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from torch_shard_interpret.bench import trojan
from torch_shard_interpret.bench._trojan import digits_attribution_hits, lm_attribution_ranks


def _top1(ranks: list[int]) -> float:
    return sum(r == 1 for r in ranks) / max(1, len(ranks))


def captum_lm(task, n: int) -> dict[str, float]:
    """captum Saliency, InputXGradient and IntegratedGradients (zero baseline, its default 50 steps) on the LM."""
    from captum.attr import InputXGradient, IntegratedGradients, Saliency

    module = task.model.module
    embed = module.get_input_embeddings()

    def forward(inputs_embeds):
        return module(inputs_embeds=inputs_embeds).logits[:, -1]

    methods = {"saliency": Saliency(forward), "input_x_gradient": InputXGradient(forward)}
    methods["ig"] = IntegratedGradients(forward)
    keep = (task.clean_labels != task.target).nonzero().flatten()[:n]
    ranks: dict[str, list[int]] = {name: [] for name in methods}
    for i in keep.tolist():
        with torch.no_grad():
            x = embed(task.triggered_inputs[i : i + 1])
        p = int(task.trigger_positions[i])
        for name, method in methods.items():
            attr = method.attribute(x.clone().requires_grad_(True), target=task.target)
            scores = attr[0].sum(-1)  # one score per token; Saliency's is already |grad|
            ranks[name].append(int((scores > scores[p]).sum()) + 1)
    return {name: _top1(r) for name, r in ranks.items()}


def captum_digits(task, n: int) -> dict[str, float]:
    """captum Saliency (|grad|), InputXGradient and IG (black baseline, 50 steps): top pixel in the patch."""
    from captum.attr import InputXGradient, IntegratedGradients, Saliency

    module = task.model.module
    x = task.triggered_inputs[:n]
    mask = task.trigger.flatten()
    out = {}
    for name, method in (
        ("saliency", Saliency(module)),
        ("input_x_gradient", InputXGradient(module)),
        ("ig", IntegratedGradients(module)),
    ):
        attr = method.attribute(x.clone().requires_grad_(True), target=task.target)
        out[name] = float(mask[attr.flatten(1).argmax(1)].float().mean())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--n", type=int, default=40, help="triggered inputs scored (LM; the digits use 4x as many)"
    )
    args = ap.parse_args()
    torch.manual_seed(0)
    lm, dg = trojan("lm", progress=False), trojan("digits", progress=False)
    start = time.perf_counter()
    ours = lm_attribution_ranks(lm, args.n)
    rows = {
        "lm tsi saliency (grad x input)": _top1(ours["saliency"]),
        "lm tsi ig (defaults)": _top1(ours["ig"]),
        "lm tsi ig (clean input as baseline)": _top1(ours["ig_counterfactual"]),
    }
    rows.update({f"lm captum {k}": v for k, v in captum_lm(lm, args.n).items()})
    rows.update({f"digits tsi {k}": v for k, v in digits_attribution_hits(dg, 4 * args.n).items()})
    rows.update({f"digits captum {k}": v for k, v in captum_digits(dg, 4 * args.n).items()})
    import captum

    print(json.dumps({"captum": captum.__version__, "torch": torch.__version__, "n_lm": args.n,
                      "seconds": round(time.perf_counter() - start, 1), "top1_fraction": rows}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
