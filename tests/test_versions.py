"""Where each backend comes from, read from the installed packages' metadata: its framework's
distribution and version, and for a plug-in the distribution that registers it; shown by
`harness backends`, recorded in meta.json and in the report.

Throwaway distributions are written into tmp_path (.dist-info folders) and put on sys.path, so
importlib.metadata finds them as it would installed packages.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from harness import escape, listing, provenance, registry, report
from harness.registry import ENTRY_POINT_GROUP

PLUGIN = '''from implementations.numpy_fast import NumpyFast


class Throwaway(NumpyFast):
    name = "throwaway"
    framework = {framework!r}
'''
SKLEARN_PYPROJECT = (Path(__file__).resolve().parent.parent / "plugins" / "sklearn_backend" /
                     "pyproject.toml")


def dist_info(where: Path, name: str, version: str, files: dict[str, str]) -> None:
    """A .dist-info folder for distribution `name` holding `files` (its metadata files)."""
    info = where / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    for file, text in files.items():
        (info / file).write_text(text)


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """Installs a plug-in distribution `throwaway-plugin` 2.5 registering backend "throwaway"
    whose framework is the module the test passes."""
    def install(framework: str) -> None:
        (tmp_path / "throwaway_backend.py").write_text(PLUGIN.format(framework=framework))
        entry = "throwaway = throwaway_backend:Throwaway"
        dist_info(tmp_path, "throwaway-plugin", "2.5",
                  {"entry_points.txt": f"[{ENTRY_POINT_GROUP}]\n{entry}\n"})
        monkeypatch.syspath_prepend(str(tmp_path))
    yield install
    sys.modules.pop("throwaway_backend", None)


def test_a_module_resolves_to_a_distribution_of_another_name(tmp_path, monkeypatch):
    """fakefw is installed by fake-framework-dist (like sklearn by scikit-learn): no table."""
    (tmp_path / "fakefw.py").write_text("")
    dist_info(tmp_path, "fake-framework-dist", "7.1", {"top_level.txt": "fakefw\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    assert registry.distribution_of("fakefw") == "fake-framework-dist"
    assert registry.distribution_of("fakefw.sub") == "fake-framework-dist"
    assert registry.distribution_of("fakefw_absent") is None


def test_sklearn_resolves_to_scikit_learn():
    pytest.importorskip("sklearn")
    assert registry.distribution_of("sklearn") == "scikit-learn"


def test_sklearn_plugin_shows_its_distribution_and_version():
    if "sklearn" not in registry.registry():
        pytest.skip("plug-in not installed: pip install -e plugins/sklearn_backend")
    project = tomllib.loads(SKLEARN_PYPROJECT.read_text())["project"]
    found = registry.versions("sklearn")
    assert (found.plugin_distribution, found.plugin_version) == (project["name"],
                                                                  project["version"])
    assert found.framework_distribution == "scikit-learn"
    line = listing.describe("sklearn", registry.registry()["sklearn"])[0]
    assert f"plug-in {project['name']} {project['version']}" in line
    assert f"scikit-learn {found.framework_version}" in line


def test_a_plugin_whose_framework_is_missing_says_so(plugin):
    plugin("no_such_framework_here")
    found = registry.versions("throwaway")
    assert found.framework_version is None
    assert (found.plugin_distribution, found.plugin_version) == ("throwaway-plugin", "2.5")
    line = listing.describe("throwaway", registry.registry()["throwaway"])[0]
    assert line.endswith("not installed (no_such_framework_here); plug-in throwaway-plugin 2.5")
    row = report.backend_origin(provenance.backends()["throwaway"])
    assert row == "no_such_framework_here: no installed distribution; plug-in throwaway-plugin 2.5"


def test_a_plugin_with_an_installed_framework(plugin):
    plugin("numpy")
    meta = provenance.backends()["throwaway"]
    assert meta["framework_distribution"] == "numpy"
    assert meta["framework_version"] == np.__version__
    assert meta["plugin_distribution"] == "throwaway-plugin"


def test_builtins_are_recorded_without_a_plugin_distribution():
    meta = provenance.backends()
    assert set(registry.BUILTIN) <= set(meta)
    assert meta["numpy"]["framework_version"] == np.__version__
    assert all(meta[name]["plugin_distribution"] is None for name in registry.BUILTIN)
    assert report.backend_origin(meta["numpy"]) == f"numpy {np.__version__}; built-in"


def test_the_report_lists_every_backend_of_meta_json():
    meta = {"backends": provenance.backends()}
    text = report.provenance(meta, {})
    for name in registry.registry():
        assert f"| backend {escape.markdown(name)} |" in text


def test_a_broken_plugin_is_recorded_not_raised(tmp_path, monkeypatch):
    dist_info(tmp_path, "broken-plugin", "1.0", {
        "entry_points.txt": f"[{ENTRY_POINT_GROUP}]\nbroken = no_such_module_xyz:Nothing\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    meta = provenance.backends()
    assert "ModuleNotFoundError" in meta["broken"]["error"]
    assert report.backend_origin(meta["broken"]).startswith("cannot be loaded:")
