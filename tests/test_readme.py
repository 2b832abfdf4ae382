"""The README's examples run as written (each in a fresh interpreter, on loopback).

The remote example waits for its subscriptions before the target exits; run often
enough, a version that did not would print ``noproc`` (the race it explains).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def examples() -> list[str]:
    """The README's python blocks that start a node."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    return [b for b in blocks if "with zenmon.Node(" in b]


def test_readme_has_examples():
    assert len(examples()) >= 3


@pytest.mark.parametrize("index", range(3))
def test_readme_example_runs(index):
    code = "import zenmon\n" + examples()[index]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=tempfile.gettempdir(), check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "noproc" not in done.stdout, done.stdout
