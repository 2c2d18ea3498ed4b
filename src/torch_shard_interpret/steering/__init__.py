"""Steering: vectors built from contrasts of real activations, added while the model runs or generates.

sv = tsi.steering.SteeringVector.from_contrast(model, positive_texts, negative_texts, site="blocks.6.resid_post")
with sv.apply(model, scale=4.0):
    model.generate("I think that", max_new_tokens=20)
"""

from ._sweep import SweepCell as SweepCell
from ._sweep import SweepResult as SweepResult
from ._sweep import perplexity as perplexity
from ._sweep import sweep as sweep
from ._vector import SteeringFileError as SteeringFileError
from ._vector import SteeringVector as SteeringVector

__all__ = ["SteeringFileError", "SteeringVector", "SweepCell", "SweepResult", "perplexity", "sweep"]
