"""Linear probes: what can a linear read-out of a site tell about the input, and more than chance?

results = tsi.probes.fit(model, texts, labels, sites="blocks.*.resid_post")
results["blocks.6.resid_post"].accuracy, results["blocks.6.resid_post"].control_accuracy
"""

from ..steering._acts import collect as collect
from ._fit import fit as fit
from ._linear import ProbeResult as ProbeResult
from ._linear import ProbeResults as ProbeResults
from ._linear import fit_logistic as fit_logistic
from ._linear import fit_probe as fit_probe
from ._linear import fit_ridge as fit_ridge
from ._linear import summary_html as summary_html

__all__ = [
    "ProbeResult",
    "ProbeResults",
    "collect",
    "fit",
    "fit_logistic",
    "fit_probe",
    "fit_ridge",
    "summary_html",
]
