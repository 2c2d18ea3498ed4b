"""Activation patching (batched), attribution patching and path patching.

res = tsi.patching.activation_patching(model, clean, corrupt, metric, sites="blocks.*.resid_pre")
res.effects          # [n_sites, n_positions], 1 = the clean behaviour fully restored
est = tsi.patching.attribution_patching(model, clean, corrupt, metric)
est.correlation(res)
"""

from ._activation import activation_patching as activation_patching
from ._attribution import attribution_patching as attribution_patching
from ._common import PatchingError as PatchingError
from ._path import path_patching as path_patching
from ._result import PatchResult as PatchResult

__all__ = ["PatchResult", "PatchingError", "activation_patching", "attribution_patching", "path_patching"]
