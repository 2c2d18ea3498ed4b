"""One offline HTML page for one image: the prediction, attribution overlays of several methods side by side
with their sanity-check scores, Grad-CAM, feature visualisations of the top channels, and the checkerboard table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .._render import esc, fmt, img_tag, standalone
from ..core._model import Model
from ._cam import grad_cam, grad_cam_pp, occlusion
from ._checkerboard import checkerboard
from ._common import logits_of
from ._featvis import input_shape_of, visualize
from ._gradients import gradient_x_input, integrated_gradients, saliency, smoothgrad
from ._guided import guided_backprop
from ._objectives import channel
from ._picture import overlay, to_rgb, upscale


def _last_conv_site(model: Model) -> str:
    stages = [s for s in model.sites("stages.*") if s.count(".") == 1]
    return stages[-1] if stages else "layer4:output"


def build(
    model: Model,
    image: torch.Tensor,
    *,
    target: int | None = None,
    title: str = "image",
    top_channels: int = 4,
    vis_steps: int = 128,
    label_model: Model | None = None,
    step: Callable[[str], Any] | None = None,
) -> tuple[str, dict]:
    """The page's HTML and a JSON-able summary for ``image`` ``[1, C, H, W]``."""
    say = step or (lambda msg: None)
    with torch.no_grad():
        probs = logits_of(model, image).softmax(-1)[0]
    pred = int(probs.argmax())
    t = pred if target is None else int(target)
    top = probs.topk(min(3, len(probs)))
    site = _last_conv_site(model)
    say("attributions and sanity checks")
    methods = {
        "saliency": lambda: saliency(model, image, t),
        "gradient x input": lambda: gradient_x_input(model, image, t),
        "SmoothGrad": lambda: smoothgrad(model, image, t, samples=16),
        "integrated gradients": lambda: integrated_gradients(model, image, t, baseline="black"),
        "guided backprop": lambda: guided_backprop(model, image, t),
        "occlusion": lambda: occlusion(model, image, t, window=max(1, image.shape[-1] // 4)),
        f"Grad-CAM ({site})": lambda: grad_cam(model, image, t, site=site),
        f"Grad-CAM++ ({site})": lambda: grad_cam_pp(model, image, t, site=site),
    }
    cells, summary_methods = [], {}
    for name, make in methods.items():
        res = make()
        sanity = res.sanity(label_model=label_model, max_steps=4)
        pic = upscale(overlay(image[0], res.map[0]), 160)
        verdict = "FLAGGED" if sanity.flagged else "passes"
        label = "" if sanity.label_similarity is None else f"; labels {fmt(sanity.label_similarity)}"
        cells.append(
            f"<figure>{img_tag(pic, title=name)}<figcaption><b>{esc(name)}</b><br>sanity {esc(verdict)}: "
            f"score {fmt(sanity.score)} (randomized similarity {fmt(sanity.final_similarity)}{esc(label)})"
            f"</figcaption></figure>"
        )
        summary_methods[name] = sanity.to_dict()
    say("feature visualisations")
    with torch.no_grad():
        acts = model.run(image, cache=site).cache[site][0]  # [C, h, w]
    channels = acts.flatten(1).mean(1).topk(min(top_channels, acts.shape[0])).indices.tolist()
    shape = input_shape_of(model)
    vis_cells = []
    for c in channels:
        vis = visualize(model, channel(site, c), steps=vis_steps, seed=0, shape=shape, progress=False)
        vis_cells.append(
            f"<figure>{img_tag(upscale(to_rgb(vis.images[0]), 128), title=f'channel {c}')}"
            f"<figcaption>{esc(site)} channel {c}: {fmt(float(vis.final[0]))} "
            f"(this image {fmt(float(acts[c].mean()))})</figcaption></figure>"
        )
    say("checkerboard diagnosis")
    board = checkerboard(model, input_shape=tuple(image.shape))
    rows = "".join(
        f"<tr><td>{esc(k)}</td><td>{fmt(float(p))}</td></tr>"
        for p, k in zip(top.values, top.indices.tolist(), strict=True)
    )
    body = (
        f"<h1>{esc(title)}</h1>"
        f"<section><h2>Prediction</h2>{img_tag(upscale(to_rgb(image[0]), 160), title='input')}"
        f"<table><tr><th>class</th><th>probability</th></tr>{rows}</table>"
        f"<p>explaining class {t}{' (the prediction)' if t == pred else ''}</p></section>"
        f"<section><h2>Attributions</h2><p>Each map with its sanity check (Adebayo et al. 2018): the similarity "
        f"to the map of the same model with every layer re-drawn at random. A map that stays the same is FLAGGED: "
        f"it shows the image, not the model.</p><div class='grid'>{''.join(cells)}</div></section>"
        f"<section><h2>Feature visualisations: top channels of {esc(site)}</h2><div class='grid'>{''.join(vis_cells)}</div></section>"
        f"<section><h2>Checkerboard diagnosis</h2>{board.to_html()}</section>"
    )
    summary = {"prediction": pred, "target": t, "probabilities": probs.tolist(), "site": site,
               "sanity": summary_methods, "top_channels": channels, "checkerboard": board.to_dict()}  # fmt: skip
    return standalone(f"tsi vision report: {title}", body), summary


def build_from_bytes(
    model: Model, data: bytes, *, name: str = "upload", digits_style: bool | None = None, **kw
):
    """``build`` for the bytes of an uploaded image file: size and type checked first, decoded in memory, so
    nothing is written anywhere (the entry point for a web upload). Returns ``(html, summary)``."""
    from ._imagefile import decode, to_model_input

    rgb = decode(data, name)
    style = digits_style if digits_style is not None else type(model.module).__name__ == "DigitsCNN"
    image = to_model_input(rgb, input_shape_of(model), digits_style=style)
    return build(model, image, title=name, **kw)
