"""Ground truth: small models whose insides are known, and a scoreboard of every tool against that truth.

task = tsi.bench.toy_superposition(n_features=40, d_hidden=10, sparsity=0.05, seed=0)
task.features; task.sample(10_000)
task = tsi.bench.known_circuit("induction")   # .model, .clean, .corrupt, .metric, .circuit
task = tsi.bench.known_circuit("sorting")     # also "prev_token", "counting", "reversal"
task = tsi.bench.modular_addition()           # .model, .p, .accuracy
board = tsi.bench.run(suite="quick")      # `tsi bench --quick --out DIR` does the same
board.rows; board.to_html(); board.save("board.json")
"""

from ._circuits import KnownCircuit as KnownCircuit
from ._circuits import known_circuit as known_circuit
from ._metrics import auroc as auroc
from ._metrics import mcc as mcc
from ._metrics import mean_max_cosine as mean_max_cosine
from ._modular import ModularAddition as ModularAddition
from ._modular import modular_addition as modular_addition
from ._scoreboard import Scoreboard as Scoreboard
from ._suite import CHECKS as CHECKS
from ._suite import run as run
from ._toy import ToySuperposition as ToySuperposition
from ._toy import toy_superposition as toy_superposition
from ._trojan import Trojan as Trojan
from ._trojan import trojan as trojan

__all__ = [
    "CHECKS",
    "KnownCircuit",
    "ModularAddition",
    "Scoreboard",
    "ToySuperposition",
    "auroc",
    "known_circuit",
    "mcc",
    "mean_max_cosine",
    "modular_addition",
    "run",
    "toy_superposition",
    "Trojan",
    "trojan",
]
