"""Model diffing: what differs inside two models of one architecture (base vs fine-tuned, fp32 vs quantised).

d = tsi.diff.compare(model_a, model_b, texts)          # .divergence {site: float}, .lens_kl, .logits_kl
cc = tsi.diff.train_crosscoder(model_a, model_b, texts, site="blocks.6.resid_post")
cc.classes                                              # per latent: shared / a_only / b_only / other / dead
"""

from ._compare import DiffResult as DiffResult
from ._compare import compare as compare
from ._crosscoder import Crosscoder as Crosscoder
from ._latents import CrosscoderResult as CrosscoderResult
from ._latents import load_crosscoder as load_crosscoder
from ._latents import train_crosscoder as train_crosscoder
from ._pairs import DiffError as DiffError
from ._quant import quantized_copy as quantized_copy
from ._toy import planted_difference as planted_difference

__all__ = ["Crosscoder", "CrosscoderResult", "DiffError", "DiffResult", "compare", "load_crosscoder",
           "planted_difference", "quantized_copy", "train_crosscoder"]  # fmt: skip
