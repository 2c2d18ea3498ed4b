"""Vision benchmarks, side by side in one run: feature-visualisation steps/s against torch-lucent, and
integrated-gradients images/s against captum, on the same models and inputs.

A. feature visualisation of ``layer3`` channel 12 of a torchvision ResNet-18 (random weights, 10 classes),
   one 128x128 RGB image, FFT parameterisation with colour decorrelation and each library's standard
   transforms, Adam lr 0.05: tsi ``visualize`` vs lucent ``render_vis`` (``preprocess=False``), 32 steps each.
B. integrated gradients, black baseline, 32 Gauss-Legendre steps, internal batch 64: on the embedded digits CNN
   (64 images 8x8) and on the ResNet-18 (8 images 64x64): tsi ``integrated_gradients`` vs captum
   ``IntegratedGradients``.

Cases are interleaved (each round runs every case once); medians over rounds. It needs torchvision, lucent and
captum, which do not install beside the project's torch 2.13 CPU wheel; run it in the architecture venv:

    make test-archs   # creates .venv-archs
    .venv-archs/bin/pip install torch-lucent captum scikit-learn pillow kornia ipython
    PYTHONPATH=src OMP_NUM_THREADS=1 .venv-archs/bin/python benchmarks/bench_vision.py

Results go to stdout and into benchmarks/README.md between the vision markers (``--no-write`` to skip).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import platform
import re
import statistics
import time
import warnings
from pathlib import Path

import torch
import torchvision
from captum.attr import IntegratedGradients
from lucent.optvis import objectives, param, render, transform

import torch_shard_interpret.vision as tv
from torch_shard_interpret.vision._data import digits

warnings.filterwarnings("ignore")
README = Path(__file__).with_name("README.md")
BEGIN, END = "<!-- vision results begin -->", "<!-- vision results end -->"


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(num_classes=10).eval()
    for p in resnet.parameters():
        p.requires_grad_(False)
    cnn = tv.load("digits-cnn", progress=False)
    images, labels = digits()
    steps = args.steps

    def tsi_vis():
        tv.visualize(
            resnet, tv.channel("layer3:output", 12), steps=steps, shape=(1, 3, 128, 128), progress=False
        )

    def lucent_vis():
        render.render_vis(
            resnet, objectives.channel("layer3", 12), param_f=lambda: param.image(128),
            transforms=transform.standard_transforms, thresholds=(steps,), show_image=False, progress=False,
            preprocess=False, show_inline=False,
        )  # fmt: skip

    x_small, y_small = images[:64], labels[:64]
    x_big = torch.rand(8, 3, 64, 64)
    y_big = torch.arange(8) % 10
    ig = IntegratedGradients(cnn.module)
    ig_big = IntegratedGradients(resnet)

    cases = {
        "featvis tsi": (tsi_vis, steps, "steps/s"),
        "featvis lucent": (lucent_vis, steps, "steps/s"),
        "IG digits tsi": (lambda: tv.integrated_gradients(cnn, x_small, y_small, steps=32, batch_size=64), 64, "images/s"),
        "IG digits captum": (lambda: ig.attribute(x_small, target=y_small, n_steps=32, internal_batch_size=64), 64,
                             "images/s"),
        "IG resnet18 tsi": (lambda: tv.integrated_gradients(resnet, x_big, y_big, steps=32, batch_size=64), 8,
                            "images/s"),
        "IG resnet18 captum": (lambda: ig_big.attribute(x_big, target=y_big, n_steps=32, internal_batch_size=64), 8,
                               "images/s"),
    }  # fmt: skip
    for fn, _, _ in cases.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in cases}
    names = list(cases)
    for r in range(args.rounds):
        for k in names[r % len(names) :] + names[: r % len(names)]:
            times[k].append(timed(cases[k][0]))
    lines = [
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, lucent {md.version('torch-lucent')}, "
        f"captum {md.version('captum')}, {platform.processor() or platform.machine()}, "
        f"threads {torch.get_num_threads()}, {args.rounds} rounds (medians)",
        "",
        "| case | time (s) | rate |",
        "|---|---:|---:|",
    ]
    for k, (_, n, unit) in cases.items():
        t = statistics.median(times[k])
        lines.append(f"| {k} | {t:.3f} | {n / t:.1f} {unit} |")
    text = "\n".join(lines)
    print(text)
    if not args.no_write and README.exists():
        body = README.read_text()
        block = f"{BEGIN}\n{text}\n{END}"
        if BEGIN in body:
            body = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, body, flags=re.S)
        else:
            body += f"\n## Vision (benchmarks/bench_vision.py)\n\n{block}\n"
        README.write_text(body)


if __name__ == "__main__":
    main()
