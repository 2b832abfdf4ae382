"""Shared plumbing of the fuzz harnesses in this folder.

Each harness module defines ``test_one_input(data: bytes)``, which raises
:class:`Finding` (or any unexpected exception) when zenmon misbehaves on `data`,
and ``seeds()``, valid inputs to start the corpus from. Run one with atheris
(coverage guided; libFuzzer options pass through)::

    python fuzz/fuzz_protocol.py -runs=1000000
    python fuzz/fuzz_protocol.py -max_total_time=60 corpus_dir/

Without a corpus directory on the command line, a fresh temporary one holding the
seeds is used. tests/test_fuzz.py runs each harness briefly, and also feeds each
``test_one_input`` hypothesis-made bytes (that part needs no atheris).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterable


class Finding(AssertionError):
    """zenmon did something on a fuzz input that it must never do."""


def run_atheris(test_one_input: Callable[[bytes], None], seeds: Iterable[bytes]) -> None:
    """atheris.Setup + Fuzz over `test_one_input`, seeding a corpus if none is given.

    zenmon's Python functions (and the harness's) are instrumented for coverage; the
    Cython core and msgpack's C code are not (their callers are).
    """
    import atheris

    argv = list(sys.argv)
    if not any(not arg.startswith("-") for arg in argv[1:]):
        corpus = tempfile.mkdtemp(prefix="zenmon-fuzz-")
        for i, seed in enumerate(seeds):
            with open(os.path.join(corpus, f"seed-{i}"), "wb") as f:
                f.write(seed)
        argv.append(corpus)
    _instrument(atheris)
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


def _instrument(atheris: object) -> int:
    """Instrument every function and method of the loaded zenmon modules. -> count."""
    import inspect

    count = 0
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "zenmon" or name.startswith(("zenmon.", "fuzz_"))):
            continue
        for value in list(vars(module).values()):
            functions = [value] if inspect.isfunction(value) else (
                [v for v in vars(value).values() if inspect.isfunction(v)]
                if inspect.isclass(value) and value.__module__ == name else [])
            for fn in functions:
                if fn.__module__ == name:
                    atheris.instrument_func(fn)  # type: ignore[attr-defined]
                    count += 1
    return count
