"""Attribution: which components and which input tokens a prediction comes from."""

from ._dla import DLAResult as DLAResult
from ._dla import direct_logit_attribution as direct_logit_attribution
from ._saliency import saliency as saliency

__all__ = ["DLAResult", "direct_logit_attribution", "saliency"]
