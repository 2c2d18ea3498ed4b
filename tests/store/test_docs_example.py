"""The offline example of docs/store.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).parents[2] / "docs" / "store.md"


def test_docs_offline_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    example = next(b for b in blocks if "tiny_hf_model" in b)
    exec(compile(example, str(DOC), "exec"), {})
    assert "sequences" in capsys.readouterr().out
