"""Off a terminal, progress is a plain line now and then: each further 10%, or after 10 s without one."""

from __future__ import annotations

import io

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret import _progress
from torch_shard_interpret._progress import progress


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(_progress.time, "monotonic", c)
    return c


class NotATerminal(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_lines_at_each_tenth_and_after_ten_quiet_seconds(clock):
    out = NotATerminal()
    bar = progress(500, desc="train SAE", unit="step", stream=out)
    for _ in range(119):
        bar.update(1)  # fast: a line at each further 10% only
    assert out.getvalue().splitlines() == [
        "train SAE: 50/500 step (10%), 0 s",
        "train SAE: 100/500 step (20%), 0 s",
    ]
    clock.t += 31
    bar.set_postfix(loss="0.125")
    bar.update(1)  # slow: 10 s without a line gives one, with the postfix
    assert out.getvalue().splitlines()[-1] == "train SAE: 120/500 step (24%), 31 s  loss=0.125"
    clock.t += 9.9
    bar.update(1)  # < 10 s since the last line and < 10% more: nothing
    assert len(out.getvalue().splitlines()) == 3
    bar.close()
    bar.close()  # twice: one last line only
    assert out.getvalue().splitlines()[3:] == ["train SAE: 121/500 step (24%), 41 s  loss=0.125"]
    assert "\r" not in out.getvalue()


def test_a_fast_job_prints_at_most_eleven_lines_and_a_resumed_one_counts_from_its_start(clock):
    out = NotATerminal()
    with progress(1000, desc="job", unit="step", stream=out) as bar:
        for _ in range(1000):
            bar.update(1)
    assert len(out.getvalue().splitlines()) <= 11
    resumed = NotATerminal()
    with progress(10, desc="again", unit="step", stream=resumed, initial=9) as bar:
        pass  # nothing new: no line
    assert resumed.getvalue() == ""
    with progress(10, desc="again", unit="step", stream=resumed, initial=9) as bar:
        bar.update(1)
    assert resumed.getvalue() == "again: 10/10 step (100%), 0 s\n"


def test_a_job_that_fails_ends_without_a_closing_line(clock):
    out = NotATerminal()
    with pytest.raises(ValueError), progress(100, desc="job", unit="step", stream=out) as bar:
        bar.update(15)  # a line at 10%...
        bar.update(3)
        raise ValueError("boom")  # ...and none for the 18 done when it failed: the error is the last word
    assert out.getvalue().splitlines() == ["job: 15/100 step (15%), 0 s"]


def test_sae_training_off_a_terminal_prints_lines_not_bars(capsys):
    acts = torch.randn(256, 16, generator=torch.Generator().manual_seed(0))
    cfg = {"kind": "topk", "d_sae": 32, "k": 4}
    tsi.sae.train(acts, cfg, {"steps": 20, "batch_size": 64}, progress=False)
    assert capsys.readouterr().err == ""
    tsi.sae.train(acts, cfg, {"steps": 20, "batch_size": 64}, progress=True)
    err = capsys.readouterr().err
    assert "train SAE: 20/20 step (100%)" in err and "\r" not in err
    assert "loss=" in err and "L0=" in err
