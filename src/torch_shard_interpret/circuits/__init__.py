"""Circuit discovery on any adapted transformer: the edge graph in MIB names, edge scores (EAP, EAP-IG, exact
patching, ACDC), choosing circuits, faithfulness with curves and isolation checks, MIB circuit JSON.

    graph = tsi.circuits.attribute(model, clean, corrupt, metric, method="eap-ig", steps=5)
    circuit = graph.top(frac=0.01)
    tsi.circuits.faithfulness(model, circuit, clean, corrupt, metric)
    circuit.save("circuit.json")
"""

from ._acdc import AcdcResult as AcdcResult
from ._acdc import acdc as acdc
from ._attribute import attribute as attribute
from ._circuit import Circuit as Circuit
from ._circuit import ScoredGraph as ScoredGraph
from ._circuit import load as load
from ._faith import Faithfulness as Faithfulness
from ._faith import FaithfulnessCurve as FaithfulnessCurve
from ._faith import Isolation as Isolation
from ._faith import faithfulness as faithfulness
from ._faith import faithfulness_curve as faithfulness_curve
from ._faith import isolation as isolation
from ._graph import CircuitError as CircuitError
from ._graph import Graph as Graph
from ._graph import graph as graph

__all__ = [
    "AcdcResult",
    "Circuit",
    "CircuitError",
    "Faithfulness",
    "FaithfulnessCurve",
    "Graph",
    "Isolation",
    "ScoredGraph",
    "acdc",
    "attribute",
    "faithfulness",
    "faithfulness_curve",
    "graph",
    "isolation",
    "load",
]
