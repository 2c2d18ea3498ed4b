"""EAP edge scores: tsi against auto-circuit 1.0.1 on one GPT-2 in both libraries, in one run.

auto-circuit needs TransformerLens's ``HookedTransformer`` (TransformerLens < 3), so this runs in its own venv
(``bash benchmarks/setup_autocircuit.sh``). The model is a GPT-2 of random weights (seed 0) built as a Hugging
Face ``GPT2LMHeadModel``, which tsi wraps as it is, and copied into a ``HookedTransformer`` with
TransformerLens's own ``convert_gpt2_weights``; the two give the same logits to float rounding (printed).

Both libraries score the same edges (input, every head and MLP -> every head's q/k/v input, MLP and the
logits) on the same random clean/corrupt token pairs, with the logit difference of two tokens at the last
position as the metric:

- tsi: ``tsi.circuits.attribute(model, clean, corrupt, metric, method="eap")``;
- auto-circuit: ``mask_gradient_prune_scores(grad_function="logit", answer_function="avg_diff",
  mask_val=0.0)``, its fast EAP (its docs: equal to its reference ``edge_attribution_patching_prune_scores``)
  on ``patchable_model(factorized=True, separate_qkv=True, slice_output="last_seq")``.

Each case runs in its own subprocess, so its peak memory is its own (``VmHWM`` reset after warm-up, minus the
resident set then). Time is reported as wall seconds and as multiples of that library's own plain forward +
backward of the metric (HF model for tsi, an unpatched HookedTransformer for auto-circuit), and the warm ratio
is the median of ``ROUNDS`` rounds that time both back to back. Edge scores are compared by name.

    bash benchmarks/setup_autocircuit.sh
    benchmarks/.venv-autocircuit/bin/python benchmarks/bench_autocircuit.py [--threads 1] [--shapes tiny,small]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from _peak import reset_peak, rss  # benchmarks/, the script's own folder

ROOT = Path(__file__).resolve().parent.parent
# (layers, d_model, heads, vocab, prompts, tokens): a 4-layer toy, and GPT-2 small's shape
SHAPES = {
    "tiny": (4, 256, 8, 1000, 8, 32),
    "small": (12, 768, 12, 50257, 8, 32),
    "small-256": (12, 768, 12, 50257, 1, 256),
}
CASES = ("tsi-fwdbwd", "tsi-eap", "ac-fwdbwd", "ac-eap", "paired")
ROUNDS = 5
A_TOKEN, B_TOKEN = 11, 22


def hf_model(shape: str):
    from transformers import GPT2Config, GPT2LMHeadModel

    n_layer, d, h, vocab, _, tokens = SHAPES[shape]
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=n_layer, n_embd=d, n_head=h, vocab_size=vocab, n_positions=max(64, tokens),
                     activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)  # fmt: skip
    return GPT2LMHeadModel(cfg).eval()


def tl_model(hf):
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights

    c = hf.config
    cfg = HookedTransformerConfig(n_layers=c.n_layer, d_model=c.n_embd, n_ctx=c.n_positions, d_head=c.n_embd // c.n_head,
                                  n_heads=c.n_head, d_mlp=4 * c.n_embd, d_vocab=c.vocab_size, act_fn="gelu_new",
                                  normalization_type="LN", positional_embedding_type="standard",
                                  default_prepend_bos=False)  # fmt: skip
    cfg.use_attn_result = cfg.use_split_qkv_input = cfg.use_hook_mlp_in = True  # auto-circuit asserts these
    tl = HookedTransformer(cfg)
    tl.load_state_dict(convert_gpt2_weights(hf, cfg), strict=False)
    return tl.eval()


def prompts(shape: str):
    *_, vocab, n, tokens = SHAPES[shape]
    gen = torch.Generator().manual_seed(1)
    clean = torch.randint(100, vocab, (n, tokens), generator=gen)
    corrupt = torch.randint(100, vocab, (n, tokens), generator=gen)
    return clean, corrupt


def tsi_metric(logits):
    return logits[:, -1, A_TOKEN] - logits[:, -1, B_TOKEN]


def ac_loader(clean, corrupt):
    from auto_circuit.data import PromptDataLoader, PromptDataset

    n = clean.shape[0]
    ds = PromptDataset(clean, corrupt, [torch.tensor([A_TOKEN])] * n, [torch.tensor([B_TOKEN])] * n)
    return PromptDataLoader(ds, seq_len=None, diverge_idx=0, batch_size=n, shuffle=False)


def _ac_scores(pm, loader) -> dict[str, float]:
    from auto_circuit.prune_algos.mask_gradient import mask_gradient_prune_scores

    ps = mask_gradient_prune_scores(
        pm, loader, None, grad_function="logit", answer_function="avg_diff", mask_val=0.0
    )
    return {e.name: float(ps[e.dest.module_name][e.patch_idx]) for e in pm.edges}


def _setup(case: str, shape: str):
    """What a case needs, built before the timed part: ``(step, scores)`` where ``step()`` runs it once."""
    hf = hf_model(shape)
    clean, corrupt = prompts(shape)
    if case.startswith("tsi"):
        import torch_shard_interpret as tsi

        model = tsi.wrap(hf)
        if case == "tsi-fwdbwd":
            return lambda: model.run(clean, cache="embed", grad=lambda r: tsi_metric(r.logits).mean())

        def eap():
            return tsi.circuits.attribute(model, clean, corrupt, tsi_metric, method="eap", progress=False)

        return eap
    tl = tl_model(hf)
    if case == "ac-fwdbwd":

        def fwdbwd():
            tl.zero_grad(set_to_none=True)
            tsi_metric(tl(clean)).mean().backward()

        return fwdbwd
    from auto_circuit.utils.graph_utils import patchable_model

    pm = patchable_model(
        tl, factorized=True, slice_output="last_seq", separate_qkv=True, device=torch.device("cpu")
    )
    loader = ac_loader(clean, corrupt)
    return lambda: _ac_scores(pm, loader)


def child(case: str, shape: str) -> dict:
    if case == "paired":
        return {"case": case, **_paired(shape)}
    step = _setup(case, shape)
    step()  # warm-up
    base = reset_peak()
    t0 = time.perf_counter()
    out = step()
    seconds = time.perf_counter() - t0
    res = {"case": case, "seconds": seconds, "peak_bytes": rss("VmHWM") - base}
    if case == "tsi-eap":
        res["scores"] = out.scores
    elif case == "ac-eap":
        res["scores"] = out
    return res


def _paired(shape: str) -> dict:
    """Median over ``ROUNDS`` warm rounds of each method's time over the plain HF forward + backward timed just
    before it, so that a change in the machine's load between rounds cancels out of each ratio."""
    steps = {c: _setup(c, shape) for c in ("tsi-fwdbwd", "tsi-eap", "ac-fwdbwd", "ac-eap")}
    for s in steps.values():
        s()
    ratios: dict[str, list[float]] = {c: [] for c in ("tsi-eap", "ac-eap", "ac-fwdbwd")}
    for _ in range(ROUNDS):
        for case in ratios:
            t0 = time.perf_counter()
            steps["tsi-fwdbwd"]()
            t1 = time.perf_counter()
            steps[case]()
            ratios[case].append((time.perf_counter() - t1) / (t1 - t0))
    return {k: sorted(v)[len(v) // 2] for k, v in ratios.items()}


def run_child(case: str, shape: str, threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS=str(threads), TQDM_DISABLE="1")
    cmd = [sys.executable, __file__, "--child", case, "--shapes", shape, "--threads", str(threads)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600, check=False)
    if out.returncode != 0:
        return {"case": case, "error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _name(tsi_edge: str) -> str:
    """tsi's MIB edge name -> auto-circuit's (``a1.h3->a2.h0<q>`` -> ``A1.3->A2.0.Q``)."""

    def node(n: str) -> str:
        if n == "input":
            return "Resid Start"
        if n == "logits":
            return "Resid End"
        if n.startswith("m"):
            return f"MLP {n[1:]}"
        layer, rest = n[1:].split(".h")
        head, _, qkv = rest.partition("<")
        return f"A{layer}.{head}" + (f".{qkv[0].upper()}" if qkv else "")

    src, dst = tsi_edge.split("->")
    return f"{node(src)}->{node(dst)}"


def _rank(x: torch.Tensor) -> torch.Tensor:
    r = torch.empty_like(x)
    r[x.argsort()] = torch.arange(len(x), dtype=x.dtype)
    return r


def compare(tsi_scores: dict[str, float], ac_scores: dict[str, float]) -> dict:
    names = list(tsi_scores)
    missing = [n for n in names if _name(n) not in ac_scores]
    a = torch.tensor([tsi_scores[n] for n in names], dtype=torch.float64)
    # auto-circuit differentiates the loss -metric, so its scores are the negatives of EAP's
    b = torch.tensor([-ac_scores.get(_name(n), float("nan")) for n in names], dtype=torch.float64)
    pearson = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
    spearman = torch.corrcoef(torch.stack([_rank(a.abs()), _rank(b.abs())]))[0, 1].item()
    k = max(1, len(a) // 100)
    top_a, top_b = set(a.abs().topk(k).indices.tolist()), set(b.abs().topk(k).indices.tolist())
    return {
        "edges": len(names), "ac_edges": len(ac_scores), "missing": len(missing), "pearson": pearson,
        "spearman_abs": spearman, "top1pct_overlap": len(top_a & top_b) / k,
        "max_abs_diff": (a - b).abs().max().item(), "max_abs_score": a.abs().max().item(),
    }  # fmt: skip


def logits_agree(shape: str) -> float:
    hf = hf_model(shape)
    clean, _ = prompts(shape)
    with torch.no_grad():
        return (hf(clean[:2]).logits - tl_model(hf)(clean[:2])).abs().max().item()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--child", default=None)
    ap.add_argument("--shapes", default="tiny,small,small-256")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child(args.child, args.shapes)))
        return
    from importlib.metadata import version

    import auto_circuit  # noqa: F401  (fail early, outside the children, when the venv lacks it)

    print(f"auto-circuit {version('auto-circuit')}, transformer-lens {version('transformer-lens')}, "
          f"torch {torch.__version__}, {args.threads} thread(s)\n")  # fmt: skip
    print("| shape | prompts x tokens | edges | library | EAP s | own fwd+bwd s | EAP / own fwd+bwd | "
          "warm EAP / HF fwd+bwd (paired median) | EAP peak MiB | own fwd+bwd peak MiB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    agreement, tl_cost = {}, {}
    for shape in args.shapes.split(","):
        res = {c: run_child(c, shape, args.threads) for c in CASES}
        paired = res["paired"]
        tl_cost[shape] = paired.get("ac-fwdbwd")
        layers, d, heads, _, n, tokens = SHAPES[shape]
        for lib, label in (("tsi", "tsi"), ("ac", "auto-circuit")):
            e, f = res[f"{lib}-eap"], res[f"{lib}-fwdbwd"]
            if "error" in e or "error" in f:
                print(f"| {shape} | | | {label} | error: {e.get('error') or f.get('error')} | | | | | |")
                continue
            warm = paired.get(f"{lib}-eap")
            print(f"| {shape} ({layers}L, d {d}, {heads}H) | {n} x {tokens} | {len(e['scores'])} | {label} | "
                  f"{e['seconds']:.2f} | {f['seconds']:.3f} | {e['seconds'] / f['seconds']:.2f} | "
                  f"{'' if warm is None else f'{warm:.2f}'} | {e['peak_bytes'] / 2**20:.0f} | "
                  f"{f['peak_bytes'] / 2**20:.0f} |")  # fmt: skip
        if "scores" in res["tsi-eap"] and "scores" in res["ac-eap"]:
            agreement[shape] = compare(res["tsi-eap"]["scores"], res["ac-eap"]["scores"])
            agreement[shape]["logits_max_abs_diff"] = logits_agree(shape)
    for shape, c in tl_cost.items():
        if c is not None:
            print(f"\n{shape}: the HookedTransformer's own fwd+bwd (split q/k/v inputs and per-head results on, as "
                  f"auto-circuit needs) is {c:.2f}x the HF model's (warm, paired median)")  # fmt: skip
    print("\n| shape | edges (tsi / auto-circuit) | unmatched | logits max diff | Pearson | Spearman of abs | "
          "top-1% overlap | max score diff / max score |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for shape, a in agreement.items():
        print(f"| {shape} | {a['edges']} / {a['ac_edges']} | {a['missing']} | {a['logits_max_abs_diff']:.1e} | "
              f"{a['pearson']:.6f} | {a['spearman_abs']:.6f} | {a['top1pct_overlap']:.2f} | "
              f"{a['max_abs_diff']:.1e} / {a['max_abs_score']:.2e} |")  # fmt: skip


if __name__ == "__main__":
    main()
