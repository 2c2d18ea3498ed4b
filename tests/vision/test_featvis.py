"""Feature visualisation: far above random and dataset-mean images, reproducible, objectives compose."""

from __future__ import annotations

import json

import pytest
import torch

import torch_shard_interpret as tsi
import torch_shard_interpret.vision as tv
from torch_shard_interpret.vision._featvis import objective_values


@pytest.mark.parametrize("param", ["fft", "pixel"])
def test_visualize_beats_random_and_mean_images(cnn, digits_data, param):
    images, _ = digits_data
    obj = tv.channel("layer3:output", 12)
    vis = tv.visualize(cnn, obj, steps=96, seed=0, param=param, progress=False)
    assert vis.images.shape == (1, 1, 8, 8) and 0 <= vis.images.min() and vis.images.max() <= 1
    assert vis.history.shape == (96,) and vis.history[-10:].mean() > vis.history[:10].mean()
    random = objective_values(cnn, obj, torch.rand(32, 1, 8, 8)).max()
    mean = objective_values(cnn, obj, images.mean(0, keepdim=True))[0]
    assert vis.final[0] > 2 * max(random, mean)
    assert vis.final[0] > objective_values(cnn, obj, images).max()  # beyond every real digit too


def test_same_seed_same_image_other_seed_other_image(cnn):
    obj = tv.channel("stages.3", 7)
    a = tv.visualize(cnn, obj, steps=20, seed=3, progress=False)
    b = tv.visualize(cnn, obj, steps=20, seed=3, progress=False)
    c = tv.visualize(cnn, obj, steps=20, seed=4, progress=False)
    assert torch.equal(a.images, b.images) and torch.equal(a.history, b.history)
    assert not torch.equal(a.images, c.images)


def test_objectives_compose_direction_and_diversity(cnn):
    vec = torch.zeros(64)
    vec[5] = 1.0
    acts = {"stages.3": torch.randn(4, 64, 4, 4)}
    assert torch.allclose(tv.direction("stages.3", vec)(acts), tv.channel("stages.3", 5)(acts))
    combo = 2 * tv.channel("stages.3", 5) - tv.channel("stages.3", 6)
    assert torch.allclose(
        combo(acts), 2 * acts["stages.3"][:, 5].mean((1, 2)) - acts["stages.3"][:, 6].mean((1, 2))
    )
    assert tv.neuron("stages.3", 5)(acts).shape == (4,)
    same = {"s": torch.ones(3, 8, 4, 4)}
    assert torch.allclose(tv.diversity("s")(same), -torch.ones(3))
    vis = tv.visualize(cnn, tv.channel("stages.3", 5) + 0.5 * tv.diversity("stages.3"), steps=24, batch=3,
                       transforms=None, progress=False)  # fmt: skip
    assert vis.images.shape == (3, 1, 8, 8) and not torch.allclose(vis.images[0], vis.images[1])
    with pytest.raises(tsi.InputError, match="channels"):
        tv.visualize(cnn, tv.channel("stages.3", 99), steps=2, progress=False)


def test_dataset_examples_whole_images_and_crops(cnn, digits_data):
    images, _ = digits_data
    obj = tv.channel("stages.2", 3)
    ex = tv.dataset_examples(cnn, obj, images[:300], k=5)
    scores = objective_values(cnn, obj, images[:300])
    assert torch.equal(ex.indices, scores.topk(5).indices) and ex.images.shape == (5, 1, 8, 8)
    crops = tv.dataset_examples(cnn, tv.neuron("stages.2", 3), images[:50], k=3, crop=4)
    assert crops.images.shape == (3, 1, 4, 4) and (crops.boxes[:, 2:] == 4).all()
    assert json.loads(json.dumps(ex.to_dict()))["indices"] == ex.indices.tolist()
    assert ex.to_html().count("<img") == 5
    vis = tv.visualize(cnn, obj, steps=4, progress=False)
    assert "<svg" in vis.to_html() and len(json.loads(json.dumps(vis.to_dict()))["history"]) == 4


def test_best_crop_is_the_best_window_and_normalize_reaches_the_model(cnn, digits_data):
    images, _ = digits_data
    x = images[:20]
    obj = tv.neuron("stages.2", 3)
    best = tv.dataset_examples(cnn, obj, x, k=1, crop=4)
    i, (top, left, h, w) = int(best.indices[0]), best.boxes[0].tolist()
    assert torch.equal(best.images[0], x[i, :, top : top + h, left : left + w])
    scores = []
    for n in range(len(x)):  # every window of every image, filled with the image mean elsewhere, by hand
        for r in range(0, 5, 2):
            for c in range(0, 5, 2):
                y = x[n : n + 1].mean().expand(1, 1, 8, 8).clone()
                y[..., r : r + 4, c : c + 4] = x[n : n + 1, :, r : r + 4, c : c + 4]
                scores.append(float(objective_values(cnn, obj, y)[0]))
    assert best.scores[0].item() == pytest.approx(max(scores), rel=1e-5)
    mean, std = torch.tensor([0.3]), torch.tensor([0.5])
    vis = tv.visualize(cnn, obj, steps=4, normalize=(mean, std), progress=False)
    seen = objective_values(cnn, obj, (vis.images - 0.3) / 0.5)
    assert torch.allclose(vis.final, seen, atol=1e-5)
    assert not torch.allclose(vis.final, objective_values(cnn, obj, vis.images), atol=1e-3)
