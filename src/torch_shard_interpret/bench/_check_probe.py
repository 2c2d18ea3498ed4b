"""Linear probes on toy superposition: one feature at a time, read from the hidden activations.

For features 0..4 a ridge probe predicts the feature's value (R^2 on held-out samples) and a logistic probe
whether it fires (accuracy above the majority-class rate). The control task (shuffled labels) must stay
near zero / chance, so a probe that memorises is caught.
"""

from __future__ import annotations

TOOLS = ("probes",)
N_PROBED = 5


def checks(quick: bool) -> list[dict]:
    from ..probes import fit_probe
    from ._toy import toy_superposition

    task = toy_superposition(40, 10, 0.05, seed=0)
    n = 4000 if quick else 20_000
    x = task.sample_features(n, seed=7)
    h = task.model.hidden(x).detach()
    r2s, gains, controls = [], [], []
    for i in range(N_PROBED):
        reg = fit_probe(h, x[:, i].tolist(), task="regression", seed=i)
        r2s.append(reg.score)
        controls.append(reg.control_score)
        cls = fit_probe(h, (x[:, i] > 0).long().tolist(), task="classification", seed=i)
        gains.append(cls.score - cls.chance)
    name = "toy_superposition n=40 d=10 p=0.05"
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    return [
        {"tool": "probes", "task": name, "metric": "ridge R^2 (features 0-4)", "value": mean(r2s),
         "threshold": 0.2, "higher_is_better": True,
         "note": "superposition caps a linear read-out: interference from the other 39 features"},
        {"tool": "probes", "task": name, "metric": "control R^2 (shuffled)", "value": max(controls),
         "threshold": 0.05, "higher_is_better": False},
        {"tool": "probes", "task": name, "metric": "fires: accuracy - chance", "value": mean(gains),
         "threshold": 0.01, "higher_is_better": True},
    ]  # fmt: skip
