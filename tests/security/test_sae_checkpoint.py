"""SAE training checkpoints are safetensors + JSON: nothing in a checkpoint folder can run code, a resumed run
ends with the same weights as an uninterrupted one, and a damaged checkpoint gives one sentence naming the file
(through ``tsi.sae.train(..., resume=True)`` and through ``tsi train-sae --checkpoint-dir D --resume``)."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.cli.main import main
from torch_shard_interpret.sae import SAEError, TrainConfig


class _Payload:
    """Unpickling this creates the folder ``marker``: the proof that a pickle was executed."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _data(n=512, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    dirs = torch.nn.functional.normalize(torch.randn(32, d, generator=g), dim=-1)
    on = torch.rand(n, 32, generator=g) < 0.08
    return (on * torch.rand(n, 32, generator=g)) @ dirs


SAE_CFG = {"kind": "topk", "d_sae": 32, "k": 4}
TRAIN = TrainConfig(steps=8, batch_size=64, checkpoint_every=2)


def _stop_at(n):
    def callback(step, metrics):
        if step == n:
            raise KeyboardInterrupt

    return callback


def _interrupted_checkpoint(folder, x):
    with pytest.raises(KeyboardInterrupt):
        tsi.sae.train(x, SAE_CFG, TRAIN, checkpoint_dir=folder, progress=False, callback=_stop_at(4))
    assert (folder / "checkpoint.json").is_file()
    return folder


def _tensor_file(folder):
    return folder / json.loads((folder / "checkpoint.json").read_text())["tensors"]


def _cli(capsys, acts, out, ck):
    code = main(["train-sae", "--acts", str(acts), "--d-sae", "32", "--k", "4", "--steps", "8",
                 "--batch-size", "64", "--out", str(out), "--checkpoint-dir", str(ck), "--resume",
                 "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    return code, err


def _acts_file(tmp_path, x):
    from safetensors.torch import save_file

    path = tmp_path / "acts.safetensors"
    save_file({"acts": x}, str(path))
    return path


# ---- a planted pickle is never executed -------------------------------------------------------------------
def test_the_payload_would_run_if_unpickled(tmp_path):
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(_Payload(str(marker))))  # the proof that the marker detects execution
    assert marker.exists()


def test_a_planted_checkpoint_pt_is_refused_not_executed_api(tmp_path):
    marker, ck = tmp_path / "ran", tmp_path / "ck"
    ck.mkdir()
    (ck / "checkpoint.pt").write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(SAEError, match="old pickle format, which tsi does not read") as info:
        tsi.sae.train(_data(), SAE_CFG, TRAIN, checkpoint_dir=ck, resume=True, progress=False)
    assert str(ck / "checkpoint.pt") in str(info.value) and "resume=False" in str(info.value)
    assert not marker.exists()


def test_a_planted_checkpoint_pt_is_refused_not_executed_cli(tmp_path, capsys):
    marker, ck = tmp_path / "ran", tmp_path / "ck"
    ck.mkdir()
    (ck / "checkpoint.pt").write_bytes(pickle.dumps(_Payload(str(marker))))
    code, err = _cli(capsys, _acts_file(tmp_path, _data()), tmp_path / "sae", ck)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "old pickle format" in err and str(ck / "checkpoint.pt") in err
    assert not marker.exists() and not (tmp_path / "sae").exists()


def test_pickles_planted_as_the_new_files_are_not_executed(tmp_path):
    marker, x = tmp_path / "ran", _data()
    ck = _interrupted_checkpoint(tmp_path / "ck", x)
    payload = pickle.dumps(_Payload(str(marker)))
    _tensor_file(ck).write_bytes(payload)
    with pytest.raises(SAEError, match="sha256 differs"):
        tsi.sae.train(x, SAE_CFG, TRAIN, checkpoint_dir=ck, resume=True, progress=False)
    (ck / "checkpoint.json").write_bytes(payload)
    with pytest.raises(SAEError, match="not valid JSON"):
        tsi.sae.train(x, SAE_CFG, TRAIN, checkpoint_dir=ck, resume=True, progress=False)
    assert not marker.exists()


def test_acts_pickle_is_refused_by_weights_only_load(tmp_path, capsys):
    marker, acts = tmp_path / "ran", tmp_path / "acts.pt"
    acts.write_bytes(pickle.dumps(_Payload(str(marker))))
    code = main(["train-sae", "--acts", str(acts), "--out", str(tmp_path / "sae"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"--acts {str(acts)!r} could not be read" in err
    assert not marker.exists()


# ---- resume gives the same weights ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["topk", "relu"])
def test_resume_after_interruption_is_bitwise_identical(tmp_path, kind):
    """Bitwise: the resumed run reloads exact tensors (Adam moments, RNG states) and exact float scalars."""
    x = _data()
    cfg = {"kind": kind, "d_sae": 32, "k": 4, "l1_coefficient": 0.5}
    tcfg = TrainConfig(steps=9, batch_size=64, checkpoint_every=2, resample_every=3, dead_after_tokens=128)
    full = tsi.sae.train(x, cfg, tcfg, progress=False)
    ck = tmp_path / "ck"
    with pytest.raises(KeyboardInterrupt):
        tsi.sae.train(x, cfg, tcfg, checkpoint_dir=ck, progress=False, callback=_stop_at(5))
    assert json.loads((ck / "checkpoint.json").read_text())["step"] == 4  # the last one written
    resumed = tsi.sae.train(x, cfg, tcfg, checkpoint_dir=ck, resume=True, progress=False)
    for name, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    assert len(list(ck.glob("*.safetensors"))) == 1  # older tensor files are removed


# ---- damaged checkpoints: one sentence that names the file -------------------------------------------------
def _truncate_json(ck):
    path = ck / "checkpoint.json"
    path.write_bytes(path.read_bytes()[:40])
    return path, "not valid JSON"


def _truncate_tensors(ck):
    path = _tensor_file(ck)
    path.write_bytes(path.read_bytes()[:100])
    return path, "sha256 differs"


def _garbage_tensors_with_matching_sum(ck):
    import hashlib

    path, garbage = _tensor_file(ck), b"\x08\x00\x00\x00\x00\x00\x00\x00{not json"
    path.write_bytes(garbage)
    record = json.loads((ck / "checkpoint.json").read_text())
    record["sha256"] = hashlib.sha256(garbage).hexdigest()
    (ck / "checkpoint.json").write_text(json.dumps(record))
    return path, "cannot be read"


def _json_list(ck):
    path = ck / "checkpoint.json"
    path.write_text("[1, 2, 3]")
    return path, "not a tsi-sae-checkpoint/1 record"


def _escaping_name(ck):
    path = ck / "checkpoint.json"
    record = json.loads(path.read_text())
    record["tensors"] = "../../outside.safetensors"
    path.write_text(json.dumps(record))
    return path, "names no valid tensor file"


def _missing_tensors(ck):
    _tensor_file(ck).unlink()
    return _tensor_file(ck), "the file is missing"


def _wrong_shapes(ck):
    """A consistent pair whose tensors do not fit the SAE: written by hand, checksum correct."""
    import hashlib

    from safetensors.torch import load, save

    record = json.loads((ck / "checkpoint.json").read_text())
    path = _tensor_file(ck)
    tensors = load(path.read_bytes())
    tensors["trainers/0/sae/W_enc"] = torch.zeros(3, 3)
    data = save(tensors)
    path.write_bytes(data)
    record["sha256"] = hashlib.sha256(data).hexdigest()
    (ck / "checkpoint.json").write_text(json.dumps(record))
    return ck / "checkpoint.json", "does not fit this run"


DAMAGE = [_truncate_json, _truncate_tensors, _garbage_tensors_with_matching_sum, _json_list, _escaping_name,
          _missing_tensors, _wrong_shapes]  # fmt: skip


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__.strip("_"))
def test_damaged_checkpoint_gives_one_sentence_api(tmp_path, damage):
    x = _data()
    ck = _interrupted_checkpoint(tmp_path / "ck", x)
    path, why = damage(ck)
    with pytest.raises(SAEError) as info:
        tsi.sae.train(x, SAE_CFG, TRAIN, checkpoint_dir=ck, resume=True, progress=False)
    msg = str(info.value)
    assert why in msg and str(path) in msg and "resume=False" in msg
    assert "\n" not in msg and msg.count(". ") == 0  # one sentence


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__.strip("_"))
def test_damaged_checkpoint_gives_one_line_cli(tmp_path, capsys, damage):
    x = _data()
    ck = _interrupted_checkpoint(tmp_path / "ck", x)
    path, why = damage(ck)
    code, err = _cli(capsys, _acts_file(tmp_path, x), tmp_path / "sae", ck)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert why in err and str(path) in err
    assert not (tmp_path / "sae").exists()
