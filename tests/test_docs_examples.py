"""The Python examples of the README and docs/methods.md run as printed (a front page whose
example fails is the first thing a newcomer meets)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


@pytest.mark.parametrize("doc", ["README.md", "docs/methods.md"])
def test_the_first_python_example_runs(doc, monkeypatch, tmp_path):
    blocks = python_blocks(REPO / doc)
    assert blocks, f"{doc} has no python example"
    # the README's example writes a bundle where it runs; the methods example reads a demo
    monkeypatch.chdir(tmp_path if doc == "README.md" else REPO)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], doc, "exec"), {})
    assert out.getvalue().strip()  # every example prints what it computed
