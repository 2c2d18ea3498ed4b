"""Ground truth: small models whose insides are known, and a scoreboard of every tool against that truth.

task = tsi.bench.toy_superposition(n_features=40, d_hidden=10, sparsity=0.05, seed=0)
task.features; task.sample(10_000)
board = tsi.bench.run(suite="quick")      # `tsi bench --quick --out DIR` does the same
board.rows; board.to_html(); board.save("board.json")
"""

from ._metrics import auroc as auroc
from ._metrics import mcc as mcc
from ._metrics import mean_max_cosine as mean_max_cosine
from ._scoreboard import Scoreboard as Scoreboard
from ._suite import CHECKS as CHECKS
from ._suite import run as run
from ._toy import ToySuperposition as ToySuperposition
from ._toy import toy_superposition as toy_superposition

__all__ = [
    "CHECKS",
    "Scoreboard",
    "ToySuperposition",
    "auroc",
    "mcc",
    "mean_max_cosine",
    "run",
    "toy_superposition",
]
