"""Coverage-guided fuzzing of the frame decoders and the proxy/connector handlers, briefly.

The harnesses live in ``fuzz/`` (see ``fuzz/common.py``): each is run here under
atheris for a few seconds in a subprocess (a crash, a hang or a finding fails the
test with libFuzzer's report), and each ``test_one_input`` is also fed
hypothesis-made bytes in this process. Long runs are made by hand
(``python fuzz/fuzz_protocol.py -runs=5000000``); their figures are in the docs.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fuzz")
HARNESSES = ["fuzz_protocol", "fuzz_codec", "fuzz_handlers"]
SECONDS = 10        # per harness under atheris: three of them stay near half a minute

pytestmark = pytest.mark.fuzz


def _harness(name: str) -> Any:
    if FUZZ_DIR not in sys.path:
        sys.path.insert(0, FUZZ_DIR)
    return importlib.import_module(name)


@pytest.mark.timeout(SECONDS + 150)
@pytest.mark.parametrize("name", HARNESSES)
def test_atheris_finds_nothing(name: str, tmp_path: Any) -> None:
    pytest.importorskip("atheris", reason="atheris has wheels for CPython 3.11 on Linux x86_64")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(_harness(name).seeds()):
        (corpus / f"seed-{i}").write_bytes(seed)
    result = subprocess.run(
        [sys.executable, os.path.join(FUZZ_DIR, f"{name}.py"), f"-max_total_time={SECONDS}",
         "-timeout=10", "-rss_limit_mb=1024", f"-artifact_prefix={tmp_path}/",
         str(corpus)],
        cwd=tmp_path, capture_output=True, text=True, timeout=SECONDS + 120)
    report = result.stderr[-6000:]
    assert result.returncode == 0, report
    assert "Done " in result.stderr, report
    runs = int(result.stderr.rsplit("Done ", 1)[1].split()[0])
    assert runs > 100, report


@settings(max_examples=300, deadline=None, database=None)
@given(data=st.binary(max_size=600))
def test_protocol_decoders_raise_only_protocol_error(data: bytes) -> None:
    _harness("fuzz_protocol").test_one_input(data)


@settings(max_examples=300, deadline=None, database=None)
@given(data=st.binary(max_size=600))
def test_codec_decoders_raise_only_codec_error_and_round_trip(data: bytes) -> None:
    _harness("fuzz_codec").test_one_input(data)


@pytest.mark.parametrize("name", ["fuzz_protocol", "fuzz_codec"])
def test_seeds_are_valid_inputs(name: str) -> None:
    harness = _harness(name)
    for seed in harness.seeds():
        harness.test_one_input(seed)


@pytest.fixture(scope="module")
def handlers() -> Iterator[Any]:
    pytest.importorskip("atheris", reason="the harness reads its input with atheris' provider")
    harness = _harness("fuzz_handlers")
    yield harness
    harness.close()


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=1, max_size=300))
def test_handlers_survive_hypothesis_scripts(handlers: Any, data: bytes) -> None:
    handlers.test_one_input(data)
