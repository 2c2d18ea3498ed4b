"""`tsi harvest` on a tiny random LLaMA (preloaded, no download)."""

from __future__ import annotations

import pytest

import torch_shard_interpret as tsi
from _cli import preload
from torch_shard_interpret.cli.main import main


@pytest.fixture
def data(worker, tiny, monkeypatch, tmp_path):
    preload(monkeypatch, "tiny", tiny)
    path = tmp_path / "data.txt"
    path.write_text("\n".join(worker.texts()) + "\n")
    return path


def test_harvest_writes_a_store_and_resumes(data, tmp_path, capsys):
    out = tmp_path / "acts"
    argv = ["harvest", "--model", "tiny", "--data", str(data), "--sites", "blocks.1.resid_post,blocks.0.mlp.out",
            "--out", str(out), "--context", "16", "--batch-size", "4", "--shard-rows", "8", "--dtype", "bfloat16"]  # fmt: skip
    assert main(argv) == 0
    assert "tokens x 2 site(s)" in capsys.readouterr().out
    store = tsi.store.open(out)
    assert (
        store.sites == ["blocks.1.resid_post", "blocks.0.mlp.out"] and store.manifest["dtype"] == "bfloat16"
    )
    assert main([*argv, "--resume"]) == 0
    assert main(argv) == 2 and "already holds an activation store" in capsys.readouterr().err


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"--sites": "blocks.1.resid_pots"}, "unknown site 'blocks.1.resid_pots'"),
        ({"--out": "/proc/no-store-here"}, "cannot write to --out"),
        ({"--data": "EMPTY"}, "no complete row"),
        ({"--data": "/no/such/file.txt"}, "does not exist"),
        ({"--data": "data.csv"}, ".jsonl"),
        ({"--context": "0"}, "from 1 to"),
    ],
)
def test_harvest_errors_are_one_line(data, tmp_path, capsys, change, fragment):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    args = {
        "--model": "tiny",
        "--data": str(data),
        "--sites": "blocks.1.resid_post",
        "--out": str(tmp_path / "o"),
    }
    args.update(change)
    if args["--data"] == "EMPTY":
        args["--data"] = str(empty)
    argv = ["harvest", "--context", "16", *[x for kv in args.items() for x in kv]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tsi: error: ") and fragment in err[0], err
    assert not (tmp_path / "o").exists()  # nothing half-written


def _argv(data, out):
    return ["harvest", "--model", "tiny", "--data", str(data), "--sites", "blocks.1.resid_post", "--out", str(out),
            "--context", "16", "--batch-size", "4", "--shard-rows", "4"]  # fmt: skip


def test_resume_never_reports_success_over_a_corrupt_shard(data, tmp_path, capsys):
    out = tmp_path / "acts"
    assert main(_argv(data, out)) == 0
    shard = out / "shard-00001.safetensors"
    good = shard.read_bytes()
    bad = bytearray(good)
    bad[-3] ^= 0x01  # same size: only the sha256 tells
    shard.write_bytes(bytes(bad))
    capsys.readouterr()
    assert main([*_argv(data, out), "--resume"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert shard.read_bytes() == good  # the success line is printed over the rewritten shard
    tsi.store.open(out, verify="all")


def test_a_full_disk_is_one_line_naming_the_file(data, tmp_path, capsys, monkeypatch):
    import errno

    from torch_shard_interpret import _io

    real = _io.atomic_write

    def full(final, payload, **kw):
        if final.name.startswith("shard-"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(final, payload, **kw)

    monkeypatch.setattr(_io, "atomic_write", full)
    out = tmp_path / "acts"
    assert main(_argv(data, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "disk is full" in err[0] and str(out / "shard-00000.safetensors") in err[0], err
    assert not out.exists()
