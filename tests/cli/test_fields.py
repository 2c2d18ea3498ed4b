"""Config dataclasses are the command line (issue 11 section 4): `tsi train-sae` and `tsi harvest` options are
built from SAEConfig / TrainConfig / HarvestConfig, with the dataclasses' defaults and field docstrings."""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
from pathlib import Path

import pytest

import torch_shard_interpret as tsi
from torch_shard_interpret.cli import _fields, train_sae
from torch_shard_interpret.cli.main import build_parser, iter_parsers, main
from torch_shard_interpret.sae import SAEConfig, TrainConfig
from torch_shard_interpret.store import HarvestConfig

CLI = Path(tsi.__file__).parent / "cli"


def _parser(name: str):
    return dict(iter_parsers(build_parser()))[name]


def _field_actions(parser, cls) -> dict[str, argparse.Action]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {a.dest: a for a in parser._actions if a.dest in names}


CASES = [
    ("train-sae", SAEConfig, set(train_sae.FROM_DATA)),
    ("train-sae", TrainConfig, set()),
    ("harvest", HarvestConfig, set()),
]


@pytest.mark.parametrize("command, cls, from_data", CASES)
def test_options_equal_the_dataclass_fields(command, cls, from_data):
    parser = _parser(command)
    actions = _field_actions(parser, cls)
    assert set(actions) == {f.name for f in dataclasses.fields(cls)} - from_data
    docs = _fields.field_docs(cls)
    for f in dataclasses.fields(cls):
        if f.name not in actions:
            continue
        action = actions[f.name]
        assert action.option_strings[0] == "--" + f.name.replace("_", "-")
        first = docs[f.name].replace("``", "").split(". ")[0]
        assert first and first in " ".join(action.help.split()).replace("%%", "%"), (f.name, action.help)
        if f.default is not dataclasses.MISSING:
            assert action.default == f.default, f.name  # the dataclass's own default, not a copy


def test_help_lists_every_field_with_its_docstring(capsys):
    with pytest.raises(SystemExit):
        main(["train-sae", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for cls in (SAEConfig, TrainConfig):
        for name, doc in _fields.field_docs(cls).items():
            shown = name if name in train_sae.FROM_DATA else "--" + name.replace("_", "-")
            assert shown in text, name
            assert " ".join(doc.replace("``", "").split())[:40] in text, name


def test_every_numeric_option_has_bounds():
    for command, cls, _ in CASES:
        hints = {f.name: f.type for f in dataclasses.fields(cls)}
        for name, action in _field_actions(_parser(command), cls).items():
            if re.search(r"\b(int|float)\b", str(hints[name])):
                assert getattr(action.type, "__name__", "") in ("integer", "number"), (command, name)
                assert action.type is not int and action.type is not float


def test_parsed_values_build_the_configs():
    parser = build_parser()
    args = parser.parse_args(["train-sae", "--acts", "a.pt", "--out", "o", "--kind", "relu", "--l1-coefficient", "5",
                              "--no-normalize", "--warmup-steps", "7", "--d-sae", "64"])  # fmt: skip
    cfg = SAEConfig(d_in=8, **_fields.field_values(args, SAEConfig, exclude=train_sae.FROM_DATA))
    tcfg = TrainConfig(**_fields.field_values(args, TrainConfig))
    assert (cfg.kind, cfg.l1_coefficient, cfg.d_sae) == ("relu", 5.0, 64)
    assert tcfg.normalize is False and tcfg.warmup_steps == 7
    assert dataclasses.replace(tcfg, normalize=True, warmup_steps=None) == TrainConfig()
    args = parser.parse_args(
        ["harvest", "--data", "d.txt", "--sites", "s", "--out", "o", "--dtype", "bfloat16"]
    )
    hc = HarvestConfig(**_fields.field_values(args, HarvestConfig))
    assert (
        hc == HarvestConfig(dtype="bfloat16") and hc.harvest_kwargs()["dtype"] is __import__("torch").bfloat16
    )


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--lr", "-1"], "--lr: must be a finite number in (0, 1]"),
        (["--steps", "0"], "--steps: must be an integer from 1"),
        (["--l1-coefficient", "nan"], "--l1-coefficient: must be a finite number"),
        (["--kind", "gated"], "invalid choice: 'gated'"),
    ],
)
def test_out_of_range_values_fail_at_parse_time(argv, fragment, tmp_path, capsys):
    code = main(["train-sae", "--acts", "x.pt", "--out", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and not (tmp_path / "o").exists()


def test_field_docs_reads_attribute_docstrings():
    @dataclasses.dataclass(frozen=True)
    class Demo:
        a: int = 1
        """The first."""
        b: float | None = None
        c: bool = True
        """Third, on
        two lines."""

    assert _fields.field_docs(Demo) == {"a": "The first.", "c": "Third, on two lines."}
    parser = argparse.ArgumentParser()
    assert _fields.add_fields(parser, Demo, bounds={"a": lambda s: int(s)}) == ["a", "b", "c"]
    ns = parser.parse_args(["--b", "2.5", "--no-c"])
    assert Demo(**_fields.field_values(ns, Demo)) == Demo(a=1, b=2.5, c=False)
    with pytest.raises(SystemExit):
        parser.parse_args(["--b", "inf"])
    assert math.isfinite(parser.parse_args([]).a)


def test_no_default_model_or_preloaded_alias_outside_common():
    for path in sorted(CLI.glob("*.py")):
        text = path.read_text()
        if path.name != "_common.py":
            assert '"smollm2-135m"' not in text, path.name
            assert not re.search(r"^DEFAULT_MODEL = \"", text, re.M), path.name
        assert "_PRELOADED" not in text, path.name


def _api_defaults():
    from torch_shard_interpret import anomaly, circuits, diff, lens, patching, probes, steering
    from torch_shard_interpret.report._build import build_report
    from torch_shard_interpret.serve import create_app
    from torch_shard_interpret.vision import _report

    sv = steering.SteeringVector
    return [
        ("probe", "sites", probes.fit, "sites"), ("probe", "task", probes.fit, "task"),
        ("probe", "val_fraction", probes.fit, "val_fraction"), ("probe", "seed", probes.fit, "seed"),
        ("steer", "site", sv.from_contrast, "site"), ("steer", "scale", sv.apply, "scale"),
        ("circuit", "method", circuits.attribute, "method"), ("circuit", "steps", circuits.attribute, "steps"),
        ("diff", "sites", diff.compare, "sites"), ("anomaly fit", "sites", anomaly.fit, "sites"),
        ("anomaly fit", "detector", anomaly.fit, "detector"), ("anomaly fit", "reduce", anomaly.fit, "reduce"),
        ("patch", "sites", patching.activation_patching, "sites"),
        ("patch", "direction", patching.activation_patching, "direction"),
        ("lens", "steps", lens.TunedLens.train, "steps"), ("vision-report", "steps", _report.build, "vis_steps"),
        ("report", "top_heads", build_report, "top_heads"), ("serve", "vision_model", create_app, "vision_model"),
        ("attribute", "steps", tsi.attribution.integrated_gradients, "steps"),
        ("diff", "k", diff.train_crosscoder, "k"), ("diff", "steps", diff.train_crosscoder, "steps"),
        ("steer", "max_new_tokens", tsi.Model.generate, "max_new_tokens"),
    ]  # fmt: skip


def test_option_defaults_are_the_apis_own():
    import inspect

    parsers = dict(iter_parsers(build_parser()))
    for command, dest, func, param in _api_defaults():
        expected = inspect.signature(func).parameters[param].default
        assert parsers[command].get_default(dest) == expected, (command, dest)
    assert str(parsers["probe"].get_default("position")) == str(
        inspect.signature(tsi.probes.fit).parameters["position"].default
    )
