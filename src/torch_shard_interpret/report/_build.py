"""Compute everything the report shows, then write it atomically.

Three passes over the model, each as small as it can be:

1. one cached run (``embed``, every block's ``resid_post``, ``attn.out``, ``mlp.out``, ``attn.z``): the
   next-token predictions, the logit lens and direct logit attribution all read this one run;
2. one gradient run (``embed`` with ``grad=``): input saliency;
3. one run with eager attention that caches ``attn.pattern`` of the few layers holding the heads with the
   largest direct effect (known only after step 1). The model's attention implementation is restored after.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import _io
from ..attribution._dla import DLA_SITES, DLAResult, dla_from_run
from ..attribution._saliency import saliency_scores
from ..core._errors import InputError, TsiError
from ..core._model import Model
from ..core._result import logits_of
from ..lens._logit import as_token_id, lens_from_run, readout_modules
from ..lens._result import LensResult
from ._techniques import techniques

MAX_LENS_POSITIONS = 64
"""The lens heatmap shows at most this many (final) positions; longer prompts are cut on the left."""
MAX_PATTERN_POSITIONS = 48
"""Attention patterns are drawn as full query x key grids up to this length, else as the last row only."""

Step = Callable[[str], AbstractContextManager[Any]]


class ReportOutputError(TsiError):
    """The report cannot be written where it was asked to go."""


@dataclass
class HeadPattern:
    layer: int
    head: int
    dla: float
    pattern: torch.Tensor
    """``[q_pos, k_pos]`` attention probabilities."""


@dataclass
class ReportData:
    """Everything the HTML report and the terminal summary show."""

    prompt: str
    model_name: str
    cfg: Any
    tokens: list[int]
    str_tokens: list[str]
    top: list[tuple[str, int, float, float]]
    """Top next-token predictions at the last position: (token, id, probability, logit)."""
    target: int
    target_str: str
    target_source: str
    """``"--target"`` or ``"top prediction"``."""
    lens: LensResult
    dla: DLAResult
    patterns: list[HeadPattern]
    saliency: torch.Tensor
    """``[pos]`` gradient x input of the attributed logit (difference) w.r.t. the input embeddings."""
    saliency_norm: torch.Tensor
    """``[pos]`` L2 norm of that gradient."""
    baseline: int | None = None
    baseline_str: str | None = None
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    created: str = ""
    techniques: dict[str, Any] = field(default_factory=dict)
    """The result of each registered technique (``register_technique``), by name, with its default options."""


def _no_step(_: str) -> AbstractContextManager[Any]:
    return nullcontext()


def check_prompt(prompt: Any) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError(
            'the prompt is empty; give the text to analyse, e.g. tsi report "The capital of France is"'
        )
    return prompt


def build_report(
    model: Model,
    prompt: str,
    *,
    target: str | int | None = None,
    baseline: str | int | None = None,
    top_heads: int = 6,
    model_name: str = "",
    step: Step = _no_step,
) -> ReportData:
    """Compute the report for ``prompt`` on an already wrapped ``model`` (no file is written here).

    ``target``: the token whose logit is explained (default the top prediction); ``baseline``: explain
    ``logit(target) - logit(baseline)`` instead. ``step(name)`` is a context manager around each stage
    (the command line shows a progress display with it).
    """
    check_prompt(prompt)
    if top_heads < 0:
        raise InputError(f"--top-heads must be 0 or more, not {top_heads}")
    if model.tokenizer is None:
        raise InputError("the report needs a model with a tokenizer (it takes a text prompt)")
    readout_modules(model)
    target_id = as_token_id(model, target)
    baseline_id = as_token_id(model, baseline, "baseline")
    ids = model.to_tokens(prompt)
    n_ctx = model.cfg.n_ctx
    if n_ctx is not None and ids.shape[-1] > n_ctx:
        raise InputError(
            f"the prompt is {ids.shape[-1]} tokens long but {model_name or 'the model'} reads at most {n_ctx}; "
            "shorten the prompt"
        )
    timings: dict[str, float] = {}
    notes: list[str] = []

    @contextmanager
    def timed(name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        with step(name):
            yield
        timings[name] = time.perf_counter() - t0

    with timed("Forward pass (caching the residual stream and every block's outputs)"):
        run = model.run(prompt, cache=list(DLA_SITES))
    logits = logits_of(run, "the report")  # [1, pos, d_vocab]
    n_pos = logits.shape[1]
    last = logits[0, -1].float()
    probs = last.softmax(-1)
    values, top_ids = probs.topk(min(10, probs.shape[-1]))
    names = model.str_tokens(top_ids.cpu())
    top = [
        (n, int(i), float(p), float(last[i]))
        for n, i, p in zip(names, top_ids.tolist(), values.tolist(), strict=True)
    ]
    source = "--target"
    if target_id is None:
        target_id, source = top[0][1], "top prediction"

    with timed("Logit lens (final norm + unembedding on every block's output)"):
        cols = None if n_pos <= MAX_LENS_POSITIONS else list(range(n_pos - MAX_LENS_POSITIONS, n_pos))
        lens = lens_from_run(model, run, target=target_id if source == "--target" else None, positions=cols)
        if cols is not None:
            notes.append(f"The logit lens shows the last {MAX_LENS_POSITIONS} of {n_pos} positions.")

    with timed("Direct logit attribution (per layer and per head)"):
        dla = dla_from_run(model, run, target=target_id, baseline=baseline_id)
    del run

    with timed("Input saliency (one gradient run)"):

        def scalar(r):
            row = r.logits[0, -1]
            return row[target_id] - (row[baseline_id] if baseline_id is not None else 0.0)

        scores = saliency_scores(model, prompt, scalar)

    heads = dla.top_heads(top_heads) if top_heads else []
    patterns: list[HeadPattern] = []
    if heads:
        with timed("Attention patterns of the top heads (eager attention)"):
            patterns = _patterns(model, prompt, heads, notes)

    results: dict[str, Any] = {}
    for name, technique in techniques().items():
        with timed(technique.title):
            results[name] = technique.run(model, prompt)

    return ReportData(
        prompt=prompt,
        model_name=model_name or type(model.module).__name__,
        cfg=model.cfg,
        tokens=ids[0].tolist(),
        str_tokens=model.str_tokens(ids[0]),
        top=top,
        target=target_id,
        target_str=model.str_tokens(torch.tensor([target_id]))[0],
        target_source=source,
        lens=lens,
        dla=dla,
        patterns=patterns,
        saliency=scores["grad_x_input"],
        saliency_norm=scores["grad_norm"],
        baseline=baseline_id,
        baseline_str=dla.baseline_str,
        notes=notes,
        timings=timings,
        created=time.strftime("%Y-%m-%d %H:%M:%S"),
        techniques=results,
    )


def _patterns(
    model: Model, prompt: str, heads: list[tuple[int, int, float]], notes: list[str]
) -> list[HeadPattern]:
    """Attention patterns of ``heads`` from one eager run; the attention implementation is restored after."""
    layers = sorted({layer for layer, _, _ in heads})
    before = model.attention
    switched = False
    try:
        if before != "eager":
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model.set_attention("eager")
                switched = True
            except TsiError as exc:
                notes.append(f"Attention patterns are missing: {exc}.")
                return []
            notes.append(
                f"Attention patterns were read with eager attention: the report switched the model from "
                f"{before!r} to 'eager' for that one run (slower, but it exposes the patterns) and back."
            )
        run = model.run(
            prompt, cache=[f"blocks.{layer}.attn.pattern" for layer in layers], return_logits=False
        )
    finally:
        if switched and before is not None:
            getattr(model.module, "set_attn_implementation")(before)  # noqa: B009 - an HF method
    return [
        HeadPattern(layer, head, value, run.cache[f"blocks.{layer}.attn.pattern"][0, head].float().cpu())
        for layer, head, value in heads
    ]


# ---- output ---------------------------------------------------------------------------------------


def slug(prompt: str, limit: int = 48) -> str:
    """A file-system-safe name from a prompt: lowercase words joined by dashes."""
    return _io.slug(prompt, limit, "report")


def default_out_dir(prompt: str) -> Path:
    return Path("reports") / slug(prompt)


def check_out_dir(out_dir: str | os.PathLike[str]) -> Path:
    """Fail early (before any model work) when ``out_dir`` cannot hold the report; creates nothing."""
    path = Path(out_dir).expanduser()
    problem = _io.writable_dir_problem(path)
    if problem is None:
        return path
    if problem.kind == "file":
        raise ReportOutputError(
            f"--out {str(path)!r} is a file, not a directory; give a directory for report.html"
        )
    if problem.kind == "not_dir":
        raise ReportOutputError(
            f"cannot create --out {str(path)!r}: {str(problem.path)!r} is not a directory"
        )
    raise ReportOutputError(
        f"cannot write the report to {str(path)!r}: {str(problem.path)!r} is not writable"
    )


def write_report(html: str, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``out_dir/report.html`` atomically (a temporary file in the same directory, then ``os.replace``)."""
    path = check_out_dir(out_dir)

    def failed(exc: OSError) -> ReportOutputError:
        return ReportOutputError(f"cannot write the report to {str(path)!r}: {exc.strerror or exc}")

    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise failed(exc) from None
    # written with the default mode 0o644 (mkstemp creates 0600; a report is meant to be shared)
    return _io.atomic_write(
        path / "report.html", html, prefix=".report-", suffix=".html.tmp", create_error=failed
    )
