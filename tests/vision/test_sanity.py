"""Every attribution method carries its own sanity check, which never changes the user's model."""

from __future__ import annotations

import math

import pytest
import torch

import torch_shard_interpret.vision as tv

METHODS = {
    "saliency": lambda m, x, y: tv.saliency(m, x, y),
    "gradient_x_input": lambda m, x, y: tv.gradient_x_input(m, x, y),
    "smoothgrad": lambda m, x, y: tv.smoothgrad(m, x, y, samples=4),
    "integrated_gradients": lambda m, x, y: tv.integrated_gradients(m, x, y, steps=8),
    "grad_cam": lambda m, x, y: tv.grad_cam(m, x, y, site="stages.3"),
    "grad_cam_pp": lambda m, x, y: tv.grad_cam_pp(m, x, y, site="stages.3"),
    "guided_backprop": lambda m, x, y: tv.guided_backprop(m, x, y),
    "occlusion": lambda m, x, y: tv.occlusion(m, x, y, window=3, stride=2),
}


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_reports_weight_and_label_randomization(cnn, batch, method):
    images, labels = batch
    before = {k: v.clone() for k, v in cnn.module.state_dict().items()}
    random_labels = tv.load("digits-cnn-random-labels", progress=False)
    result = METHODS[method](cnn, images[:4], labels[:4])
    report = result.sanity(label_model=random_labels, max_steps=3)
    assert report.method == method and len(report.cascade) == 3
    assert [n for n, _ in report.cascade] == [
        "layer4.0",
        "layer2.0",
        "stem.0",
    ]  # 6 layers in 3 groups, output first
    assert all(math.isfinite(s) for _, s in report.cascade) and math.isfinite(
        report.label_similarity or math.nan
    )
    assert report.flagged == (report.final_similarity >= 0.5 or (report.label_similarity or 0) >= 0.5)
    assert result.to_dict()["sanity"]["flagged"] == report.flagged
    after = cnn.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # randomized a copy, never the model


def test_randomization_changes_the_weights_of_the_copy(cnn, batch):
    images, labels = batch
    seen = []

    def spy(model, x):
        seen.append(model.module.fc.weight.detach().clone())
        return x.abs()

    report = tv.custom("spy", cnn, images[:2], spy).sanity(max_steps=2)
    assert report.label_similarity is None and "random_label_model" in report.to_dict()["notes"][0]
    assert "label randomization not run" in report.to_html()
    original, first, last = seen
    assert torch.equal(original, cnn.module.fc.weight) and not torch.equal(first, original)
    assert torch.allclose(first.std(), original.std(), rtol=0.3)  # re-drawn at the tensor's own scale
    assert torch.equal(first, last)  # the output layer stays randomized as the cascade goes down


def test_seeds_make_the_random_parts_reproducible(cnn, batch):
    images, labels = batch
    x, y = images[:3], labels[:3]
    sal = tv.saliency(cnn, x, y)
    assert sal.sanity(seed=5).cascade == sal.sanity(seed=5).cascade != sal.sanity(seed=6).cascade
    a, b = tv.smoothgrad(cnn, x, y, samples=4, seed=1), tv.smoothgrad(cnn, x, y, samples=4, seed=1)
    assert torch.equal(a.attributions, b.attributions)
    assert not torch.equal(a.attributions, tv.smoothgrad(cnn, x, y, samples=4, seed=2).attributions)
    assert torch.equal(tv.make_baseline(x, "noise", seed=3), tv.make_baseline(x, "noise", seed=3))


def test_independent_randomization_redraws_one_group_at_a_time(cnn, batch):
    images, labels = batch
    seen = []

    def spy(model, x):
        seen.append({n: p.detach().clone() for n, p in model.module.named_parameters()})
        return tv.saliency(model, x, labels[:4]).attributions

    report = tv.custom("saliency", cnn, images[:4], spy).sanity(max_steps=3, independent=True)
    original, alone = seen[0], seen[4:]  # the map, 3 cascade steps, then 3 independent ones
    assert [n for n, _ in report.independent] == [n for n, _ in report.cascade]
    changed = [{n.split(".")[0] for n in original if not torch.equal(original[n], step[n])} for step in alone]
    assert changed == [
        {"fc", "layer4"},
        {"layer3", "layer2"},
        {"layer1", "stem"},
    ]  # one group each, the rest kept
    assert all(s < 0.9 for _, s in report.independent)  # saliency moves whichever group is re-drawn
    edge = tv.custom("edges", cnn, images[:4], lambda m, x: x.abs()).sanity(max_steps=3, independent=True)
    assert all(s == pytest.approx(1.0) for _, s in edge.independent)
    assert len(edge.to_dict()["independent"]) == 3 and tv.saliency(cnn, images[:2]).sanity().independent == []
