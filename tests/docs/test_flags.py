"""Every option that `tsi <command> --help` shows is documented on a page about that command.

The help text is read live from the parser `tsi` itself builds, so options added later are checked too.
"""

from __future__ import annotations

import argparse
import re

from torch_shard_interpret.cli.main import build_parser

from ._docrun import ROOT, pages

_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _commands(parser: argparse.ArgumentParser, name: str = "tsi"):
    """(command name, its --help text) for `tsi` and every subcommand, nested ones included."""
    yield name, parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, subparser in action.choices.items():
                yield from _commands(subparser, f"{name} {sub}")


def _options(help_text: str) -> set[str]:
    # Only the option list (after the usage line and description), not options named in prose.
    body = help_text.split("options:", 1)[-1]
    return {
        m.group(0)
        for line in body.splitlines()
        if line.lstrip().startswith("-")
        for m in _OPTION.finditer(line)
    }


def test_every_help_option_is_documented():
    texts = {p: p.read_text(encoding="utf-8") for p in pages()}
    commands = dict(_commands(build_parser()))
    assert len(commands) > 10, "the parser lists fewer subcommands than expected"
    missing = []
    for command, help_text in commands.items():
        about = [
            t for t in texts.values() if command == "tsi" or re.search(re.escape(command) + r"(?![\w-])", t)
        ]
        if not about:
            missing.append(f"{command} (no page shows it)")
        for option in sorted(_options(help_text) - {"--help"}):
            if not any(re.search(re.escape(option) + r"(?![\w-])", t) for t in about):
                missing.append(f"{command} {option}")
    assert not missing, "options shown by --help but on no page about their command: " + ", ".join(missing)


def test_option_reader_sees_the_options_of_a_help_text():
    parser = argparse.ArgumentParser(prog="x", description="mentions --not-an-option in prose")
    parser.add_argument("--max-new-tokens", type=int)
    parser.add_argument("-s", "--scale")
    assert _options(parser.format_help()) == {"--help", "--max-new-tokens", "--scale"}


def test_pages_are_found():
    assert (ROOT / "README.md") in pages() and len(pages()) > 10
