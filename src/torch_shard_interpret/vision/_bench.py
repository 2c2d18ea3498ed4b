"""Ground-truth checks of the vision tools (the convention of ``tsi.bench``: ``checks(quick) -> rows``).

- the embedded digits CNN reaches its accuracy;
- checkerboard diagnosis flags the k3/s2 transposed-conv decoder and neither the k4/s2 one nor resize-conv;
- the sanity check flags a weight-independent edge detector and passes plain saliency;
- integrated gradients are complete (sum of attributions = f(x) - f(baseline)) for every baseline;
- feature visualisation drives a channel above every real digit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# The tools this check scores: tsi.bench.run(tools=[...]) skips it, without running it, when none is asked for.
TOOLS = ("vision",)


def _row(task: str, metric: str, value: float, threshold: float, higher: bool, note: str = "") -> dict:
    row = {"tool": "vision", "task": task, "metric": metric, "value": float(value), "threshold": float(threshold),
           "higher_is_better": higher}  # fmt: skip
    if note:
        row["note"] = note
    return row


def _edges(model, images):
    k = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])[None, None]
    return F.conv2d(images, k, padding=1).abs()


def _told_apart(boards: dict) -> float:
    """1.0 when only the k3/s2 decoder is flagged (on its one transposed conv), else 0.0."""
    ok = boards["deconv-k3s2"].flagged == ["0"] and not boards["deconv-k4s2"].flagged
    return float(ok and not boards["resize-conv"].flagged)


def checks(quick: bool = True) -> list[dict]:
    from ._cam import grad_cam
    from ._checkerboard import checkerboard
    from ._data import digits
    from ._featvis import objective_values, visualize
    from ._generators import KINDS, autoencoder, train_autoencoder
    from ._gradients import integrated_gradients, saliency
    from ._objectives import channel
    from ._result import custom
    from ._zoo import load

    rows = []
    model = load("digits-cnn", progress=False)
    random_labels = load("digits-cnn-random-labels", progress=False)
    meta: dict = getattr(model, "meta", {})
    rows.append(_row("digits-cnn", "test accuracy", meta["test_accuracy"], 0.93, True))
    images, labels = digits()
    n = 8 if quick else 64
    x, y = images[:n], labels[:n]

    boards = {k: checkerboard(autoencoder(k).decoder, input_shape=(1, 16, 8, 8)) for k in
              ("deconv-k3s2", "deconv-k4s2", "resize-conv")}  # fmt: skip
    rows.append(_row("checkerboard: ConvTranspose k3 s2 decoder", "layers flagged",
                     len(boards["deconv-k3s2"].flagged), 1, True))  # fmt: skip
    rows.append(_row("checkerboard: ConvTranspose k4 s2 decoder", "layers flagged",
                     len(boards["deconv-k4s2"].flagged), 0, False))  # fmt: skip
    rows.append(_row("checkerboard: resize-conv decoder", "layers flagged",
                     len(boards["resize-conv"].flagged), 0, False))  # fmt: skip
    if not quick:  # the same separation on decoders trained from two more seeds (about 30 s)
        for seed in (1, 2):
            told = _told_apart({k: checkerboard(train_autoencoder(k, seed=seed)[0].decoder,
                                                input_shape=(1, 16, 8, 8)) for k in KINDS})  # fmt: skip
            rows.append(
                _row(f"checkerboard: three decoders, training seed {seed}", "told apart", told, 1, True)
            )
    k3 = boards["deconv-k3s2"].layers[0].spectral["output"]
    k4 = boards["deconv-k4s2"].layers[0].spectral["output"]
    rows.append(_row("checkerboard: k3s2 vs k4s2", "stride-frequency energy ratio", k3 / k4, 2.0, True))

    edge = custom("edge detector", model, x, _edges).sanity(label_model=random_labels)
    rows.append(_row("sanity: edge detector (weight-independent)", "similarity after full randomization",
                     edge.final_similarity, 0.9, True, "must stay similar, so it is flagged"))  # fmt: skip
    sal = saliency(model, x, y).sanity(label_model=random_labels)
    rows.append(
        _row("sanity: saliency", "similarity after full randomization", sal.final_similarity, 0.5, False)
    )
    rows.append(
        _row(
            "sanity: saliency",
            "similarity under label randomization",
            float(sal.label_similarity or 0.0),
            0.5,
            False,
        )
    )
    cam = grad_cam(model, x, y, site="stages.3").sanity()
    rows.append(
        _row("sanity: Grad-CAM", "similarity after full randomization", cam.final_similarity, 0.5, False)
    )

    # Sundararajan et al. ask for attributions within 5% of f(x) - f(x'). The path through ReLU kinks converges
    # slowly: over 64 digits the worst image needs 128 steps (32 steps: 6% with a noise baseline, on a delta of 0.9)
    worst, steps = 0.0, 32 if quick else 128
    for baseline in ("black", "blur", "noise"):
        ig = integrated_gradients(model, x, y, baseline=baseline, steps=steps)
        worst = max(worst, float((ig.completeness_error.abs() / ig.delta.abs().clamp_min(1e-6)).max()))
    rows.append(_row(f"integrated gradients (black/blur/noise, {steps} steps)", "max relative completeness error",
                     worst, 0.05, False))  # fmt: skip

    obj = channel("stages.2", 12)
    vis = visualize(model, obj, steps=64 if quick else 256, seed=0, progress=False)
    best_real = float(objective_values(model, obj, images).max())
    rows.append(_row("feature visualisation stages.2 channel 12", "objective / best real digit",
                     float(vis.final[0]) / best_real, 1.0, True))  # fmt: skip
    return rows
