"""Attribution: which components and which input tokens a prediction comes from."""

from ._dla import DLAResult as DLAResult
from ._dla import direct_logit_attribution as direct_logit_attribution
from ._dla_batch import dla_batch as dla_batch
from ._dla_neurons import neuron_attribution as neuron_attribution
from ._ig import BaselineWarning as BaselineWarning
from ._ig import CompletenessWarning as CompletenessWarning
from ._ig import IGResult as IGResult
from ._ig import integrated_gradients as integrated_gradients
from ._saliency import FirstOrderWarning as FirstOrderWarning
from ._saliency import saliency as saliency
from ._weights import head_output_weights as head_output_weights

__all__ = [
    "BaselineWarning",
    "CompletenessWarning",
    "DLAResult",
    "FirstOrderWarning",
    "IGResult",
    "direct_logit_attribution",
    "dla_batch",
    "integrated_gradients",
    "neuron_attribution",
    "saliency",
]
