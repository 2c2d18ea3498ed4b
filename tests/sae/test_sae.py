"""SAE module, kernels, training, resume, files, splicing, evaluation, interpretation and the CLI."""

from __future__ import annotations

import json

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.sae import SAE, SAEConfig, SAEError
from torch_shard_interpret.sae._kernels import topk_forward

TEXTS = [
    "the cat went to the house and the dog was happy",
    "mary gave a book to john when they were in paris",
    "i think that the red car is very good . yes",
    "where is the tower ? it is in the city of rome",
    "one two three four five six seven eight nine ten",
    "she was sad but then she was happy and we love it",
]


def _sparse_data(n=1024, d=24, n_feat=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    dirs = torch.nn.functional.normalize(torch.randn(n_feat, d, generator=g), dim=-1)
    on = torch.rand(n, n_feat, generator=g) < 0.06
    return (on * torch.rand(n, n_feat, generator=g)) @ dirs + 0.01 * torch.randn(n, d, generator=g)


@pytest.fixture(scope="module")
def tiny():
    from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

    return tsi.wrap(tiny_hf_model("llama"), tokenizer=tiny_tokenizer())


# ---- the module ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["relu", "topk", "batchtopk", "jumprelu"])
def test_shapes_and_unit_norm_decoder(kind):
    sae = SAE(d_in=16, d_sae=40, kind=kind, k=4)
    x = torch.randn(2, 5, 16)
    z = sae.encode(x)
    assert z.shape == (2, 5, 40) and sae.decode(z).shape == (2, 5, 16) and sae(x).shape == (2, 5, 16)
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(40))
    if kind == "topk":
        assert int((z > 0).sum(-1).max()) <= 4
        torch.testing.assert_close(sae(x), sae.decode(z))  # sparse forward == dense decode
    with pytest.raises(SAEError, match=r"\[\.\.\., 16\]"):
        sae.encode(torch.randn(3, 7))


def test_topk_keeps_only_the_positive_values_among_the_k_largest():
    """k = 4 selected, but only latents 3 and 7 have positive pre-activations: the other two selected are 0."""
    sae = SAE(d_in=16, d_sae=40, kind="topk", k=4)
    with torch.no_grad():
        sae.b_enc.fill_(-100.0)  # every latent far below zero...
        sae.b_enc[[3, 7]] = 100.0  # ...but two far above
    x = torch.randn(6, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        z, out = sae.encode(x), sae(x)
    assert float(z.min()) == 0.0 and (z[:, [3, 7]] > 50).all()
    assert (z != 0).sum(-1).tolist() == [2] * 6
    torch.testing.assert_close(out, z[:, [3, 7]] @ sae.W_dec[[3, 7]].detach() + sae.b_dec.detach())
    # (the sparse forward drops the non-positive selected values too)


def test_sparse_topk_gradients_match_dense_reference():
    torch.manual_seed(0)
    sae = SAE(d_in=12, d_sae=30, kind="topk", k=5).double()
    with torch.no_grad():
        sae.b_enc.normal_()
        sae.b_dec.normal_()
    x = torch.randn(9, 12, dtype=torch.float64)
    x_hat, *_ = topk_forward(x, sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec, sae.b_dec, 5)
    (x_hat.pow(3).sum()).backward()
    sparse = [p.grad.clone() for p in sae.parameters()]
    sae.zero_grad()
    ref = sae.decode(sae.encode(x))  # dense autograd through scatter
    (ref.pow(3).sum()).backward()
    torch.testing.assert_close(x_hat, ref)
    for a, p in zip(sparse, sae.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad)


def test_topk_workspace_reuses_its_buffer_and_changes_nothing():
    """The trainer's workspace: ``pre`` lands in one kept buffer (re-made when the batch shape changes), with the
    same reconstruction and gradients as without it."""
    torch.manual_seed(0)
    sae = SAE(d_in=12, d_sae=30, kind="topk", k=5).double()
    with torch.no_grad():
        sae.b_enc.normal_()
    ws: dict[str, torch.Tensor] = {}
    ptrs = []
    for n in (9, 9, 4):
        x = torch.randn(n, 12, dtype=torch.float64)
        runs = []
        for w in (None, ws):
            sae.zero_grad()
            x_hat, _, idx, pre, _ = topk_forward(
                x, sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec, sae.b_dec, 5, w
            )
            x_hat.pow(2).sum().backward()
            runs.append((x_hat.detach(), idx, pre.clone(), [p.grad.clone() for p in sae.parameters()]))
        ptrs.append(ws["pre"].data_ptr())
        assert ws["pre"].shape == (n, 30)
        torch.testing.assert_close(runs[0][0], runs[1][0])
        assert torch.equal(runs[0][1], runs[1][1]) and torch.equal(runs[0][2], runs[1][2])
        for a, b in zip(runs[0][3], runs[1][3], strict=True):
            torch.testing.assert_close(a, b)
    assert ptrs[0] == ptrs[1] != ptrs[2]


def test_project_decoder_grad_removes_the_parallel_part_only():
    torch.manual_seed(0)
    sae = SAE(d_in=8, d_sae=20, kind="topk", k=3)
    g = torch.randn(20, 8)
    sae.W_dec.grad = g.clone()
    sae.project_decoder_grad()
    w = sae.W_dec.detach()
    want = g - (g * w).sum(-1, keepdim=True) * w  # w has unit rows
    torch.testing.assert_close(sae.W_dec.grad, want)
    assert float((sae.W_dec.grad * w).sum(-1).abs().max()) < 1e-5


def test_config_errors_teach():
    with pytest.raises(SAEError, match="unknown SAE kind 'gated'"):
        SAEConfig(d_in=4, d_sae=8, kind="gated")
    with pytest.raises(SAEError, match="k must be between 1 and d_sae"):
        SAEConfig(d_in=4, d_sae=8, kind="topk", k=9)


# ---- training -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["topk", "batchtopk", "relu", "jumprelu"])
def test_train_on_tensor_all_kinds(kind):
    x = _sparse_data()
    extra = (
        {"l1_coefficient": 0.5} if kind == "relu" else {"l0_coefficient": 0.5} if kind == "jumprelu" else {}
    )
    sae = tsi.sae.train(x, {"kind": kind, "d_sae": 96, "k": 6, **extra}, {"steps": 150}, progress=False)
    with torch.no_grad():
        fvu = float((sae(x) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum())
        l0 = float((sae.encode(x) > 0).sum(-1).float().mean())
    assert fvu < 0.5, (kind, fvu)
    assert 0 < l0 < 48
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(96), atol=1e-4, rtol=0)
    assert sae.cfg.normalize_activations == "none" and not sae.training
    if kind in ("topk", "batchtopk"):
        assert abs(l0 - 6) < 1.5


def test_train_defaults_fit_a_small_tensor():
    x = _sparse_data(n=300)
    sae = tsi.sae.train(x, {"kind": "topk", "d_sae": 64, "k": 4}, {"steps": 20}, progress=False)  # batch 300
    assert sae.cfg.d_in == 24 and sae.cfg.d_sae == 64


def test_resume_is_bit_exact(tmp_path):
    x = _sparse_data(n=600)
    cfg, tcfg = {"kind": "topk", "d_sae": 64, "k": 4}, {"steps": 12, "batch_size": 256}
    full = tsi.sae.train(x, cfg, tcfg, progress=False)

    def stop_at_6(step, metrics):
        if step == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tsi.sae.train(
            x, {**cfg, "aux_k": 8}, tcfg, checkpoint_dir=tmp_path, callback=stop_at_6, progress=False
        )
    # a different configuration must not silently reuse the checkpoint
    with pytest.raises(SAEError, match="different SAE configuration"):
        tsi.sae.train(x, cfg, tcfg, checkpoint_dir=tmp_path, resume=True, progress=False)
    with pytest.raises(KeyboardInterrupt):
        tsi.sae.train(x, cfg, tcfg, checkpoint_dir=tmp_path, callback=stop_at_6, progress=False)
    resumed = tsi.sae.train(x, cfg, tcfg, checkpoint_dir=tmp_path, resume=True, progress=False)
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


class FakeStore:
    """The store API the trainer needs: .sites, len(), .batches(site, batch_size, shuffle, seed)."""

    def __init__(self, acts: dict[str, torch.Tensor]):
        self.acts = acts
        self.sites = list(acts)

    def __len__(self):
        return next(iter(self.acts.values())).shape[0]

    def batches(self, site, batch_size=4096, shuffle=True, seed=0):
        n = len(self)
        order = (
            torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if shuffle else torch.arange(n)
        )
        for i in range(0, n, batch_size):
            yield self.acts[site][order[i : i + batch_size]]


def test_train_from_store_and_transcoder_from_store_pair():
    x = _sparse_data(n=1024)
    y = torch.relu(x @ torch.randn(24, 10))
    store = FakeStore({"a": x, "b": y})
    with pytest.raises(SAEError, match="several sites"):
        tsi.sae.train(store, train_config={"steps": 2}, progress=False)
    cfg, tcfg = {"d_sae": 64, "k": 4}, {"batch_size": 256, "steps": 40}
    sae = tsi.sae.train(store, cfg, tcfg, site="a", progress=False)
    assert sae.cfg.hook_name == "a"
    tc = tsi.sae.train(store, cfg, tcfg, site=("a", "b"), progress=False)
    assert isinstance(tc, tsi.sae.SAE) and tc.cfg.transcoder and tc.cfg.d_out == 10
    assert tc(x).shape == (1024, 10) and tc.cfg.hook_name_out == "b"


def test_train_with_real_store(tiny, tmp_path):
    store = tsi.store.harvest(
        tiny, TEXTS * 4, sites=["blocks.1.resid_post"], path=tmp_path / "acts", context=16
    )
    store = tsi.store.open(tmp_path / "acts")
    sae = tsi.sae.train(
        store,
        {"d_sae": 64, "k": 4},
        {"batch_size": 64, "steps": 20},
        site="blocks.1.resid_post",
        progress=False,
    )
    assert sae.cfg.d_in == 64
    stats = tsi.sae.latent_stats(tiny, sae, store)  # contexts from the store's token ids
    from torch_shard_interpret.cli.main import main

    code = main(["train-sae", "--store", str(tmp_path / "acts"), "--d-sae", "32", "--k", "4", "--steps", "3",
                 "--batch-size", "64", "--out", str(tmp_path / "cli_sae"), "--no-progress"])  # fmt: skip
    assert code == 0 and tsi.sae.load(tmp_path / "cli_sae").cfg.hook_name == "blocks.1.resid_post"
    assert stats.n_tokens == len(store) and stats.tokens.shape[0] == len(store)


# ---- files --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["relu", "topk", "batchtopk", "jumprelu"])
def test_save_load_round_trip(tmp_path, kind):
    sae = SAE(d_in=8, d_sae=20, kind=kind, k=3, hook_name="blocks.0.resid_post", model_name="m")
    with torch.no_grad():
        sae.b_enc.normal_()
        if kind == "batchtopk":
            sae.threshold.fill_(0.25)
    sae.save(tmp_path / "s")
    cfg = json.loads((tmp_path / "s" / "cfg.json").read_text())
    assert cfg["d_in"] == 8 and cfg["architecture"] in ("standard", "topk", "jumprelu")
    back = tsi.sae.load(tmp_path / "s")
    assert back.cfg == sae.cfg
    x = torch.randn(5, 8)
    torch.testing.assert_close(back(x), sae(x))


def _write_saelens(path, cfg, tensors):
    from safetensors.torch import save_file

    path.mkdir()
    (path / "cfg.json").write_text(json.dumps(cfg))
    save_file(tensors, str(path / "sae_weights.safetensors"))


def test_load_saelens_made_folders(tmp_path):
    g = torch.Generator().manual_seed(0)
    w = {
        "W_enc": torch.randn(6, 10, generator=g),
        "b_enc": torch.randn(10, generator=g),
        "W_dec": torch.randn(10, 6, generator=g),
        "b_dec": torch.randn(6, generator=g),
    }
    # SAELens v5 style: flat fields, TopK through activation_fn_kwargs
    v5 = {
        "architecture": "standard", "d_in": 6, "d_sae": 10, "activation_fn_str": "topk",
        "activation_fn_kwargs": {"k": 3}, "hook_name": "blocks.2.hook_resid_pre", "hook_layer": 2,
        "model_name": "gpt2", "dtype": "float32", "apply_b_dec_to_input": True,
        "normalize_activations": "none", "context_size": 128, "prepend_bos": True,
    }  # fmt: skip
    _write_saelens(tmp_path / "v5", v5, w)
    sae = tsi.sae.load(tmp_path / "v5")
    assert sae.cfg.kind == "topk" and sae.cfg.k == 3 and sae.cfg.hook_name == "blocks.2.hook_resid_pre"
    x = torch.randn(4, 6)
    pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    v, i = pre.topk(3)
    ref = torch.zeros_like(pre).scatter(-1, i, v.relu()) @ w["W_dec"] + w["b_dec"]
    torch.testing.assert_close(sae(x), ref)
    # SAELens v6 style: metadata block, JumpReLU threshold
    thr = torch.rand(10, generator=g)
    v6 = {
        "architecture": "jumprelu", "d_in": 6, "d_sae": 10, "dtype": "float32", "device": "cpu",
        "apply_b_dec_to_input": False, "normalize_activations": "none", "reshape_activations": "none",
        "metadata": {"model_name": "gemma-2-2b", "hook_name": "blocks.12.hook_resid_post"},
    }  # fmt: skip
    _write_saelens(tmp_path / "v6", v6, {**w, "threshold": thr})
    jr = tsi.sae.load(tmp_path / "v6")
    assert jr.cfg.kind == "jumprelu" and jr.cfg.model_name == "gemma-2-2b"
    pre = x @ w["W_enc"] + w["b_enc"]
    torch.testing.assert_close(jr.encode(x), pre.relu() * (pre > thr))
    _write_saelens(tmp_path / "gated", {**v6, "architecture": "gated"}, w)
    with pytest.raises(SAEError, match="gated SAEs are not supported"):
        tsi.sae.load(tmp_path / "gated")
    with pytest.raises(SAEError, match="not an SAE folder"):
        tsi.sae.load(tmp_path / "nothing")


# ---- in a model ---------------------------------------------------------------------------------
def test_attach_latents_are_sites(tiny):
    sae = SAE(d_in=64, d_sae=128, kind="topk", k=8, hook_name="blocks.0.resid_post")
    names = sae.attach(tiny)
    try:
        assert names == ["blocks.0.resid_post.sae.latents", "blocks.0.resid_post.sae.error"]
        clean = tiny.run(TEXTS[0])
        run = tiny.run(TEXTS[0], cache=names)
        torch.testing.assert_close(run.logits, clean.logits)  # caching changes nothing
        z = run.cache[names[0]]
        assert z.shape[-1] == 128 and int((z > 0).sum(-1).max()) <= 8
        ablated = tiny.run(TEXTS[0], interventions={names[0]: tsi.Ablate("zero")})
        assert not torch.allclose(ablated.logits, clean.logits)
    finally:
        tsi.sae.detach(tiny, sae)
    assert "blocks.0.resid_post.sae.latents" not in tiny.sites()


def test_on_the_fly_training_several_saes_one_pass_and_evaluate(tiny):
    saes = tsi.sae.train_on_model(
        tiny, TEXTS * 6, sites=["blocks.0.resid_post", "blocks.1.resid_post"],
        configs=[{"kind": "topk", "d_sae": 128, "k": 8}, {"kind": "relu", "d_sae": 64, "l1_coefficient": 1.0,
                 "hook_name": "blocks.1.resid_post"}],
        train_config={"batch_size": 64, "steps": 30}, progress=False,
    )  # fmt: skip
    assert [s.cfg.hook_name for s in saes] == [
        "blocks.0.resid_post",
        "blocks.1.resid_post",
        "blocks.1.resid_post",
    ]
    assert [s.cfg.kind for s in saes] == ["topk", "topk", "relu"]
    res = tsi.sae.evaluate(tiny, saes[1], TEXTS)
    assert res.l0 <= 8 and 0 <= res.fvu < 1.0 and res.n_tokens > 0
    # a random tiny model: only the definition can be checked, not that zero ablation hurts
    expect = (res.ce_zero - res.ce_spliced) / (res.ce_zero - res.ce_clean)
    assert res.ce_loss_recovered == pytest.approx(expect)
    assert 0 <= res.dead_fraction <= 1 and "CE loss recovered" in str(res)
    tc = tsi.sae.train((tiny, TEXTS * 6), {"d_sae": 64, "k": 8}, {"batch_size": 64, "steps": 20},
                       site=("model.layers.1.mlp:input", "blocks.1.mlp.out"), progress=False)  # fmt: skip
    assert tc.cfg.transcoder and tc.cfg.hook_name_out == "blocks.1.mlp.out"
    r = tsi.sae.evaluate(tiny, tc, TEXTS)
    assert r.site == "blocks.1.mlp.out" and r.fvu < 1.5


def test_on_the_fly_resume_matches_uninterrupted_run(tiny, tmp_path):
    kw = dict(
        sites=["blocks.0.resid_post", "blocks.1.resid_post"],
        configs=[{"kind": "topk", "d_sae": 64, "k": 4, "hook_name": "blocks.0.resid_post"},
                 {"kind": "relu", "d_sae": 32, "l1_coefficient": 1.0, "hook_name": "blocks.1.resid_post"}],
        train_config={"batch_size": 32, "steps": 10, "text_batch_size": 2, "buffer_batches": 2}, progress=False,
    )  # fmt: skip
    texts = TEXTS * 4  # the stream wraps around the texts during the run
    full = tsi.sae.train_on_model(tiny, texts, **kw)

    def stop_at_4(step, metrics):
        if step == 4:
            raise KeyboardInterrupt

    ck = tmp_path / "ck"
    with pytest.raises(KeyboardInterrupt):
        kw2 = {**kw, "train_config": {**kw["train_config"], "checkpoint_every": 2}}
        tsi.sae.train_on_model(tiny, texts, checkpoint_dir=ck, callback=stop_at_4, **kw2)
    files = sorted(p.name for p in ck.iterdir())  # one JSON record and the one tensor file it names
    assert len(files) == 2 and files[1] == "checkpoint.json" and files[0].endswith(".safetensors")
    assert json.loads((ck / "checkpoint.json").read_text())["step"] == 4
    with pytest.raises(SAEError, match="other texts"):  # another text stream is refused
        tsi.sae.train_on_model(tiny, TEXTS * 5, checkpoint_dir=ck, resume=True, **kw)
    resumed = tsi.sae.train_on_model(tiny, texts, checkpoint_dir=ck, resume=True, **kw)
    for f, r in zip(full, resumed, strict=True):
        for a, b in zip(f.state_dict().values(), r.state_dict().values(), strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    # train((model, texts)) passes the checkpoint arguments on
    one = dict(sae_config={"d_sae": 32, "k": 4}, train_config={"batch_size": 32, "steps": 6},
               site="blocks.1.resid_post", progress=False)  # fmt: skip
    ref = tsi.sae.train((tiny, texts), **one)
    with pytest.raises(KeyboardInterrupt):
        tsi.sae.train((tiny, texts), checkpoint_dir=tmp_path / "c1", callback=stop_at_4, **one)
    again = tsi.sae.train((tiny, texts), checkpoint_dir=tmp_path / "c1", resume=True, **one)
    torch.testing.assert_close(again.W_dec, ref.W_dec, atol=1e-6, rtol=0)


def test_latent_stats_and_dashboard(tiny, tmp_path):
    sae = SAE(d_in=64, d_sae=32, kind="topk", k=4, hook_name="blocks.1.resid_post", seed=0)
    stats = tsi.sae.latent_stats(tiny, sae, TEXTS)
    assert stats.frequency.shape == (32,) and stats.hist_counts.shape[0] == 32
    i = int(stats.frequency.argmax())
    ctx = stats.contexts(i)
    assert ctx and ctx[0]["value"] == pytest.approx(float(stats.max_act[i]))
    assert len(stats.logit_up[i]) == 8  # W_dec @ W_U top tokens
    frag = tsi.sae.latent_html(stats, i)
    assert frag.startswith('<div class="latent"') and 'class="hi"' in frag and "<svg" in frag
    index = tsi.sae.dashboard(tiny, sae, stats=stats, out=tmp_path / "dash", n_latents=3)
    page = index.read_text()
    assert "latent_" in page and "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert len(list((tmp_path / "dash").glob("latent_*.html"))) == 3


# ---- command line -------------------------------------------------------------------------------
def test_cli_train_sae(tmp_path, capsys):
    from torch_shard_interpret.cli.main import main

    torch.save(_sparse_data(n=512), tmp_path / "acts.pt")
    code = main(["train-sae", "--acts", str(tmp_path / "acts.pt"), "--d-sae", "32", "--k", "4",
                 "--steps", "5", "--out", str(tmp_path / "sae"), "--no-progress"])  # fmt: skip
    assert code == 0 and (tmp_path / "sae" / "sae_weights.safetensors").is_file()
    assert tsi.sae.load(tmp_path / "sae").cfg.d_sae == 32
    code = main(["train-sae", "--store", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not a folder" in err[0]


@pytest.mark.parametrize(("n", "batch"), [(10, 4), (10, 25), (7, 7)])
def test_tensor_source_batches_walk_the_seeded_permutations(n, batch):
    from torch_shard_interpret.sae._sources import TensorSource

    x, y = torch.arange(n * 2.0).reshape(n, 2), torch.arange(float(n)).unsqueeze(1)
    src = TensorSource(x, y, batch, seed=3)
    order = torch.cat(
        [torch.randperm(n, generator=torch.Generator().manual_seed(3 * 1_000_003 + e)) for e in range(25)]
    )
    for step in range(8):
        rows = order[step * batch : (step + 1) * batch]
        bx, by = src.get(step)
        assert torch.equal(bx, x[rows]) and torch.equal(by, y[rows])
