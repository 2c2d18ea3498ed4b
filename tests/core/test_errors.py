"""Bad input gets one clear sentence naming what was wrong and what would be right."""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer


@pytest.fixture(scope="module")
def model():
    return tsi.wrap(tiny_hf_model("llama"), tokenizer=tiny_tokenizer())


IDS = torch.randint(4, 128, (2, 6), generator=torch.Generator().manual_seed(0))


def test_unknown_site_suggests_close_names(model):
    with pytest.raises(tsi.SiteNotFoundError, match=r"did you mean 'blocks.1.resid_post'"):
        model.run(IDS, cache="blocks.1.resid_pots")
    with pytest.raises(tsi.SiteNotFoundError, match="model.layers.0.mlp:output"):
        model.run(IDS, cache="model.layers.0.mpl:output")
    with pytest.raises(tsi.SiteNotFoundError, match="matches no site"):
        model.run(IDS, cache="blocks.*.nothing")


def test_patch_shape_mismatch_names_site_and_shapes(model):
    with pytest.raises(tsi.ShapeMismatchError, match=r"blocks.0.resid_post.*\[2, 5, 64\].*\[2, 6, 64\]"):
        model.run(IDS, interventions={"blocks.0.resid_post": tsi.Patch(torch.zeros(2, 5, 64))})
    with pytest.raises(tsi.ShapeMismatchError, match=r"Set at blocks.0.resid_post.*\[3\]"):
        model.run(IDS, interventions={"blocks.0.resid_post": tsi.Set(torch.zeros(3))})
    with pytest.raises(tsi.ShapeMismatchError, match="dtype"):
        model.run(IDS, interventions={"blocks.0.resid_post": tsi.Set(torch.zeros(64, dtype=torch.long))})
    with pytest.raises(tsi.ShapeMismatchError, match="size 64"):
        model.run(IDS, interventions={"blocks.0.resid_post": tsi.Add(torch.zeros(65))})


def test_selectors_out_of_range(model):
    with pytest.raises(tsi.PositionError, match="position 6 is out of range.*6 tokens"):
        model.run(IDS, interventions={"blocks.0.resid_post": tsi.Scale(0, positions=[6])})
    with pytest.raises(tsi.InterventionError, match="heads=4 is out of range"):
        model.run(IDS, interventions={"blocks.0.attn.z": tsi.Scale(0, heads=[4])})
    with pytest.raises(tsi.InterventionError, match="head dimension"):
        model.run(IDS, interventions={"blocks.0.resid_post": tsi.Scale(0, heads=[1])})
    with pytest.raises(tsi.InterventionError, match="batch=2 is out of range"):
        model.run(IDS, interventions={"blocks.0.resid_post": tsi.Scale(0, batch=2)})


def test_bad_intervention_objects(model):
    with pytest.raises(tsi.InterventionError, match="mode 'medain' is unknown"):
        tsi.Ablate("medain")
    with pytest.raises(tsi.InterventionError, match="use tsi.Set"):
        model.run(IDS, interventions={"blocks.0.resid_post": 3})
    with pytest.raises(tsi.InterventionError, match="no entry for this site"):
        model.run(IDS, interventions={"blocks.0.resid_post": tsi.Patch({"embed": torch.zeros(2, 6, 64)})})
    with pytest.raises(tsi.InterventionError, match="at least 2 rows"):
        model.run(IDS[:1], interventions={"blocks.0.resid_post": tsi.Ablate("resample")})


def test_pattern_site_needs_eager_and_is_read_only(model):
    with pytest.raises(tsi.TsiError, match="set_attention"):
        model.run(IDS, cache="blocks.0.attn.pattern")
    fresh = tsi.wrap(tiny_hf_model("llama"))
    with pytest.warns(UserWarning, match="eager"):
        fresh.set_attention("eager")
    run = fresh.run(IDS, cache="blocks.*.attn.pattern")
    torch.testing.assert_close(run.cache["blocks.1.attn.pattern"].sum(-1), torch.ones(2, 4, 6))
    with pytest.raises(tsi.ReadOnlySiteError, match="cannot be changed|not changed"):
        fresh.run(IDS, interventions={"blocks.0.attn.pattern": tsi.Scale(0)})


def test_bad_inputs(model):
    with pytest.raises(tsi.InputError, match="empty"):
        model.run("")
    with pytest.raises(tsi.InputError, match="context window is 128"):
        model.run(torch.zeros(1, 129, dtype=torch.long))
    with pytest.raises(tsi.InputError, match="tokenizer"):
        tsi.wrap(tiny_hf_model("llama")).run("no tokenizer here")
    with pytest.raises(tsi.InputError, match="one"):
        model.token_id("mary john")
    with pytest.raises(tsi.TsiError, match="nn.Module"):
        tsi.wrap("not a module")


def test_errors_are_tsi_errors_and_messages_are_one_line(model):
    for call in (
        lambda: model.run(IDS, cache="nope"),
        lambda: model.run(IDS, interventions={"blocks.0.resid_post": tsi.Scale(0, positions=[99])}),
    ):
        with pytest.raises(tsi.TsiError) as info:
            call()
        assert "\n" not in str(info.value)
