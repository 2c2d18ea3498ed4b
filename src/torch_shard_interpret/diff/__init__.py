"""Model diffing: what differs inside two models of one architecture (base vs fine-tuned, fp32 vs quantised).

d = tsi.diff.compare(model_a, model_b, texts)          # .divergence {site: float}, .lens_kl, .logits_kl
cc = tsi.diff.train_crosscoder(model_a, model_b, texts, site="blocks.6.resid_post")
cc.classes                                              # per latent: shared / a_only / b_only / other / dead
"""

from ._compare import DiffResult as DiffResult
from ._compare import compare as compare
from ._crosscoder import Crosscoder as Crosscoder
from ._pairs import DiffError as DiffError

__all__ = ["Crosscoder", "DiffError", "DiffResult", "compare"]
