"""Supported platforms: an unsupported one fails at import, with the reason."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.timeout(60)
def test_windows_import_fails_with_reason() -> None:
    """On Windows ``import zenmon`` raises ImportError naming why (the wake-up pipe).

    No Windows here: a fresh interpreter that reads ``sys.platform`` as "win32"
    imports the installed package, which must refuse before touching anything else.
    """
    code = (
        "import sys\n"
        "sys.platform = 'win32'\n"
        "try:\n"
        "    import zenmon\n"
        "except ImportError as exc:\n"
        "    print('ImportError:', exc)\n"
        "else:\n"
        "    print('imported')\n"
    )
    proc = subprocess.run([sys.executable, "-I", "-c", code], cwd="/", capture_output=True,
                          text=True, timeout=50)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("ImportError:"), out
    assert "Windows" in out and "os.pipe" in out, out


@pytest.mark.timeout(60)
def test_import_works_here() -> None:
    """On this (POSIX) platform the same import succeeds."""
    proc = subprocess.run([sys.executable, "-I", "-c", "import zenmon; print(zenmon.Node)"],
                          cwd="/", capture_output=True, text=True, timeout=50)
    assert proc.returncode == 0, proc.stderr
    assert "zenmon.node.Node" in proc.stdout
