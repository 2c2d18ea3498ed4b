"""A rank that dies or hangs makes the others raise ``tsi.distributed.DistributedError`` within the
timeout (``TSI_DIST_TIMEOUT``), never hang. The ranks start without torchrun's agent, which would
otherwise kill the survivors itself and hide what they do."""

from __future__ import annotations

import pytest
from _launch import launch

pytestmark = pytest.mark.distributed

TIMEOUT_S = "5"


@pytest.mark.parametrize(
    ("mode", "what"),
    [("die", "barrier"), ("hang", "gather_cache"), ("die_forward", "the forward pass")],
)
def test_a_lost_rank_gives_a_clear_error_not_a_hang(mode, what, tiny_llama_dir, tmp_path):
    done = launch(
        "worker_fail.py",
        mode,
        str(tiny_llama_dir),
        out=tmp_path,
        timeout=90,
        torchrun=False,
        env={"TSI_DIST_TIMEOUT": TIMEOUT_S},
    )
    assert done.returncode is not None, f"rank 0 hung until the outer timeout:\n{done.output[-4000:]}"
    assert done.returncode == 3, f"rank 0 did not raise DistributedError:\n{done.output[-4000:]}"
    line = next(x for x in done.output.splitlines() if x.startswith("DISTRIBUTED-ERROR"))
    assert f"rank 0 of 2: {what} failed" in line
    assert "Another rank has probably died" in line
    assert f"at most {TIMEOUT_S} s" in line and "TSI_DIST_TIMEOUT" in line
    seconds = float(line.split("after ")[1].split(" s")[0])
    assert seconds < 3 * int(TIMEOUT_S) + 10, f"rank 0 took {seconds} s to notice"
