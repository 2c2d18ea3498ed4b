"""Session fixtures for the planted-backdoor tasks (trained once per machine, cached under $TSI_CACHE).

Import them into a conftest: ``from _tasks import digits_trojan, lm_trojan  # noqa: F401``.
"""

from __future__ import annotations

import pytest

from torch_shard_interpret.bench._trojan import trojan


@pytest.fixture(scope="session")
def lm_trojan():
    return trojan("lm", progress=False)


@pytest.fixture(scope="session")
def digits_trojan():
    return trojan("digits", progress=False)
