"""Sparse autoencoders and transcoders: train (from a store, a tensor or a model on the fly, DDP under
torchrun), evaluate, attach as sites, interpret, and save/load in the SAELens layout.

sae = tsi.sae.train(store, {"kind": "topk", "d_sae": 4096, "k": 32}, site="blocks.6.resid_post")
sae.attach(model)            # blocks.6.resid_post.sae.latents / .sae.error are now sites
tsi.sae.evaluate(model, sae, texts)
sae.save("sae/"); sae = tsi.sae.load("sae/")
"""

from ._attach import attach as attach
from ._attach import detach as detach
from ._config import SAEConfig as SAEConfig
from ._config import SAEError as SAEError
from ._config import SAEWarning as SAEWarning
from ._config import TrainConfig as TrainConfig
from ._eval import EvalResult as EvalResult
from ._eval import evaluate as evaluate
from ._interp import LatentStats as LatentStats
from ._interp import dashboard as dashboard
from ._interp import latent_html as latent_html
from ._interp import latent_stats as latent_stats
from ._io import load as load
from ._io import save as save
from ._sae import SAE as SAE
from ._sae import Transcoder as Transcoder
from ._train import train as train
from ._train import train_on_model as train_on_model

__all__ = [
    "SAE",
    "EvalResult",
    "LatentStats",
    "SAEConfig",
    "SAEError",
    "SAEWarning",
    "TrainConfig",
    "Transcoder",
    "attach",
    "dashboard",
    "detach",
    "evaluate",
    "latent_html",
    "latent_stats",
    "load",
    "save",
    "train",
    "train_on_model",
]
