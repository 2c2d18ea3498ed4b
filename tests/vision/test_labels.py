"""``random_label_model``: the label-randomization model of a sanity check, for any classifier."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torch_shard_interpret as tsi
import torch_shard_interpret.vision as tv


def test_a_copy_fits_permuted_labels_and_the_check_uses_it(cnn, digits_data):
    images, labels = digits_data
    x, y = images[:128], labels[:128]
    before = {k: v.clone() for k, v in cnn.module.state_dict().items()}
    state = torch.random.get_rng_state()
    noise = tv.random_label_model(cnn, x, y, epochs=30, lr=3e-3, batch_size=32, progress=False)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global random state is untouched
    assert all(torch.equal(before[k], v) for k, v in cnn.module.state_dict().items())
    assert noise.module is not cnn.module and noise.meta["train_accuracy"] > 0.25  # fits noise (chance 0.1)
    with torch.no_grad():
        true_acc = float((noise.module(x).argmax(-1) == y).float().mean())
    assert true_acc < 0.25 < cnn.meta["test_accuracy"]  # and learned nothing of the classes
    sal = tv.saliency(cnn, x[:8], y[:8]).sanity(label_model=noise, max_steps=2)
    edge = tv.custom("edges", cnn, x[:8], lambda m, im: im.abs()).sanity(label_model=noise, max_steps=2)
    assert sal.label_similarity is not None and sal.label_similarity < 0.5 and not sal.flagged
    assert edge.label_similarity == pytest.approx(1.0) and edge.flagged


def test_bad_inputs_raise_one_sentence(cnn):
    x = torch.zeros(4, 1, 8, 8)
    with pytest.raises(tsi.InputError, match="one per image"):
        tv.random_label_model(cnn, x, [1, 2])
    with pytest.raises(tsi.InputError, match="at least 1"):
        tv.random_label_model(cnn, x, [1, 2, 3, 4], epochs=0)
    with pytest.raises(tsi.InputError, match="reset_parameters"):
        tv.random_label_model(nn.Flatten(), x, [1, 2, 3, 4])
