"""Circuit discovery on any adapted transformer: the edge graph in MIB names, edge scores (EAP, EAP-IG, exact
patching, ACDC), choosing circuits, faithfulness with curves and isolation checks, MIB circuit JSON.

    graph = tsi.circuits.attribute(model, clean, corrupt, metric, method="eap-ig", steps=5)
    circuit = graph.top(frac=0.01)
    tsi.circuits.faithfulness(model, circuit, clean, corrupt, metric)
    circuit.save("circuit.json")
    ag = tsi.circuits.attribution_graph(model, prompt, transcoders=[...])  # circuit-tracer attribution graph
    ag.save("graph.json")                                                 # circuit-tracer graph JSON
"""

from ._acdc import AcdcResult as AcdcResult
from ._acdc import acdc as acdc
from ._attrgraph import AttributionGraph as AttributionGraph
from ._attrgraph import attribution_graph as attribution_graph
from ._attribute import attribute as attribute
from ._circuit import Circuit as Circuit
from ._circuit import ScoredGraph as ScoredGraph
from ._circuit import load as load
from ._ctjson import load_json as load_attribution_graph
from ._faith import Faithfulness as Faithfulness
from ._faith import FaithfulnessCurve as FaithfulnessCurve
from ._faith import Isolation as Isolation
from ._faith import faithfulness as faithfulness
from ._faith import faithfulness_curve as faithfulness_curve
from ._faith import isolation as isolation
from ._graph import CircuitError as CircuitError
from ._graph import Graph as Graph
from ._graph import graph as graph
from ._transcoders import load_one as load_transcoder
from ._transcoders import save_circuit_tracer as save_transcoder

__all__ = [
    "AcdcResult",
    "AttributionGraph",
    "Circuit",
    "CircuitError",
    "Faithfulness",
    "FaithfulnessCurve",
    "Graph",
    "Isolation",
    "ScoredGraph",
    "acdc",
    "attribute",
    "attribution_graph",
    "faithfulness",
    "faithfulness_curve",
    "graph",
    "isolation",
    "load",
    "load_attribution_graph",
    "load_transcoder",
    "save_transcoder",
]
