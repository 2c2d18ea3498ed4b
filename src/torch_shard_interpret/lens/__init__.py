"""Lenses: read the residual stream as next-token predictions, block by block."""

from ._logit import logit_lens as logit_lens
from ._result import LensResult as LensResult
from ._tuned import TunedLens as TunedLens
from ._tuned import logit_lens_kl as logit_lens_kl

__all__ = ["LensResult", "TunedLens", "logit_lens", "logit_lens_kl"]
