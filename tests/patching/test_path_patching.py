"""Path patching against a hand-rolled implementation with raw PyTorch hooks on a tiny LLaMA."""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.patching import PatchingError
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

CLEAN = "when mary and john went to the store , john gave a drink to"
CORRUPT = "when john and mary went to the store , mary gave a drink to"


@pytest.fixture(scope="module")
def setup():
    hf = tiny_hf_model("llama", seed=2, num_hidden_layers=3)
    model = tsi.wrap(hf, tiny_tokenizer())
    mary, john = model.token_id("mary"), model.token_id("john")
    return model, hf, lambda logits: logits[:, -1, mary] - logits[:, -1, john]


def _out(o):
    return o[0] if isinstance(o, tuple) else o


def _hand_rolled(hf, clean_ids, corrupt_ids, metric, sender, receiver, freeze_mlps=True):
    """Wang et al. path patching with raw hooks. sender = (layer, head) of attn.z; receiver = "final"
    (the last block's output) or (layer, [heads]) of attn.z."""
    layers = hf.model.layers
    d_head = hf.config.hidden_size // hf.config.num_attention_heads

    def cache(ids):
        z, mlp, hooks = {}, {}, []
        for i, layer in enumerate(layers):
            hooks.append(
                layer.self_attn.o_proj.register_forward_pre_hook(
                    lambda m, a, i=i: z.__setitem__(i, a[0].detach().clone())
                )
            )
            hooks.append(
                layer.mlp.register_forward_hook(lambda m, a, o, i=i: mlp.__setitem__(i, o.detach().clone()))
            )
        with torch.no_grad():
            logits = hf(input_ids=ids).logits
        for h in hooks:
            h.remove()
        return z, mlp, logits

    # fmt: skip

    zc, mc, lc = cache(clean_ids)
    zk, _, _ = cache(corrupt_ids)
    s_layer, s_head = sender
    sl = slice(s_head * d_head, (s_head + 1) * d_head)
    recorded = {}

    # step 1: sender corrupt, every other head (and MLP) frozen clean; record the receiver.
    def z_freeze(m, a, i):
        if receiver != "final" and i == receiver[0]:
            recorded["z"] = a[0].detach().clone()
        new = zc[i].clone()
        if i == s_layer:
            new[..., sl] = zk[i][..., sl]
        return (new,)

    hooks = [layer.self_attn.o_proj.register_forward_pre_hook(lambda m, a, i=i: z_freeze(m, a, i))
             for i, layer in enumerate(layers)]  # fmt: skip
    if freeze_mlps:
        hooks += [
            layer.mlp.register_forward_hook(lambda m, a, o, i=i: mc[i]) for i, layer in enumerate(layers)
        ]
    if receiver == "final":
        hooks.append(
            layers[-1].register_forward_hook(lambda m, a, o: recorded.__setitem__("final", _out(o).clone()))
        )
    with torch.no_grad():
        hf(input_ids=clean_ids)
    for h in hooks:
        h.remove()

    # step 2: clean run, only the receiver patched.
    if receiver == "final":

        def put(m, a, o):
            return (recorded["final"], *o[1:]) if isinstance(o, tuple) else recorded["final"]

        hook = layers[-1].register_forward_hook(put)
    else:
        r_layer, r_heads = receiver

        def put_z(m, a):
            new = a[0].clone()
            for h in r_heads:
                new[..., h * d_head : (h + 1) * d_head] = recorded["z"][..., h * d_head : (h + 1) * d_head]
            return (new,)

        hook = layers[r_layer].self_attn.o_proj.register_forward_pre_hook(put_z)
    with torch.no_grad():
        logits = hf(input_ids=clean_ids).logits
    hook.remove()
    return float(metric(logits)[0]), float(metric(lc)[0])


@pytest.mark.parametrize("receiver", ["final", (2, [0, 2])])
@pytest.mark.parametrize("freeze_mlps", [True, False])
def test_path_patching_matches_hand_rolled(setup, receiver, freeze_mlps):
    model, hf, metric = setup
    kwargs = {} if receiver == "final" else {"receivers": "blocks.2.attn.z", "receiver_heads": receiver[1]}
    res = tsi.patching.path_patching(
        model,
        CLEAN,
        CORRUPT,
        metric,
        senders="blocks.*.attn.z",
        freeze_mlps=freeze_mlps,
        batch_size=5,
        **kwargs,
    )
    n_layers, n_heads = hf.config.num_hidden_layers, hf.config.num_attention_heads
    assert res.effects.shape == (n_layers, n_heads) and res.method == "path" and res.direction == "noise"
    clean_ids, corrupt_ids = model.to_tokens(CLEAN), model.to_tokens(CORRUPT)
    want = torch.zeros(n_layers, n_heads)
    for layer in range(n_layers):
        for head in range(n_heads):
            patched, clean_m = _hand_rolled(
                hf, clean_ids, corrupt_ids, metric, (layer, head), receiver, freeze_mlps
            )
            want[layer, head] = patched - clean_m
    torch.testing.assert_close(res.raw, want, atol=1e-4, rtol=1e-4)
    assert res.raw.abs().max() > 1e-3  # the test is not vacuous
    if receiver != "final":  # senders in the receiver's layer or later cannot reach it
        assert res.raw[2:].abs().max() < 1e-5
    assert torch.allclose(res.effects, res.raw / (res.corrupt_metric - res.clean_metric))


def test_path_patching_of_a_last_layer_head_equals_activation_patching(setup):
    """With receivers = the final residual stream and the MLPs left free, a last-layer head's path effect is
    exactly its activation patching (noising) effect: only its own block's MLP, the final norm and the
    unembedding run after it, and the other heads of its layer do not see it."""
    model, _, metric = setup
    path = tsi.patching.path_patching(
        model, CLEAN, CORRUPT, metric, senders="blocks.2.attn.z", freeze_mlps=False
    )
    act = tsi.patching.activation_patching(
        model, CLEAN, CORRUPT, metric, sites="blocks.2.attn.z", heads=True, direction="noise"
    )
    torch.testing.assert_close(path.raw, act.raw, atol=1e-4, rtol=1e-4)


def test_path_patching_whole_sites_and_errors(setup):
    model, _, metric = setup
    res = tsi.patching.path_patching(model, CLEAN, CORRUPT, metric, senders="blocks.*.mlp.out", heads=False)
    assert res.effects.shape == (3, 1) and res.heads is None
    assert res.info["receivers"] == ["blocks.2.resid_post"]
    with pytest.raises(PatchingError, match="heads=True needs"):
        tsi.patching.path_patching(model, CLEAN, CORRUPT, metric, senders="blocks.*.mlp.out")
    with pytest.raises(PatchingError, match="receiver_heads"):
        tsi.patching.path_patching(model, CLEAN, CORRUPT, metric, receiver_heads=[0])
