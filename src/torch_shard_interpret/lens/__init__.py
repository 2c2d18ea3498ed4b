"""Lenses: read the residual stream as next-token predictions, block by block."""

from ._logit import logit_lens as logit_lens
from ._result import LensResult as LensResult

__all__ = ["LensResult", "logit_lens"]
