"""The installed distribution's metadata: licence, version, extras, optional Prometheus."""

from __future__ import annotations

import sys
from importlib import metadata

import pytest

import zenmon


def test_version_is_written_once() -> None:
    from zenmon import _version

    assert zenmon.__version__ == _version.__version__ == metadata.version("zenmon")


def test_license_is_an_spdx_expression_with_its_file() -> None:
    meta = metadata.metadata("zenmon")
    assert meta["License-Expression"] == "MIT"
    assert "LICENSE" in (meta.get_all("License-File") or [])
    assert meta.get("License") is None   # not the deprecated free-text field
    files = [str(f) for f in metadata.files("zenmon") or []]
    assert any(f.endswith("/licenses/LICENSE") or f.endswith("/LICENSE") for f in files), files


def test_classifiers_and_urls() -> None:
    meta = metadata.metadata("zenmon")
    classifiers = set(meta.get_all("Classifier") or [])
    for minor in range(10, 14):      # exactly what CI tests (ci/other-pythons.sh)
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    assert "Programming Language :: Python :: 3.14" not in classifiers   # untested
    for needed in ("Operating System :: POSIX :: Linux", "Programming Language :: Cython",
                   "Typing :: Typed"):
        assert needed in classifiers
    assert any("github.com/zenmon/zenmon" in url for url in meta.get_all("Project-URL") or [])


def test_prometheus_client_is_an_extra() -> None:
    requires = metadata.requires("zenmon") or []
    prometheus = [r for r in requires if r.startswith("prometheus-client")]
    assert prometheus, requires
    assert all("extra ==" in r for r in prometheus), prometheus
    assert any('extra == "prometheus"' in r for r in prometheus), prometheus


def test_collector_without_prometheus_client_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.split(".")[0] == "prometheus_client"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)   # import fails
    node = zenmon.Node()
    with pytest.raises(ImportError, match=r"zenmon\[prometheus\]"):
        zenmon.PrometheusCollector(node)


def test_importing_zenmon_does_not_import_prometheus_client() -> None:
    import subprocess

    code = ("import sys; sys.modules['prometheus_client'] = None; import zenmon; "
            "print(zenmon.Node().__class__.__name__)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Node"
