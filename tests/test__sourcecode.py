"""Lint, type and packaging checks, run as part of the test suite.

Each tool runs as ``sys.executable -m <tool>`` over the repository's source files
(found from this file's location, never from the installed package), so a lint or
typing regression fails CI like any other test. Without a tool the check is
skipped locally, and fails when ``ZENMON_CI`` is set (``.ci/run`` sets it).

The packaging test builds the sdist and a wheel from it in a copy of the
repository and checks what each one carries.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Python trees that ruff checks (those that exist).
RUFF_PATHS = ("zenmon", "tests", "bench", "ci", "examples", "docs", "fuzz")
# Cython sources that cython-lint checks.
CYTHON_GLOBS = ("zenmon/*.pyx", "zenmon/*.pxd", "zenmon/_cy/*.pxi")
MAX_LINE_LENGTH = "100"  # also line-length in ruff.toml


def require(module: str) -> None:
    """Skip (or fail under CI) when the tool module ``module`` is not installed."""
    if importlib.util.find_spec(module) is None:
        message = f"{module} is not installed (it is in the [test] extra)"
        if os.environ.get("ZENMON_CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def tool_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with this interpreter's scripts first on PATH.

    Tools run as ``sys.executable -m <tool>``, but some run helpers by name
    (cython-lint runs ``pycodestyle``): those must be the ones installed for this
    interpreter, even when its venv is not activated.
    """
    env = dict(os.environ if env is None else env)
    scripts = [sysconfig.get_path("scripts"), os.path.dirname(sys.executable)]
    env["PATH"] = os.pathsep.join([*dict.fromkeys(scripts), env.get("PATH", os.defpath)])
    return env


def run_tool(
    name: str, args: list[str], *, timeout: float = 300, env: dict[str, str] | None = None
) -> None:
    """Run ``args`` from the repository root and fail with the tool's output on error."""
    env = tool_env(env)
    proc = subprocess.run(
        args,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if proc.returncode != 0:
        output = "\n".join(part for part in (proc.stdout, proc.stderr) if part.strip())
        pytest.fail(f"{name} failed (exit {proc.returncode}):\n{output}", pytrace=False)


def test_ruff() -> None:
    require("ruff")
    config = ROOT / "ruff.toml"
    assert config.is_file(), f"missing {config}"
    paths = [p for p in RUFF_PATHS if (ROOT / p).is_dir()]
    run_tool(
        "ruff",
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--config", str(config),
         "--output-format", "concise", *paths],
    )


def test_cython_lint() -> None:
    require("cython_lint")
    require("pycodestyle")   # cython-lint runs it as a program (found via tool_env)
    files = sorted(str(p.relative_to(ROOT)) for g in CYTHON_GLOBS for p in ROOT.glob(g))
    assert "zenmon/_core.pyx" in files, "zenmon/_core.pyx not found"
    run_tool(
        "cython-lint",
        [sys.executable, "-m", "cython_lint.cython_lint",
         "--max-line-length", MAX_LINE_LENGTH, *files],
    )


def test_mypy(tmp_path: Path) -> None:
    """Type-check the package (with the ``_core.pyi`` stub) and a typed use of the API.

    ``tests/typing_check.py`` is never run; it exists for mypy, and uses
    ``assert_type`` so that an unannotated public name (``Any``) fails here.
    """
    require("mypy")
    assert (ROOT / "zenmon" / "_core.pyi").is_file(), "zenmon/_core.pyi not found"
    assert (ROOT / "zenmon" / "py.typed").is_file(), "zenmon/py.typed not found"
    # The source tree, not an installed zenmon, must answer `import zenmon`.
    env = dict(os.environ, MYPYPATH=str(ROOT))
    run_tool(
        "mypy",
        [sys.executable, "-m", "mypy",
         "--python-version", "3.10",
         "--cache-dir", str(tmp_path / "mypy-cache"),
         "--strict-equality", "--warn-unused-ignores", "--warn-redundant-casts",
         "--show-error-codes", "--no-color-output",
         # msgpack ships no annotations; its names read as Any rather than as errors.
         "--disable-error-code", "import-untyped",
         # The package directory (as `-p zenmon` would, but mypy cannot mix -p with files).
         "zenmon", "tests/typing_check.py"],
        env=env,
    )


def copy_source_tree(dest: Path) -> None:
    """Copy the files git would put in a commit (tracked plus untracked, not ignored)."""
    try:
        listing = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, check=True, timeout=60,
        ).stdout.decode()
        names = [n for n in listing.split("\0") if n]
    except (OSError, subprocess.CalledProcessError):
        names = []
    if names:
        for name in names:
            src = ROOT / name
            if src.is_file():  # tracked but deleted in the work tree: skip
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / name)
    else:
        # Not a git checkout (an unpacked sdist, say): copy without build products.
        shutil.copytree(
            ROOT, dest, dirs_exist_ok=True,
            ignore=shutil.ignore_patterns(
                ".git", "build", "dist", "*.egg-info", "__pycache__", "*.so", "*.pyd",
                "*.c", "*.cpp", "*.html", ".*_cache", ".benchmarks", ".hypothesis",
            ),
        )


@dataclass
class Built:
    """What one ``python -m build`` run left: its output and the two files."""

    source: Path
    outdir: Path
    output: str


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """``python -m build`` (sdist, then a wheel from that sdist), once for this module.

    Runs in a copy of the repository: setuptools writes build/ and *.egg-info into
    the tree it builds. Needs PyPI for the isolated build environment.
    """
    require("build")
    tmp_path = tmp_path_factory.mktemp("build")
    source = tmp_path / "source"
    outdir = tmp_path / "dist"
    source.mkdir()
    copy_source_tree(source)
    # byte-compiling off (PYTHONDONTWRITEBYTECODE) makes setuptools say so, as a warning
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(outdir), str(source)],
        cwd=source, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=580,
        env=env,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"python -m build failed (exit {proc.returncode}):\n"
            f"{proc.stdout[-8000:]}\n{proc.stderr[-8000:]}",
            pytrace=False,
        )
    return Built(source, outdir, proc.stdout + proc.stderr)


CYTHON_WARNING = re.compile(r"^warning: \S+\.(pyx|pxd|pxi):\d+:\d+: ")
C_WARNING = re.compile(r"\.(c|cpp|h):\d+:\d+: warning: ")


def warnings_in(output: str) -> tuple[list[str], list[str]]:
    """Warning lines of a build's output -> (packaging, Cython or C compiler)."""
    packaging, compiler = [], []
    for line in output.splitlines():
        if "warning" not in line.lower():
            continue
        if CYTHON_WARNING.search(line) or C_WARNING.search(line):
            compiler.append(line.strip())
        else:
            packaging.append(line.strip())
    return packaging, compiler


def test_the_warning_sorter() -> None:
    packaging, compiler = warnings_in(
        "warning: no files found matching '*.h' under directory 'zenmon'\n"
        "SetuptoolsDeprecationWarning: License classifiers are deprecated.\n"
        "warning: zenmon/_cy/pid.pxi:69:32: the result of using negative indices\n"
        "zenmon/_core.c:1:2: warning: comparison of integer expressions\n"
        "all fine\n")
    assert len(packaging) == 2 and len(compiler) == 2


@pytest.mark.timeout(600)
def test_build_has_no_packaging_warnings(built: Built) -> None:
    packaging, _ = warnings_in(built.output)
    assert not packaging, "python -m build warned:\n" + "\n".join(packaging[:40])


@pytest.mark.timeout(600)
def test_build_has_no_compiler_warnings(built: Built) -> None:
    _, compiler = warnings_in(built.output)
    assert not compiler, "the build of _core warned:\n" + "\n".join(compiler[:40])


@pytest.mark.timeout(600)
def test_sdist_and_wheel(built: Built) -> None:
    """The sdist and the wheel (built from that sdist) ship the right files."""
    source, outdir = built.source, built.outdir
    (sdist,) = outdir.glob("zenmon-*.tar.gz")
    (wheel,) = outdir.glob("zenmon-*.whl")

    with zipfile.ZipFile(wheel) as zf:
        wheel_names = set(zf.namelist())
    generated = sorted(n for n in wheel_names if n.endswith((".c", ".cpp", ".html")))
    assert not generated, f"generated sources in the wheel: {generated}"
    for name in ("zenmon/__init__.py", "zenmon/_core.pyi", "zenmon/py.typed",
                 "zenmon/_version.py", "zenmon/tools/__init__.py", "zenmon/tools/demo.py",
                 "zenmon/tools/child.py"):
        assert name in wheel_names, f"{name} missing from {wheel.name}"
    licences = [n for n in wheel_names if n.endswith(".dist-info/licenses/LICENSE")]
    assert licences, f"LICENSE missing from {wheel.name}"
    assert any(
        n.startswith("zenmon/_core.") and n.endswith((".so", ".pyd")) for n in wheel_names
    ), f"compiled zenmon._core missing from {wheel.name}"

    with tarfile.open(sdist) as tf:
        # Members are "zenmon-<version>/<path>": drop the top directory.
        sdist_names = {m.name.partition("/")[2] for m in tf.getmembers() if m.isfile()}
    for name in (
        "pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE", "CHANGELOG.md",
        "zenmon/_version.py", "zenmon/tools/demo.py", "ci/debug-build.sh",
        "zenmon/_core.pyx", "zenmon/_core.pxd", "zenmon/_core.pyi", "zenmon/py.typed",
        "tests/test__sourcecode.py", "tests/typing_check.py",
    ):
        assert name in sdist_names, f"{name} missing from {sdist.name}"
    cython_in_tree = {
        str(p.relative_to(source))
        for pattern in (*CYTHON_GLOBS, "zenmon/*.h", "zenmon/_cy/*.h", "zenmon/*.pyi")
        for p in source.glob(pattern)
    }
    missing = sorted(cython_in_tree - sdist_names)
    assert not missing, f"missing from {sdist.name}: {missing}"
    generated = sorted(
        n for n in sdist_names if n.endswith((".c", ".cpp", ".html", ".so", ".pyd"))
    )
    assert not generated, f"generated files in the sdist: {generated}"


def test_lint_runs_without_venv_on_path() -> None:
    """``PYTHON=<venv>/bin/python ci/test.sh`` works with the venv's scripts off PATH.

    cython-lint runs ``pycodestyle`` by name; the lint tests must still find the
    one installed for this interpreter, not fail (or pick another) from PATH.
    """
    require("cython_lint")
    require("ruff")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = "/usr/bin:/bin"   # no venv, no pyenv shims: only the system's tools
    env["PYTHON"] = sys.executable
    proc = subprocess.run(
        ["bash", str(ROOT / "ci" / "test.sh"), "-q", "-p", "no:randomly",
         str(ROOT / "tests" / "test__sourcecode.py"), "-k", "test_ruff or test_cython_lint"],
        cwd="/", stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240, env=env,
    )
    output = f"exit {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    assert proc.returncode == 0, output
    assert "2 passed" in proc.stdout, proc.stdout[-2000:]
