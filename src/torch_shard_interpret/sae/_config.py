"""SAEConfig (what an SAE is) and TrainConfig (how it is trained): the Python API and `tsi train-sae` share them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..core._errors import TsiError

KINDS = ("relu", "topk", "batchtopk", "jumprelu", "abstopk")
# Measured defaults (docs/bench-superposition.md, "SAE defaults"): toy superposition at several sizes and sparsities.
MIN_TENSOR_STEPS = 1000
"""A tensor source gets at least this many steps (300 recovered only 0.65-0.97 mean max cosine)."""
MIN_TENSOR_STEPS_BY_KIND = {"jumprelu": 1500}
"""Kinds whose minimum differs: JumpReLU spends its first 500 steps as ReLU + L1 (``EARLY_STEPS``), so it gets
500 more and trains 1,000 steps in its own form like the others (at 1,000 it reached 0.949 at 100x20 with
seed 0; at 1,500 at least 0.967 over 4 configs x 3 seeds, docs/bench-superposition.md)."""
LR_AT_16K = 2e-4
"""Default learning rate of a 16,384-latent dictionary; other sizes scale by ``(2**14 / d_sae) ** LR_EXPONENT``."""
LR_EXPONENT = 0.75
"""Gao et al. use 0.5; at small ``d_sae`` that gives too small a rate (40 latents: 4e-3, where 2e-2 recovers)."""
DEAD_TOKENS_PER_LATENT = 300
"""A latent is dead (AuxK, resampling) after ``min(10M, total tokens / 10, DEAD_TOKENS_PER_LATENT * d_sae)``
tokens without firing: a latent at its fair share ``L0 / d_sae`` fires ``300 * L0`` times in that window. The
window used to be ``min(10M, total / 10)`` alone (409,600 tokens for 1,000 steps of 4,096), so latents stuck
between toy features, firing rarely but now and then, were never dead for long, AuxK never moved them, and their
features stayed unlearnt (JumpReLU at 40x10 p=0.1: 3 such latents, mean max cosine 0.945; 0.961 with this
window). At 16k latents the term is 4.9M tokens, about SAELens's default window; from ~33k latents the 10M cap
rules. Measured in docs/bench-superposition.md, "SAE defaults: dead latents"."""
NORMALIZATIONS = ("none", "expected_average_only_in")
FEW_STEPS = 100
"""Automatically chosen runs of fewer steps than this warn (a 1-step run recovered 0.19 of the CE loss)."""


class SAEError(TsiError, ValueError):
    """An SAE configuration, file or input cannot be used."""


class SAEWarning(UserWarning):
    """SAE training or evaluation produced a result that is probably useless (the message says the fix)."""


@dataclass(frozen=True)
class SAEConfig:
    """The architecture of one sparse autoencoder (or transcoder) and where it belongs in a model."""

    d_in: int
    """Width of the activations read (``d_model`` for a residual-stream site)."""
    d_sae: int
    """Number of latents (dictionary size)."""
    kind: str = "topk"
    """``relu`` (ReLU + L1), ``topk`` (k largest per token), ``batchtopk`` (k x batch largest per batch while
    training, a threshold at inference), ``jumprelu`` (per-latent learned threshold, L0 penalty) or ``abstopk``
    (the k largest ``|pre|`` per token, signs kept; SAELens ``abstopk``, loaded, not trained)."""
    k: int | None = 32
    """Active latents per token for ``topk``/``batchtopk`` (mean over the batch for ``batchtopk``)."""
    l1_coefficient: float = 3.0
    """Weight of the L1 penalty (``relu``), on activations normalised to mean norm ``sqrt(d_in)``."""
    l0_coefficient: float = 1.0
    """Weight of the L0 penalty (``jumprelu``)."""
    jumprelu_bandwidth: float = 0.5
    """Width of the rectangle kernel of the straight-through estimator (``jumprelu``)."""
    jumprelu_init_threshold: float = 0.5
    """Initial threshold of every latent (``jumprelu``)."""
    aux_k: int | None = None
    """Dead latents used by the AuxK loss (``topk``/``batchtopk``); None: ``d_in // 2``."""
    aux_coefficient: float = 0.5
    """Weight of the AuxK loss (Gao et al. 2024 use 1/32); 0 turns it off."""
    transcoder: bool = False
    """Read one site (``hook_name``) and predict another (``hook_name_out``) instead of reconstructing."""
    d_out: int | None = None
    """Width of the predicted activations (transcoders); None: ``d_in``."""
    hook_name: str | None = None
    """Site the SAE reads, in our names (``blocks.6.resid_post``; transcoders: ``model.layers.3.mlp:input``)."""
    hook_name_out: str | None = None
    """Site a transcoder predicts (``blocks.3.mlp.out``)."""
    model_name: str | None = None
    """The model it was trained on (informational)."""
    dtype: str = "float32"
    """Parameter dtype name (``float32``, ``bfloat16``...)."""
    apply_b_dec_to_input: bool = True
    """Subtract ``b_dec`` from the input before encoding (pre-encoder bias); False for transcoders."""
    normalize_activations: str = "none"
    """``none``: weights act on raw activations. Training normalises to mean norm ``sqrt(d_in)`` and folds the
    factor into the weights at the end, so trained SAEs always say ``none``."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    """Anything else read from a cfg.json (kept, saved back, never interpreted)."""
    skip: bool = False
    """Transcoders: also add ``x @ W_skip.T`` (``W_skip`` ``[d_out, d_in]``) to the output (SAELens
    ``skip_transcoder``)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SAEError(f"unknown SAE kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.d_in < 1 or self.d_sae < 1:
            raise SAEError(f"d_in and d_sae must be positive, not {self.d_in} and {self.d_sae}")
        if self.kind in ("topk", "batchtopk", "abstopk") and (self.k is None or not 0 < self.k <= self.d_sae):
            raise SAEError(f"k must be between 1 and d_sae={self.d_sae} for a {self.kind} SAE, not {self.k}")
        if self.normalize_activations not in NORMALIZATIONS:
            raise SAEError(
                f"normalize_activations {self.normalize_activations!r} is not supported; use 'none' "
                "(SAELens files with 'expected_average_only_in' load when they carry norm_scaling_factor)"
            )

    @property
    def out_dim(self) -> int:
        return self.d_out if self.d_out is not None else self.d_in

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SAEConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class TrainConfig:
    """How ``tsi.sae.train`` trains. None means "pick from the data" (documented per field)."""

    steps: int | None = None
    """Optimizer steps. None: a tensor gets about 5 epochs (at least ``MIN_TENSOR_STEPS`` = 1,000, 1,500 for JumpReLU, at most 20,000), a store one
    epoch, on-the-fly training as many batches as the texts give."""
    batch_size: int = 4096
    """Tokens per step (the global batch under DDP); capped at the number of rows of a small tensor."""
    lr: float | None = None
    """Adam learning rate. None: ``2e-4 * (2**14 / d_sae) ** 0.75`` (Gao et al.'s scaling has 0.5)."""
    warmup_steps: int | None = None
    """Linear warm-up steps; None: 5% of the steps, at most 1,000."""
    decay_fraction: float = 0.2
    """Final fraction of the steps over which the learning rate decays linearly to zero."""
    seed: int = 0
    """Seeds the initialisation, the shuffling and the resampling."""
    normalize: bool = True
    """Train on activations scaled to mean norm ``sqrt(d_in)`` (factor folded into the weights at the end)."""
    dead_after_tokens: int | None = None
    """A latent is dead after this many tokens without firing; None: ``min(10M, total tokens / 10, 300 * d_sae)``."""
    resample_every: int | None = None
    """``relu`` only: resample dead latents every this many steps (None: every 25% of the run; 0: never)."""
    checkpoint_every: int | None = None
    """Steps between checkpoints in ``checkpoint_dir``; None: 10% of the run."""
    log_every: int = 10
    """Steps between progress-bar updates."""
    context: int = 128
    """On-the-fly training only: the longest token window the model runs per text."""
    text_batch_size: int = 8
    """On-the-fly training only: texts per forward pass of the model."""
    buffer_batches: int = 4
    """On-the-fly training only: rows are shuffled in a buffer of this many batches."""
