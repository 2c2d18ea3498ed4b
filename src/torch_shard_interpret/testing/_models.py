"""Tiny models for tests: random Hugging Face models from configs (no download), a plain MLP and a CNN."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from transformers import PreTrainedModel

WORDS = (
    "the a an of to in on at and or but is was were be been it he she they we you i my your his her their "
    "mary john store drink gave went when paris rome city tower located eiffel colosseum good bad happy sad "
    "love hate great terrible think that this what who where why how not very so then there here cat dog "
    "house tree car book red blue green one two three four five six seven eight nine ten yes no . , ! ?"
).split()


def tiny_tokenizer():
    """A word-level ``PreTrainedTokenizerFast`` over ~100 common words (needs ``tokenizers`` and ``transformers``)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, "<bos>": 2, "<eos>": 3}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    from tokenizers import normalizers

    tok.normalizer = normalizers.Lowercase()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>", eos_token="<eos>"
    )


def tiny_config(arch: str = "llama", **overrides: Any):
    """A small HF config: vocab 128, hidden 64, 4 heads, 2 layers."""
    import transformers as T

    if arch == "llama":
        cfg = T.LlamaConfig(
            vocab_size=128,
            hidden_size=64,
            num_attention_heads=4,
            num_hidden_layers=2,
            intermediate_size=128,
            num_key_value_heads=2,
            max_position_embeddings=128,
        )
    elif arch == "gpt2":
        cfg = T.GPT2Config(
            vocab_size=128, n_embd=64, n_head=4, n_layer=2, n_positions=128, bos_token_id=2, eos_token_id=3
        )
    else:
        raise ValueError(f"tiny_config knows 'llama' and 'gpt2', not {arch!r}")
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


def tiny_hf_model(arch: str = "llama", seed: int = 0, **overrides: Any) -> PreTrainedModel:
    """A seeded random ``*ForCausalLM`` in eval mode."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(tiny_config(arch, **overrides)).eval()


class TinyMLP(nn.Module):
    """fc1 - ReLU - fc2, plus a branch that forward never calls (to test unreached sites)."""

    def __init__(self, d: int = 16, h: int = 32):
        super().__init__()
        self.fc1 = nn.Linear(d, h)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(h, d)
        self.unused = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class TinyCNN(nn.Module):
    """Two conv layers and a linear head over 8x8 single-channel images."""

    def __init__(self, n_classes: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 8, 3, padding=1)
        self.head = nn.Linear(8 * 8 * 8, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.head(x.flatten(1))
