"""``tsi serve``: a local web app (and JSON API) for looking inside a model.

from torch_shard_interpret.serve import create_app
app = create_app(model, saes=["sae/"])        # a starlette app; run it with uvicorn
"""

from ._app import create_app as create_app
from ._sae import load_sae as load_sae

__all__ = ["create_app", "load_sae"]
