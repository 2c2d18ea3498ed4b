"""Adebayo et al. (2018) sanity checks for every text attribution method, on the embedded model.

Saliency (gradient norm), gradient x input and integrated gradients are run on SmolLM2-135M, then again
while its weights are randomized from the top block down; at full randomization each map's rank
correlation with the trained map must be below ``THRESHOLD``. A weight-independent "method" (the norm of
each token's input embedding, which randomizing the blocks cannot change until the embeddings go) is run
alongside as the control that must be caught: on the "all blocks" stage it keeps correlation 1.
"""

from __future__ import annotations

TOOLS = ("attribution.saliency", "attribution.grad_x_input", "attribution.ig")
PROMPTS = (
    "The Eiffel Tower is located in the city of",
    "When Mary and John went to the store, John gave a drink to",
)


def methods(ig_steps: int = 8) -> dict:
    import torch_shard_interpret as tsi

    def ig(model, prompt):
        return tsi.attribution.integrated_gradients(model, prompt, steps=ig_steps, tol=None).attributions

    return {
        "attribution.saliency": lambda m, p: tsi.attribution.saliency(m, p, method="grad_norm"),
        "attribution.grad_x_input": lambda m, p: tsi.attribution.saliency(m, p, method="grad_x_input"),
        "attribution.ig": ig,
    }


def embedding_norm(model, prompt):
    """A map that ignores everything after the embeddings: what the check must flag."""
    return model.run(prompt, cache="embed").cache["embed"][0].float().norm(dim=-1)


def checks(quick: bool) -> list[dict]:
    import torch_shard_interpret as tsi

    from ._sanity import THRESHOLD, cascading_randomization

    model = tsi.load("smollm2-135m")
    prompts = PROMPTS[:1] if quick else PROMPTS
    res = cascading_randomization(model, prompts, methods(8 if quick else 32))
    ctrl = cascading_randomization(model, prompts[:1], {"embedding_norm": embedding_norm})
    rows = []
    for name, corr in res.correlations.items():
        rows.append(
            {"tool": name, "task": "sanity: cascading randomization (smollm2-135m)",
             "metric": "rank corr. on random model", "value": corr[-2], "threshold": THRESHOLD,
             "higher_is_better": False,
             "note": " / ".join(f"{s} {c:.2f}" for s, c in zip(res.stages, corr, strict=True))}
        )  # fmt: skip
    rows.append(
        {"tool": "bench.sanity", "task": "sanity: cascading randomization (smollm2-135m)",
         "metric": "weight-independent map flagged", "value": float(ctrl.correlations["embedding_norm"][-2] >= THRESHOLD),
         "threshold": 1.0, "higher_is_better": True,
         "note": f"embedding-norm map keeps rank corr. {ctrl.correlations['embedding_norm'][-2]:.2f} with all blocks random"}
    )  # fmt: skip
    return rows
