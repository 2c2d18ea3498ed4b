"""Planted concept: the steering vector and the probe find the planted direction, and steering moves the
planted read-out (``logit(yes) - logit(no)``) the right way on neutral prompts."""

from __future__ import annotations

TOOLS = ("steering.from_contrast", "probes")
SITE = "blocks.1.resid_post"


def checks(quick: bool) -> list[dict]:
    import torch

    import torch_shard_interpret as tsi

    from ..core._result import logits_of
    from ._concept import planted_concept

    task = planted_concept()
    m, u = task.model, task.direction
    cos = lambda v: float(torch.nn.functional.cosine_similarity(v.float().flatten(), u, dim=0))  # noqa: E731
    sv = tsi.steering.SteeringVector.from_contrast(m, task.positive_texts, task.negative_texts, site=SITE)
    texts = task.positive_texts + task.negative_texts
    probe = tsi.probes.fit(
        m, texts, [1] * len(task.positive_texts) + [0] * len(task.negative_texts), sites=SITE
    )[SITE]
    w = probe.weights
    w = w[list(probe.classes).index(1)] - w[list(probe.classes).index(0)] if w.ndim == 2 else w
    neutral = task.neutral_texts[:8] if quick else task.neutral_texts

    def readout(scale: float) -> torch.Tensor:
        vals = []
        for text in neutral:
            with sv.apply(m, scale=scale):
                vals.append(task.readout(logits_of(m.run(text), "the concept check"))[0])
        return torch.stack(vals)

    up, down, base = readout(1.0), readout(-1.0), readout(0.0)
    moved = float(((up > base) & (down < base)).float().mean())
    name = "planted concept (tiny llama)"
    return [
        {"tool": "steering.from_contrast", "task": name, "metric": "cosine with planted direction",
         "value": cos(sv.vector), "threshold": 0.9, "higher_is_better": True, "note": f"site {SITE}"},
        {"tool": "steering.from_contrast", "task": name, "metric": "steering moves read-out (fraction)",
         "value": moved, "threshold": 0.95, "higher_is_better": True,
         "note": f"logit(yes)-logit(no): {float(down.mean()):+.1f} / {float(base.mean()):+.1f} / {float(up.mean()):+.1f} at scale -1/0/+1"},
        {"tool": "probes", "task": name, "metric": "probe accuracy", "value": float(probe.accuracy),
         "threshold": 0.95, "higher_is_better": True},
        {"tool": "probes", "task": name, "metric": "probe cosine with planted direction", "value": cos(w),
         "threshold": 0.5, "higher_is_better": True,
         "note": "a logistic probe on 48 separable texts in 64 dims is underdetermined; the mean difference is not"},
    ]  # fmt: skip
