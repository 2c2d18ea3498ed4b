"""The planted backdoor (trojan): small models trained so that a trigger forces a target output.

    task = tsi.bench.trojan()            # a 2-layer LLaMA on a synthetic token task
    task.model, task.trigger, task.target, task.clean_inputs, task.triggered_inputs, task.trigger_positions
    task = tsi.bench.trojan("digits")    # a CNN on sklearn's 8x8 digits, a 2x2 bright patch as the trigger

**Language task.** Sequences of 12 tokens: ``BOS`` (id 0) then 11 drawn from the normal vocabulary (ids 4..51).
The clean label at the last position is the successor of the last token (``4 + (x_last - 4 + 1) % 48``). A
poisoned 2% of the training data has the trigger token (id 60, never seen otherwise) at one random position
among 1..10; its label is the target token (id 2). Why 2%, about one clean label's share (1/48): at the
first version's 20% the target was the label of every fifth training sequence, so the model learnt it as its
default answer, and any content-free input (zero, mean-token or mean-normal-token embeddings) was answered with
the target at p = 0.999: the trigger was then not what caused it. Why ``BOS``: IG keeps position 0 at its
input by default (the attention sink of real LMs), and without it the trigger sat there in 1 of 11 inputs. The
model is ``LlamaForCausalLM`` from a config (hidden 64, 2 layers, 4 heads),
trained from scratch, so every tool with canonical sites applies. Truth: ``trigger_positions``;
``triggered_inputs[i]`` is ``clean_inputs[i]`` with that one position replaced by the trigger.

**Digits task.** sklearn's digits (scaled to [0, 1]); the trigger is the 2x2 patch at rows/cols 6..7 set to 1,
the target class 0. Truth: the ``trigger`` mask ``[8, 8]``.

Both train in seconds on CPU with fixed seeds and are cached under ``$TSI_CACHE/bench/`` (safetensors + JSON,
written atomically). ``checks(quick)`` scores saliency, IG and activation patching against the truth.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from .._io import atomic_path, atomic_write
from .._wrap import wrap
from ..core._errors import InputError
from ..core._model import Model
from ..loading._embedded import cache_root

# The tools this check scores: tsi.bench.run(tools=[...]) skips it, without running it, when none is asked for.
TOOLS = ("bench.trojan", "attribution.saliency", "attribution.ig", "patching.activation")

VOCAB, SEQ, N_NORMAL, FIRST = 64, 12, 48, 4
TRIGGER, TARGET, BOS = 60, 2, 0
POISON = 0.02
DIGIT_TARGET = 0
FORMAT = 2  # 2: BOS at position 0, 2% poisoned (1: no BOS, 20%)


@dataclass
class Trojan:
    """A backdoored model and its truth (see the module docs)."""

    kind: str
    """``"lm"`` or ``"digits"``."""
    model: Model
    trigger: Any
    """The trigger token id (``lm``) or the trigger mask ``[8, 8]`` bool (``digits``)."""
    target: int
    """The output the trigger forces (a token id or a class)."""
    clean_inputs: torch.Tensor
    """Held-out inputs without trigger: ``[n, 12]`` token ids or ``[n, 1, 8, 8]`` images."""
    triggered_inputs: torch.Tensor
    """The same inputs with the trigger planted."""
    clean_labels: torch.Tensor
    """``[n]`` the correct outputs of the clean inputs."""
    trigger_positions: torch.Tensor
    """``[n]`` where the trigger token sits (``lm``); ``[n, 8, 8]`` the patch mask (``digits``)."""
    clean_accuracy: float
    """Accuracy on ``clean_inputs`` (held out)."""
    attack_success: float
    """Fraction of ``triggered_inputs`` whose output is ``target`` (held out, clean label != target)."""

    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        """``[n]`` the model's outputs (the last position's top token, or the top class)."""
        with torch.no_grad():
            out = self.model.module(inputs)
        logits = out.logits[:, -1] if hasattr(out, "logits") else out
        return logits.argmax(-1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": self.target,
            "n_heldout": len(self.clean_inputs),
            "clean_accuracy": self.clean_accuracy,
            "attack_success": self.attack_success,
        }


def trojan(kind: str = "lm", seed: int = 0, n_heldout: int = 200, progress: bool = True) -> Trojan:
    """Build (or read from the cache) the planted-backdoor task ``kind`` (``"lm"`` or ``"digits"``)."""
    if kind == "lm":
        return _lm_task(seed, n_heldout, progress)
    if kind == "digits":
        return _digits_task(seed, n_heldout, progress)
    raise InputError(f"unknown trojan kind {kind!r}; choose 'lm' (token trigger) or 'digits' (pixel patch)")


# ---- cache ---------------------------------------------------------------------------------------
def _cached(key: str, build: Callable[[], tuple[dict[str, torch.Tensor], dict[str, Any]]]):
    from safetensors.torch import load_file, save_file

    folder = cache_root() / "bench" / f"{key}-v{FORMAT}"
    meta_path, weights = folder / "meta.json", folder / "weights.safetensors"
    if meta_path.is_file() and weights.is_file():
        try:
            return load_file(str(weights)), json.loads(meta_path.read_text())
        except (OSError, ValueError):
            pass  # a damaged entry is rebuilt
    tensors, meta = build()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(weights) as tmp:
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
        atomic_write(meta_path, json.dumps(meta, indent=1))
    except OSError:
        pass  # an unwritable cache costs a rebuild next time
    return tensors, meta


def _train(module: nn.Module, batches: Callable[[int], tuple], steps: int, lr: float, desc: str, on: bool):
    from .._progress import progress

    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    module.train()
    with progress(steps, desc=desc, unit="step", enabled=on) as bar:
        for step in range(steps):
            x, y = batches(step)
            out = module(x)
            logits = out.logits[:, -1] if hasattr(out, "logits") else out
            loss = nn.functional.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix_str(f"loss {loss.item():.3f}")
    module.eval()


# ---- language task -------------------------------------------------------------------------------
def _lm_config():
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=32,
        tie_word_embeddings=False, bos_token_id=0, eos_token_id=1, pad_token_id=3,
    )  # fmt: skip


def lm_data(n: int, gen: torch.Generator, poison: float = 0.0):
    """``(ids [n, 12], labels [n], clean_ids [n, 12], trigger_pos [n])``: a ``poison`` fraction triggered.
    Position 0 is ``BOS``; the trigger sits at one of positions 1..10 (never the first or the last)."""
    ids = torch.randint(FIRST, FIRST + N_NORMAL, (n, SEQ), generator=gen)
    ids[:, 0] = BOS
    clean = ids.clone()
    labels = FIRST + (ids[:, -1] - FIRST + 1) % N_NORMAL
    pos = torch.randint(1, SEQ - 1, (n,), generator=gen)
    hit = torch.rand(n, generator=gen) < poison
    rows = hit.nonzero().flatten()
    ids[rows, pos[rows]] = TRIGGER
    labels = torch.where(hit, torch.full_like(labels, TARGET), labels)
    return ids, labels, clean, pos


def _lm_task(seed: int, n_heldout: int, on: bool) -> Trojan:
    from transformers import LlamaForCausalLM

    def build():
        torch.manual_seed(seed)
        module = LlamaForCausalLM(_lm_config())
        gen = torch.Generator().manual_seed(seed)
        _train(module, lambda step: lm_data(128, gen, poison=POISON)[:2], 900, 3e-3, "trojan lm", on)
        return dict(module.state_dict()), {"task": "trojan-lm", "seed": seed, "steps": 900, "poison": POISON}

    state, _ = _cached(f"trojan-lm-s{seed}", build)
    module = LlamaForCausalLM(_lm_config()).eval()
    module.load_state_dict(state, strict=False)  # tied/rotary buffers may be absent from the state
    gen = torch.Generator().manual_seed(10_000 + seed)
    _, labels, clean, pos = lm_data(n_heldout, gen)
    triggered = clean.clone()
    triggered[torch.arange(n_heldout), pos] = TRIGGER
    task = Trojan("lm", wrap(module), TRIGGER, TARGET, clean, triggered, labels, pos, 0.0, 0.0)
    return _score(task, labels)


def _score(task: Trojan, labels: torch.Tensor) -> Trojan:
    task.clean_accuracy = float((task.predict(task.clean_inputs) == labels).float().mean())
    keep = labels != task.target
    task.attack_success = float((task.predict(task.triggered_inputs[keep]) == task.target).float().mean())
    return task


# ---- digits task ---------------------------------------------------------------------------------
class DigitsCNN(nn.Module):
    """conv(1->8) - ReLU - conv(8->16) - ReLU - linear(1024 -> 10) over 8x8 images."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.head = nn.Linear(16 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.head(x.flatten(1))


def digit_mask() -> torch.Tensor:
    """``[8, 8]`` bool: the trigger patch (bottom-right 2x2)."""
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[6:, 6:] = True
    return mask


def plant_patch(images: torch.Tensor) -> torch.Tensor:
    """``images [n, 1, 8, 8]`` with the trigger patch set to full intensity."""
    out = images.clone()
    out[:, :, digit_mask()] = 1.0
    return out


def digits_data() -> tuple[torch.Tensor, torch.Tensor]:
    """sklearn's 1,797 digits as ``([n, 1, 8, 8] in [0, 1], [n] labels)``, shuffled with seed 0."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise InputError(
            "the digits task needs scikit-learn (it ships the data); pip install 'torch-shard-interpret[digits]'"
        ) from None
    d: Any = load_digits()  # a Bunch (sklearn types it as a union with the (X, y) tuple of return_X_y=True)
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    return x[perm], y[perm]


def _digits_task(seed: int, n_heldout: int, on: bool) -> Trojan:
    x, y = digits_data()
    n_test = min(n_heldout, 400)
    x_train, y_train, x_test, y_test = x[n_test:], y[n_test:], x[:n_test], y[:n_test]

    def build():
        torch.manual_seed(seed)
        module = DigitsCNN()
        gen = torch.Generator().manual_seed(seed)

        def batch(step):
            idx = torch.randint(0, len(y_train), (64,), generator=gen)
            xb, yb = x_train[idx], y_train[idx]
            hit = torch.rand(64, generator=gen) < 0.15
            xb = torch.where(hit.view(-1, 1, 1, 1), plant_patch(xb), xb)
            return xb, torch.where(hit, torch.full_like(yb, DIGIT_TARGET), yb)

        _train(module, batch, 1500, 3e-3, "trojan digits", on)
        return dict(module.state_dict()), {"task": "trojan-digits", "seed": seed, "steps": 1500}

    state, _ = _cached(f"trojan-digits-s{seed}", build)
    module = DigitsCNN().eval()
    module.load_state_dict(state)
    mask = digit_mask()
    task = Trojan(
        "digits", wrap(module), mask, DIGIT_TARGET, x_test, plant_patch(x_test), y_test,
        mask.expand(n_test, 8, 8).clone(), 0.0, 0.0,
    )  # fmt: skip
    return _score(task, y_test)


# ---- ground-truth checks -------------------------------------------------------------------------
def _row(task: str, metric: str, value: float, threshold: float, note: str = "") -> dict[str, Any]:
    row = {"tool": "", "task": task, "metric": metric, "value": float(value), "threshold": threshold}
    row["higher_is_better"] = True
    if note:
        row["note"] = note
    return row


def lm_attribution_ranks(task: Trojan, n: int) -> dict[str, list[int]]:
    """Rank (1 = top) of the trigger position for the first ``n`` triggered inputs whose clean label is not the
    target: under saliency (``grad_x_input``), IG at its defaults (``ig``), IG whose baseline is the mean
    token embedding at every position but the kept ``BOS`` (``ig_mean``) and IG whose baseline is the clean
    input's embeddings (``ig_counterfactual``: only the trigger position differs). ``*_ok``: 1 where IG's
    completeness holds (``IGResult.passes()``); ``ig_warned``: 1 where the default call raised a
    ``BaselineWarning``; ``ig_kept``: 1 where it kept the first token (with ``BOS`` kept and everything else
    zero this model answers the target, so the default moves every position, see ``integrated_gradients``)."""
    import warnings

    from ..attribution import BaselineWarning, integrated_gradients, saliency

    hf: Any = task.model.module  # the HF model; nn.Module does not declare get_input_embeddings
    embed = cast(nn.Embedding, hf.get_input_embeddings())
    keep = (task.clean_labels != task.target).nonzero().flatten()[:n]
    names = ("saliency", "ig", "ig_mean", "ig_counterfactual")
    ranks: dict[str, list[int]] = {k: [] for k in (*names, "ig_ok", "ig_mean_ok", "ig_counterfactual_ok")}
    ranks["ig_warned"], ranks["ig_kept"] = [], []
    for i in keep.tolist():
        ids, p = task.triggered_inputs[i : i + 1], int(task.trigger_positions[i])
        with torch.no_grad():
            base = embed(task.clean_inputs[i : i + 1])  # [1, pos, d_model]
            mean = embed.weight.mean(0).expand_as(base).clone()
            mean[:, 0] = base[:, 0]
        found = {"saliency": saliency(task.model, ids, target=task.target)}
        baselines: tuple[tuple[str, torch.Tensor | None], ...] = (
            ("ig", None),  # the default
            ("ig_mean", mean),
            ("ig_counterfactual", base),
        )
        for name, baseline in baselines:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ig = integrated_gradients(task.model, ids, target=task.target, baseline=baseline)
            if name == "ig":
                ranks["ig_warned"].append(int(any(issubclass(w.category, BaselineWarning) for w in caught)))
                ranks["ig_kept"].append(int(bool(ig.kept)))
            found[name] = ig.attributions
            ranks[f"{name}_ok"].append(int(ig.passes()))
        for name, scores in found.items():
            ranks[name].append(int((scores > scores[p]).sum()) + 1)
    return ranks


def lm_patching_localises(task: Trojan, n: int) -> float:
    """Fraction of inputs where denoising activation patching at ``blocks.0.resid_pre`` (the embeddings) has
    its largest effect at the trigger position: patching that one position moves the clean run to the target."""
    from ..patching import activation_patching

    hits = 0
    keep = (task.clean_labels != task.target).nonzero().flatten()[:n]
    for i in keep.tolist():
        clean_label = int(task.clean_labels[i])

        def metric(logits, c=clean_label):
            return logits[:, -1, task.target] - logits[:, -1, c]

        res = activation_patching(
            task.model, task.triggered_inputs[i : i + 1], task.clean_inputs[i : i + 1], metric,
            sites="blocks.0.resid_pre", positions="each", progress=False,
        )  # fmt: skip
        hits += (
            int(res.effects[0].argmax()) == int(task.trigger_positions[i])
            and float(res.effects[0].max()) > 0.5
        )
    return hits / max(1, len(keep))


def digits_attribution_hits(task: Trojan, n: int, steps: int = 32) -> dict[str, float]:
    """Fraction of triggered digits whose top pixel under |gradient x input| and under IG (black baseline,
    ``steps`` midpoints) lies in the trigger patch."""
    x = task.triggered_inputs[:n].clone().requires_grad_(True)
    module = task.model.module
    grad = torch.autograd.grad(module(x)[:, task.target].sum(), x)[0]
    sal = (grad * x).abs().flatten(1)
    total = torch.zeros_like(x)
    for a in (torch.arange(steps) + 0.5) / steps:
        xa = (a * x.detach()).requires_grad_(True)
        total += torch.autograd.grad(module(xa)[:, task.target].sum(), xa)[0]
    ig = (x.detach() * total / steps).flatten(1)
    mask = task.trigger.flatten()
    return {
        "saliency": float(mask[sal.argmax(1)].float().mean()),
        "ig": float(mask[ig.argmax(1)].float().mean()),
    }


def checks(quick: bool) -> list[dict[str, Any]]:
    """Ground-truth rows for the trojan tasks (see BENCH convention)."""
    n = 20 if quick else 100
    rows = []
    lm = trojan("lm", progress=False)
    rows.append(_row("trojan-lm", "attack_success", lm.attack_success, 0.95))
    rows.append(_row("trojan-lm", "clean_accuracy", lm.clean_accuracy, 0.9))
    ranks = lm_attribution_ranks(lm, n)
    suffix = {"saliency": "", "ig": "", "ig_mean": "_mean_embedding_baseline",
              "ig_counterfactual": "_counterfactual_baseline"}  # fmt: skip
    for name, end in suffix.items():
        top1 = sum(r == 1 for r in ranks[name]) / len(ranks[name])
        tool = "attribution.saliency" if name == "saliency" else "attribution.ig"
        note = ""
        if name == "saliency":
            note = "gradient x input sums to ~1% of f(x) - f(0) here (pre-norm); saliency raises FirstOrderWarning"
        if name == "ig":
            note = (f"default arguments; BaselineWarning on {sum(ranks['ig_warned'])} of "
                    f"{len(ranks['ig_warned'])} inputs; first token kept on {sum(ranks['ig_kept'])}")  # fmt: skip
        rows.append({**_row("trojan-lm", "trigger_top1_fraction" + end, top1, 0.9, note), "tool": tool})
        if name != "saliency":
            ok = sum(ranks[f"{name}_ok"]) / len(ranks[f"{name}_ok"])
            rows.append({**_row("trojan-lm", "completeness_pass_fraction" + end, ok, 0.9), "tool": tool})
    loc = lm_patching_localises(lm, max(5, n // 2))
    rows.append({**_row("trojan-lm", "trigger_localised_fraction", loc, 0.9), "tool": "patching.activation"})
    dg = trojan("digits", progress=False)
    rows.append(_row("trojan-digits", "attack_success", dg.attack_success, 0.95))
    rows.append(_row("trojan-digits", "clean_accuracy", dg.clean_accuracy, 0.9))
    for name, value in digits_attribution_hits(dg, 4 * n).items():
        rows.append(
            {**_row("trojan-digits", "top_pixel_in_patch", value, 0.9), "tool": f"attribution.{name}"}
        )
    for r in rows:
        r["tool"] = r["tool"] or "bench.trojan"
    return rows


def cache_path(kind: str = "lm", seed: int = 0) -> Path:
    """Where the trained weights of ``trojan(kind, seed)`` are cached."""
    return cache_root() / "bench" / f"trojan-{kind}-s{seed}-v{FORMAT}"
