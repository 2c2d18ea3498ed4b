"""Training script for the modular-addition task (Nanda et al. 2023): a one-layer GPT-2 groks a + b mod p.

Run ``python -m torch_shard_interpret.bench._modular_train OUT.safetensors`` to remake the shipped weights
(``bench/data/modular_p{P}.safetensors``); ``tsi.bench.modular_addition(train=True)`` trains in-process.
Inputs are ``[a, b, =]`` (``=`` is token ``p``); the answer is read at the last position. Full-batch AdamW
with weight decay 1.0, as in the paper; a smaller ``p`` and width than the paper's so it groks in minutes.
"""

from __future__ import annotations

import sys
import time

import torch

P = 59
D_MODEL = 128
N_HEADS = 4
D_MLP = 512
TRAIN_FRACTION = 0.5
LR = 3e-3
WEIGHT_DECAY = 1.0
EPOCHS = 2_500
SEED = 0


def make_model(p: int = P):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=p + 1, n_positions=3, n_embd=D_MODEL, n_layer=1, n_head=N_HEADS, n_inner=D_MLP,
        activation_function="relu", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        tie_word_embeddings=False, bos_token_id=p, eos_token_id=p,
    )  # fmt: skip
    return GPT2LMHeadModel(cfg)


def dataset(p: int = P, seed: int = SEED) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(inputs [p*p, 3], labels [p*p], train mask [p*p])``: every pair, a seeded training split."""
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.flatten(), b.flatten()
    inputs = torch.stack([a, b, torch.full_like(a, p)], dim=1)
    perm = torch.randperm(p * p, generator=torch.Generator().manual_seed(seed))
    train = torch.zeros(p * p, dtype=torch.bool)
    train[perm[: int(TRAIN_FRACTION * p * p)]] = True
    return inputs, (a + b) % p, train


def accuracy(model, inputs: torch.Tensor, labels: torch.Tensor, p: int = P) -> float:
    with torch.no_grad():
        logits = model(inputs).logits[:, -1, :p]
    return float((logits.argmax(-1) == labels).float().mean())


def train(p: int = P, epochs: int = EPOCHS, seed: int = SEED, log=None):
    torch.manual_seed(seed)
    model = make_model(p)
    inputs, labels, mask = dataset(p, seed)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY, betas=(0.9, 0.98))
    model.train()
    for epoch in range(epochs):
        logits = model(inputs[mask]).logits[:, -1, :p]
        loss = torch.nn.functional.cross_entropy(logits.float(), labels[mask])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if log is not None and epoch % 500 == 0:
            model.eval()
            log(epoch, float(loss.detach()), accuracy(model, inputs[~mask], labels[~mask], p))
            model.train()
    return model.eval()


if __name__ == "__main__":
    from safetensors.torch import save_file

    t0 = time.time()
    m = train(
        log=lambda e, loss, a: print(
            f"epoch {e} loss {loss:.4f} test acc {a:.3f} {time.time() - t0:.0f}s", flush=True
        )
    )
    inputs, labels, mask = dataset()
    print("final test accuracy", accuracy(m, inputs[~mask], labels[~mask]))
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, sys.argv[1])
