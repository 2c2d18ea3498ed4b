"""Tiny random models of every registered architecture (and the generic fallback), built from HF configs.

``case`` is a fixture over ``ARCHS``: each ``Case`` is built once per session and caches every canonical site.
"""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi

transformers = pytest.importorskip("transformers")

V, D, H, L, F, B, P = 100, 64, 4, 2, 128, 2, 7

_LLAMA_LIKE = dict(
    vocab_size=V,
    hidden_size=D,
    num_attention_heads=H,
    num_key_value_heads=2,
    num_hidden_layers=L,
    intermediate_size=F,
    max_position_embeddings=64,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)
_GEMMA = dict(_LLAMA_LIKE, head_dim=16)
_NEOX = dict(
    vocab_size=V,
    hidden_size=D,
    num_attention_heads=H,
    num_hidden_layers=L,
    intermediate_size=F,
    max_position_embeddings=64,
    rotary_pct=0.5,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)
_OPT = dict(
    vocab_size=V,
    hidden_size=D,
    num_attention_heads=H,
    num_hidden_layers=L,
    ffn_dim=F,
    word_embed_proj_dim=D,
    max_position_embeddings=64,
    pad_token_id=1,
)
_BERT = dict(
    vocab_size=V,
    hidden_size=D,
    num_attention_heads=H,
    num_hidden_layers=L,
    intermediate_size=F,
    max_position_embeddings=66,
    pad_token_id=1,
    type_vocab_size=1,
)

# id: (config class, config kwargs, model class, adapter name, block style)
ARCHS = {
    "gpt2": (
        "GPT2Config",
        dict(
            vocab_size=V,
            n_embd=D,
            n_head=H,
            n_layer=L,
            n_inner=F,
            n_positions=64,
            bos_token_id=0,
            eos_token_id=0,
        ),
        None,
        "gpt2",
        "sequential",
    ),
    "llama": ("LlamaConfig", _LLAMA_LIKE, None, "llama", "sequential"),
    "mistral": ("MistralConfig", dict(_LLAMA_LIKE, head_dim=16), None, "llama", "sequential"),
    "qwen2": ("Qwen2Config", _LLAMA_LIKE, None, "llama", "sequential"),
    "qwen3": ("Qwen3Config", dict(_LLAMA_LIKE, head_dim=16), None, "llama", "sequential"),
    "olmo": ("OlmoConfig", _LLAMA_LIKE, None, "llama", "sequential"),
    "olmo2": ("Olmo2Config", _LLAMA_LIKE, None, "olmo2", "sequential"),
    "mixtral": (
        "MixtralConfig",
        dict(_LLAMA_LIKE, num_local_experts=4, num_experts_per_tok=2, head_dim=16),
        None,
        "mixtral",
        "sequential",
    ),
    "phi3": ("Phi3Config", _LLAMA_LIKE, None, "phi3", "sequential"),
    "gemma": ("GemmaConfig", _GEMMA, None, "gemma", "sequential"),
    "gemma2": (
        "Gemma2Config",
        dict(_GEMMA, query_pre_attn_scalar=16, sliding_window=4),
        None,
        "gemma2",
        "sequential",
    ),
    "gemma3": (
        "Gemma3TextConfig",
        dict(_GEMMA, query_pre_attn_scalar=16, sliding_window=4),
        "Gemma3ForCausalLM",
        "gemma2",
        "sequential",
    ),
    "gpt_neox": ("GPTNeoXConfig", _NEOX, None, "gpt_neox", "parallel"),
    "gpt_neox_seq": (
        "GPTNeoXConfig",
        dict(_NEOX, use_parallel_residual=False),
        None,
        "gpt_neox",
        "sequential",
    ),
    "gptj": (
        "GPTJConfig",
        dict(
            vocab_size=V,
            n_embd=D,
            n_head=H,
            n_layer=L,
            n_inner=F,
            n_positions=64,
            rotary_dim=8,
            bos_token_id=0,
            eos_token_id=0,
        ),
        None,
        "gptj",
        "parallel",
    ),
    "opt": ("OPTConfig", _OPT, None, "opt", "sequential"),
    "opt_postnorm": ("OPTConfig", dict(_OPT, do_layer_norm_before=False), None, "opt", "post_norm"),
    "cohere": ("CohereConfig", _LLAMA_LIKE, None, "cohere", "parallel"),
    "bert": ("BertConfig", _BERT, "BertForMaskedLM", "bert", "post_norm"),
    "roberta": ("RobertaConfig", _BERT, "RobertaForMaskedLM", "roberta", "post_norm"),
    # No registered adapter: the generic fallback finds the parts by structure.
    "stablelm": ("StableLmConfig", _LLAMA_LIKE, None, "generic", "sequential"),
    "stablelm_parallel": (
        "StableLmConfig",
        dict(_LLAMA_LIKE, use_parallel_residual=True),
        None,
        "generic",
        "parallel",
    ),
}


# Canonical top-level sites an architecture lacks, and architectures whose `embed` is not the block-0 input.
MISSING = {"opt_postnorm": {"final_norm"}}  # OPT-350m style: no final LayerNorm
EMBED_NOT_RESID = {
    "opt",
    "opt_postnorm",
}  # OPT adds learned positions with a plain `+` after the token embedding


class Case:
    """One architecture: the module, its wrapper, one run caching every canonical site, and references."""

    def __init__(self, key: str):
        cfg_cls, kwargs, model_cls, self.name, self.style = ARCHS[key]
        self.key = key
        config = getattr(transformers, cfg_cls)(**kwargs)
        torch.manual_seed(0)
        if model_cls is None:
            self.module = transformers.AutoModelForCausalLM.from_config(config)
        else:
            self.module = getattr(transformers, model_cls)(config)
        self.module.eval()
        self.ids = torch.randint(3, V, (B, P), generator=torch.Generator().manual_seed(1))
        self.model = tsi.wrap(self.module)
        self.n_layers = len([s for s in self.model.sites("blocks.*.resid_pre")])
        canonical = [s for s in self.model.sites() if ":" not in s]
        # Parity under the model's own (default) attention, before switching to eager.
        with torch.no_grad():
            self.ref_default = self.module(input_ids=self.ids).logits
        self.run_default = self.model.run(
            self.ids, cache=[s for s in canonical if not s.endswith(("pattern", "scores"))]
        )
        if self.model.attention == "eager":  # Gemma 2 defaults to eager (SDPA cannot soft-cap)
            self.model.set_attention("eager")
        else:
            with pytest.warns(UserWarning, match="eager"):
                self.model.set_attention("eager")
        with torch.no_grad():
            self.ref = self.module(input_ids=self.ids).logits
        raw = []
        for i in range(self.n_layers):
            raw.append(self.raw_o_proj(i))
            if self.mlp_path(i) is not None:
                raw.append(f"{self.mlp_path(i)}:input")
        self.run = self.model.run(self.ids, cache=canonical + raw)
        self.cache = self.run.cache

    def raw_o_proj(self, i: int) -> str:
        return f"{self.model.site(f'blocks.{i}.attn.z').module_path}:output"

    def mlp_path(self, i: int) -> str | None:
        mlp = self.model.adapter.mlp
        return None if mlp is None else f"{self.model.site(f'blocks.{i}.resid_pre').module_path}.{mlp}"


_CASES: dict[str, Case] = {}


@pytest.fixture(params=list(ARCHS))
def case(request) -> Case:
    if request.param not in _CASES:
        _CASES[request.param] = Case(request.param)
    return _CASES[request.param]
