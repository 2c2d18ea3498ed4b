"""Mechanistic anomaly detection on any ``tsi.Model``: detectors on activations of chosen sites.

det = tsi.anomaly.fit(model, trusted_texts, sites="blocks.*.resid_post", detector="mahalanobis")
det.score(texts)                               # Tensor[batch], higher = more anomalous
tsi.anomaly.evaluate(det, normal, anomalous)   # .auroc, .ap
det.save("det/"); tsi.anomaly.load("det/", model=model)

Detectors: mahalanobis, spectral, que, sae, probe (supervised), abstraction (per-layer translators).
"""

from ._detector import DETECTORS as DETECTORS
from ._detector import Detector as Detector
from ._detector import fit as fit
from ._detector import load as load
from ._eval import EvalResult as EvalResult
from ._eval import auroc as auroc
from ._eval import average_precision as average_precision
from ._eval import evaluate as evaluate
from ._eval import evaluate_features as evaluate_features
from ._features import AnomalyError as AnomalyError
from ._features import extract as extract

__all__ = ["DETECTORS", "AnomalyError", "Detector", "EvalResult", "auroc", "average_precision",
           "evaluate", "evaluate_features", "extract", "fit", "load"]  # fmt: skip
