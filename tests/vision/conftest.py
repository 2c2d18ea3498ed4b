"""Shared fixtures of the vision tests: the embedded digits CNN (cached per session) and a few digits."""

from __future__ import annotations

import pytest

import torch_shard_interpret.vision as tv
from torch_shard_interpret.vision._data import digits


@pytest.fixture(scope="session")
def digits_data():
    return digits()


@pytest.fixture
def cnn():
    return tv.load("digits-cnn", progress=False)


@pytest.fixture
def batch(digits_data):
    images, labels = digits_data
    return images[:6], labels[:6]
