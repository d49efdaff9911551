"""The README's code example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})


def test_readme_quick_start_matches_makefile():
    text = README.read_text()
    make = (README.parent / "Makefile").read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make demo" in text and "make test" in text
    assert "\ndemo: setup" in make and "\ntest: setup" in make
    assert "make test" in ci
