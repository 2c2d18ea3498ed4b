"""SAE folders that lie: every bad cfg.json or safetensors file is refused with one sentence that names the
file (and the field or tensor), before any tensor is allocated; ``tsi serve`` refuses the same folders."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

import torch_shard_interpret as tsi
from torch_shard_interpret.sae import SAEError, _io

D_IN, D_SAE = 8, 16
HOOK = "blocks.0.hook_resid_post"


def _cfg(**changes: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "architecture": "standard",
        "d_in": D_IN,
        "d_sae": D_SAE,
        "dtype": "float32",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "metadata": {"hook_name": HOOK, "sae_lens_version": "6.54.12"},
    }
    for key, value in changes.items():
        if value is _DROP:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    return cfg


def _weights(**changes: Any) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    w = {
        "W_enc": torch.randn(D_IN, D_SAE, generator=g),
        "b_enc": torch.randn(D_SAE, generator=g),
        "W_dec": torch.randn(D_SAE, D_IN, generator=g),
        "b_dec": torch.randn(D_IN, generator=g),
    }
    for key, value in changes.items():
        if value is _DROP:
            w.pop(key)
        else:
            w[key] = value
    return w


_DROP = object()


def _folder(root: Path, cfg: Any = None, weights: dict[str, torch.Tensor] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    text = cfg if isinstance(cfg, (str, bytes)) else json.dumps(_cfg() if cfg is None else cfg)
    (root / "cfg.json").write_bytes(text.encode() if isinstance(text, str) else text)
    save_file(_weights() if weights is None else weights, str(root / "sae_weights.safetensors"))
    return root


def _raw_safetensors(path: Path, header: Any, data: bytes = b"", length: int | None = None) -> None:
    blob = json.dumps(header).encode() if not isinstance(header, bytes) else header
    n = len(blob) if length is None else length
    path.write_bytes(struct.pack("<Q", n) + blob + data)


@pytest.fixture
def nothing_allocated(monkeypatch):
    """Fail the test if the loader builds the SAE or reads a tensor."""
    import safetensors

    def boom(*args, **kwargs):
        raise AssertionError("the loader allocated before validating")

    monkeypatch.setattr(_io, "make", boom)
    monkeypatch.setattr(safetensors, "safe_open", boom)


def _refused(path: Path, *needles: str) -> str:
    with pytest.raises(SAEError) as info:
        tsi.sae.load(path)
    msg = str(info.value)
    assert "\n" not in msg and "Traceback" not in msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    return msg


# ---- cfg.json -----------------------------------------------------------------------------------
CFG_CASES = {
    "a JSON list": ("[1, 2, 3]", ["cfg.json", "array, not an object"]),
    "a JSON string": ('"standard"', ["cfg.json", "string, not an object"]),
    "JSON null": ("null", ["cfg.json", "null, not an object"]),
    "a number": ("16", ["cfg.json", "number, not an object"]),
    "binary": (b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x01", ["cfg.json", "binary"]),
    "truncated JSON": ('{"d_in": 8, "d_sae": ', ["cfg.json", "not valid JSON"]),
    "empty": ("", ["cfg.json", "not valid JSON"]),
    "nested 100k deep": ("[" * 100_000 + "]" * 100_000, ["cfg.json"]),
    "d_sae 1e12 (float)": (_cfg(d_sae=1e12), ["cfg.json", "'d_sae'", "positive integer"]),
    "d_sae a string": (_cfg(d_sae="16"), ["cfg.json", "'d_sae'", "string"]),
    "d_in true": (_cfg(d_in=True), ["'d_in'", "boolean"]),
    "d_in 0": (_cfg(d_in=0), ["'d_in'", "positive integer"]),
    "d_in negative": (_cfg(d_in=-8), ["'d_in'", "positive integer"]),
    "d_sae missing": (_cfg(d_sae=_DROP), ["cfg.json", "'d_sae'"]),
    "d_sae null": (_cfg(d_sae=None), ["'d_sae'", "null"]),
    "d_out a list": (_cfg(d_out=[12]), ["'d_out'", "array"]),
    "k a string": (_cfg(architecture="topk", k="4"), ["'k'", "positive integer"]),
    "k 0": (_cfg(architecture="topk", k=0), ["'k'", "positive integer"]),
    "k above d_sae": (_cfg(architecture="topk", k=17), ["cfg.json", "k must be between 1 and d_sae=16"]),
    "topk without k": (_cfg(architecture="topk"), ["cfg.json", "needs the field 'k'"]),
    "activation_fn_kwargs.k a float": (
        _cfg(activation_fn_str="topk", activation_fn_kwargs={"k": 4.5}),
        ["activation_fn_kwargs.k"],
    ),
    "activation_fn_kwargs a list": (_cfg(activation_fn_kwargs=[4]), ["'activation_fn_kwargs'", "object"]),
    "architecture a number": (_cfg(architecture=3), ["'architecture'", "a string"]),
    "architecture unknown": (_cfg(architecture="mystery"), ["cfg.json", "'mystery'", "supported"]),
    "architecture by substring": (_cfg(architecture="my_topk_variant"), ["unsupported SAE architecture"]),
    "architecture gated": (_cfg(architecture="gated"), ["cfg.json", "gated SAEs are not supported"]),
    "v5 activation tanh-relu": (_cfg(activation_fn_str="tanh-relu"), ["'tanh-relu'", "not supported"]),
    "apply_b_dec_to_input a string": (
        _cfg(apply_b_dec_to_input="yes"),
        ["'apply_b_dec_to_input'", "true or false"],
    ),
    "rescale flag a string": (
        _cfg(architecture="topk", k=4, rescale_acts_by_decoder_norm="true"),
        ["'rescale_acts_by_decoder_norm'"],
    ),
    "metadata a list": (_cfg(metadata=["x"]), ["'metadata'", "JSON object"]),
    "metadata.hook_name a number": (_cfg(metadata={"hook_name": 3}), ["'metadata.hook_name'", "a string"]),
    "hook_name a dict": (_cfg(hook_name={"a": 1}), ["'hook_name'", "a string"]),
    "dtype int64": (_cfg(dtype="int64"), ["'dtype'", "floating"]),
    "dtype unknown": (_cfg(dtype="float99"), ["'dtype'", "float99"]),
    "dtype a number": (_cfg(dtype=32), ["'dtype'", "a string"]),
    "normalize layer_norm": (_cfg(normalize_activations="layer_norm"), ["layer_norm", "not supported"]),
    "expected_average without factor": (
        _cfg(normalize_activations="expected_average_only_in"),
        ["norm_scaling_factor"],
    ),
    "norm factor negative": (
        _cfg(normalize_activations="expected_average_only_in", norm_scaling_factor=-2.0),
        ["'norm_scaling_factor'", "positive"],
    ),
    "norm factor NaN": ('{"d_in": 8, "d_sae": 16, "norm_scaling_factor": NaN}', ["'norm_scaling_factor'"]),
    "l1_coefficient a string": (_cfg(l1_coefficient="big"), ["'l1_coefficient'", "finite number"]),
    "oversized cfg.json": (json.dumps(_cfg(pad="x" * (2**20 + 10))), ["cfg.json", "bytes"]),
}


@pytest.mark.parametrize("case", CFG_CASES)
def test_bad_cfg_json_is_named_before_allocating(case, tmp_path, nothing_allocated):
    cfg, needles = CFG_CASES[case]
    _refused(_folder(tmp_path / "sae", cfg), *needles)


def test_d_sae_1e12_as_an_integer_fails_against_the_header(tmp_path, nothing_allocated):
    msg = _refused(
        _folder(tmp_path / "sae", _cfg(d_sae=10**12)), "sae_weights.safetensors", "W_enc", "[8, 16]"
    )
    assert "1000000000000" in msg


# ---- the safetensors header ---------------------------------------------------------------------
def _f32(shape: list[int], begin: int) -> dict[str, Any]:
    n = 4 * (shape[0] * shape[1] if len(shape) == 2 else (shape[0] if shape else 1))
    return {"dtype": "F32", "shape": shape, "data_offsets": [begin, begin + n]}


def _good_header() -> tuple[dict[str, Any], int]:
    h, at = {}, 0
    for name, shape in (
        ("W_enc", [D_IN, D_SAE]),
        ("b_enc", [D_SAE]),
        ("W_dec", [D_SAE, D_IN]),
        ("b_dec", [D_IN]),
    ):
        h[name] = _f32(shape, at)
        at = h[name]["data_offsets"][1]
    return h, at


def _with(name: str, **entry: Any) -> tuple[dict[str, Any], int]:
    h, n = _good_header()
    h[name] = {**h[name], **entry}
    return h, n


HEADER_CASES: dict[str, tuple[Any, list[str]]] = {
    "huge claimed tensor": (
        lambda: ({"W_enc": {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": [0, 4 * 10**12]}}, 64),
        ["W_enc", "holds only 64 bytes"],
    ),
    "header not JSON": (lambda: (b"\xff\xfe not json", 0), ["not a safetensors file", "not JSON"]),
    "header a list": (lambda: ([1, 2], 0), ["not a JSON object"]),
    "integer dtype": (lambda: _with("W_enc", dtype="I64"), ["W_enc", "I64", "floating"]),
    "unknown dtype": (lambda: _with("b_enc", dtype="F128"), ["b_enc", "unknown dtype"]),
    "negative shape": (lambda: _with("b_dec", shape=[-8]), ["b_dec", "non-negative integers"]),
    "shape not a list": (lambda: _with("b_dec", shape="8"), ["b_dec", "shape"]),
    "offsets reversed": (lambda: _with("b_enc", data_offsets=[64, 0]), ["b_enc", "data_offsets"]),
    "offsets not numbers": (lambda: _with("b_enc", data_offsets=["0", "64"]), ["b_enc", "data_offsets"]),
    "span disagrees with shape": (
        lambda: _with("b_enc", data_offsets=[512, 520]),
        ["b_enc", "needs 64 bytes"],
    ),
    "past the end of the file": (
        lambda: ({**_good_header()[0], "extra": _f32([10**5], 0)}, _good_header()[1]),
        ["extra", "holds only"],
    ),
    "overlapping tensors": (lambda: _with("b_dec", data_offsets=[0, 32]), ["overlap"]),
    "entry not a record": (
        lambda: ({**_good_header()[0], "W_enc": 5}, _good_header()[1]),
        ["W_enc", "record"],
    ),
}


@pytest.mark.parametrize("case", HEADER_CASES)
def test_bad_safetensors_header_is_named_before_allocating(case, tmp_path, nothing_allocated):
    make, needles = HEADER_CASES[case]
    header, nbytes = make()
    folder = _folder(tmp_path / "sae")
    _raw_safetensors(folder / "sae_weights.safetensors", header, b"\0" * nbytes)
    _refused(folder, "sae_weights.safetensors", *needles)


@pytest.mark.parametrize(
    ("blob", "needle"),
    [(b"", "only 0 bytes"), (b"\x05\x00", "only 2 bytes"), (struct.pack("<Q", 10**15) + b"{}", "claims")],
)
def test_truncated_or_lying_length_field(blob, needle, tmp_path, nothing_allocated):
    folder = _folder(tmp_path / "sae")
    (folder / "sae_weights.safetensors").write_bytes(blob)
    _refused(folder, "sae_weights.safetensors", needle)


# ---- tensors that disagree with cfg.json --------------------------------------------------------
TENSOR_CASES = {
    "W_dec missing": (_cfg(), _weights(W_dec=_DROP), ["lacks W_dec"]),
    "W_enc transposed": (_cfg(), _weights(W_enc=torch.randn(D_SAE, D_IN)), ["W_enc", "[16, 8]", "[8, 16]"]),
    "b_dec too short": (_cfg(), _weights(b_dec=torch.randn(D_IN - 1)), ["b_dec", "[7]"]),
    "d_in disagrees": (_cfg(d_in=12), _weights(), ["W_enc", "d_in=12"]),
    "stray W_skip on a standard SAE": (
        _cfg(),
        _weights(W_skip=torch.zeros(D_IN, D_IN)),
        ["W_skip", "does not use"],
    ),
    "jumprelu without threshold": (_cfg(architecture="jumprelu"), _weights(), ["lacks threshold"]),
    "jumprelu threshold scalar": (
        _cfg(architecture="jumprelu"),
        _weights(threshold=torch.tensor(0.1)),
        ["threshold", "[16]"],
    ),
    "skip transcoder without W_skip": (
        _cfg(architecture="skip_transcoder", apply_b_dec_to_input=False),
        _weights(),
        ["lacks W_skip"],
    ),
    "skip transcoder W_skip transposed": (
        _cfg(architecture="skip_transcoder", apply_b_dec_to_input=False, d_out=12),
        _weights(W_dec=torch.randn(D_SAE, 12), b_dec=torch.randn(12), W_skip=torch.randn(D_IN, 12)),
        ["W_skip", "[8, 12]", "[12, 8]"],
    ),
    "NaN in W_enc": (_cfg(), _weights(W_enc=torch.full((D_IN, D_SAE), float("nan"))), ["W_enc", "NaN"]),
    "inf in b_dec": (_cfg(), _weights(b_dec=torch.full((D_IN,), float("inf"))), ["b_dec", "infinite"]),
    "integer weights": (_cfg(), _weights(b_enc=torch.zeros(D_SAE, dtype=torch.int64)), ["b_enc", "I64"]),
    "rescale with a zero decoder row": (
        _cfg(architecture="topk", k=4, rescale_acts_by_decoder_norm=True),
        _weights(W_dec=torch.zeros(D_SAE, D_IN)),
        ["zero row", "rescale_acts_by_decoder_norm"],
    ),
}


@pytest.mark.parametrize("case", TENSOR_CASES)
def test_tensors_that_disagree_with_cfg_are_named(case, tmp_path):
    cfg, weights, needles = TENSOR_CASES[case]
    _refused(_folder(tmp_path / "sae", cfg, weights), "sae_weights.safetensors", *needles)


def test_shape_checks_happen_before_allocating(tmp_path, nothing_allocated):
    _refused(_folder(tmp_path / "sae", _cfg(d_in=12)), "W_enc")


@pytest.mark.parametrize("layout", ["empty folder", "a file", "cfg.json a folder"])
def test_not_an_sae_folder(layout, tmp_path):
    path = tmp_path / "sae"
    if layout == "a file":
        path.write_text("{}")
    else:
        path.mkdir()
        if layout == "cfg.json a folder":
            (path / "cfg.json").mkdir()
            save_file(_weights(), str(path / "sae_weights.safetensors"))
    _refused(path, "not an SAE folder", "SAELens layout")


def test_a_good_folder_still_loads(tmp_path):
    w = _weights()
    sae = tsi.sae.load(_folder(tmp_path / "sae"))
    x = torch.randn(3, D_IN)
    torch.testing.assert_close(sae.encode(x), torch.relu((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]))


# ---- tsi serve reads with the same loader -------------------------------------------------------
SERVE_CASES = ["a JSON list", "binary", "d_sae 1e12 (float)", "architecture by substring"]


@pytest.mark.parametrize("case", SERVE_CASES)
def test_serve_refuses_what_load_refuses(case, tmp_path):
    pytest.importorskip("starlette")
    from torch_shard_interpret.serve import create_app, load_sae
    from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

    folder = _folder(tmp_path / "sae", CFG_CASES[case][0])
    with pytest.raises(SAEError) as by_load:
        tsi.sae.load(folder)
    with pytest.raises(SAEError) as by_serve:
        load_sae(folder)
    assert str(by_serve.value) == str(by_load.value)
    with pytest.raises(SAEError):
        create_app(tsi.wrap(tiny_hf_model(), tiny_tokenizer()), saes=[folder], attention=False)


@pytest.mark.parametrize(
    ("cfg", "weights", "needle"),
    [
        (_cfg(), _weights(W_skip=torch.zeros(D_IN, D_IN)), "W_skip"),  # the old reader ignored it
        (_cfg(architecture="jumprelu"), _weights(), "threshold"),  # the old reader ran it as ReLU
    ],
)
def test_serve_no_longer_starts_with_what_load_rejects(cfg, weights, needle, tmp_path):
    pytest.importorskip("starlette")
    from torch_shard_interpret.serve import load_sae

    with pytest.raises(SAEError, match=needle):
        load_sae(_folder(tmp_path / "sae", cfg, weights))


def test_tsi_serve_cli_prints_one_line(tmp_path, monkeypatch, capsys):
    pytest.importorskip("uvicorn")
    from torch_shard_interpret.cli import serve
    from torch_shard_interpret.cli.main import main
    from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

    model = tsi.wrap(tiny_hf_model(), tiny_tokenizer())
    monkeypatch.setattr(serve, "load_model", lambda name: model)
    monkeypatch.setattr(serve, "serve_until_interrupted", lambda app, config: pytest.fail("server started"))
    folder = _folder(tmp_path / "sae", "[1, 2, 3]")
    code = main(["serve", "--model", "tiny", "--sae", str(folder), "--no-attention"])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert "cfg.json" in last and "array, not an object" in last
