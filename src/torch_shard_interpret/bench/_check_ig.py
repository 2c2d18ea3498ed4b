"""Integrated gradients with its default arguments on the embedded model: completeness must hold.

``sum(attributions) = f(input) - f(baseline)`` is the one property IG promises. The default call
(``integrated_gradients(model, prompt, target=...)``, nothing else) must get within 5% on every prompt.
"""

from __future__ import annotations

TOOLS = ("attribution.ig",)
PROMPTS = (
    ("The Eiffel Tower is located in the city of", " Paris"),
    ("The capital of Germany is", " Berlin"),
    ("When Mary and John went to the store, John gave a drink to", " Mary"),
    ("One, two, three, four,", " five"),
)
THRESHOLD = 0.05


def checks(quick: bool) -> list[dict]:
    import warnings

    import torch_shard_interpret as tsi

    model = tsi.load("smollm2-135m")
    rows = []
    for prompt, target in PROMPTS[:3] if quick else PROMPTS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the row reports the failure
            res = tsi.attribution.integrated_gradients(model, prompt, target=target)
        rows.append(
            {"tool": "attribution.ig", "task": "completeness (smollm2-135m, default arguments)",
             "metric": f"relative error: {prompt[:24]}…", "value": res.relative_error, "threshold": THRESHOLD,
             "higher_is_better": False,
             "note": f"f(x) - f(x') = {res.delta:+.3f}, {res.steps} {res.method} steps, baseline {res.baseline}"}
        )  # fmt: skip
    return rows
