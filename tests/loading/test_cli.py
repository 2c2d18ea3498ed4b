"""The ``tsi`` entry point: ``tsi models`` and the one-line error handler."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import torch_shard_interpret as tsi
from torch_shard_interpret.cli import main as cli_main
from torch_shard_interpret.cli import models as cli_models
from torch_shard_interpret.cli.main import main


def test_models_lists_the_embedded_model(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m" in out
    assert "cache" in out


def test_models_json(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = [row["name"] for row in rows]
    assert "smollm2-135m" in names
    assert {"name", "description", "source", "cached", "available"} <= set(rows[0])


def test_models_plain_text_without_rich(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "rich.console", None)  # `from rich.console import ...` fails
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m" in out and "┃" not in out


@pytest.mark.parametrize(
    "argv, fragment",
    [(["no-such-command"], "no-such-command"), (["models", "--no-such-flag"], "--no-such-flag")],
)
def test_bad_command_line_is_one_line(capsys, argv, fragment):
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tsi: error: ") and fragment in lines[0]


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "models" in capsys.readouterr().out


def _failing_run(args):
    raise tsi.ModelNotFoundError("cannot load model 'x': it is not a known name; known names: smollm2-135m")


def test_tsi_error_in_a_subcommand_is_one_line(capsys, monkeypatch):
    monkeypatch.setattr(cli_models, "run", _failing_run)
    monkeypatch.delenv("TSI_DEBUG", raising=False)
    assert main(["models"]) == 2
    err = capsys.readouterr().err
    assert err == "tsi: error: cannot load model 'x': it is not a known name; known names: smollm2-135m\n"


@pytest.mark.parametrize("exc", [OSError("[Errno 13] Permission denied: 'out'"), ValueError("bad\nvalue")])
def test_os_and_value_errors_are_one_line(capsys, monkeypatch, exc):
    def run(args):
        raise exc

    monkeypatch.setattr(cli_models, "run", run)
    assert main(["models"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tsi: error: ")


def test_debug_shows_the_traceback(capsys, monkeypatch):
    monkeypatch.setattr(cli_models, "run", _failing_run)
    assert main(["--debug", "models"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("tsi: error: ")
    monkeypatch.setenv("TSI_DEBUG", "1")
    assert main(["models"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_other_errors_are_not_hidden(monkeypatch):
    """Bugs (anything but TsiError, OSError, ValueError) keep their traceback."""

    def run(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli_models, "run", run)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["models"])


def test_every_registered_subcommand_has_a_module():
    help_text = cli_main.build_parser().format_help()
    for name in cli_main.SUBCOMMANDS:  # modules use underscores, commands hyphens (train_sae -> train-sae)
        assert name.replace("_", "-") in help_text


def test_python_dash_m():
    proc = subprocess.run(
        [sys.executable, "-m", "torch_shard_interpret", "models", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "smollm2-135m" in proc.stdout
