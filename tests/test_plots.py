"""`harness plot` and `harness report` on real results folders: every figure comes back from
the stored tables alone (without importing torch or JAX), the images are real PNGs, the report
links every one of them and carries the provenance, and sweeps get one set per point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from matplotlib import image

from harness import results
from harness.plots import folder as plots

SPEC = """name = "plots_small"
seed = 1
[data]
name = "xor"
n_samples = 48
validation = 0.25
[[model.layers]]
size = 4
activation = "tanh"
[[model.layers]]
size = 4
activation = "tanh"
[[model.layers]]
size = 2
activation = "softmax"
[loss]
name = "cross_entropy"
[training]
learning_rate = 0.5
batch_size = 8
epochs = 3
grad_check_steps = [0, 5]
"""
SWEEP = SPEC + """[sweep]
field = "training.learning_rate"
values = [0.1, 0.5]
"""
# Two backends, so the comparison figures (loss drift) are drawn too; the two NumPy ones need no
# framework, and a subprocess that imports none starts fast.
BACKENDS = "numpy,numpy_fast"
ALWAYS = {"loss_curves", "gradient_errors", "grad_norms", "timings"}
FRAMEWORKS = ("torch", "jax", "jaxlib")
# `harness plot DIR` as the command line runs it, then a real check of what it imported.
GUARDED_PLOT = f"""
import runpy, sys
sys.argv = ["harness", "plot", sys.argv[1]]
try:
    runpy.run_module("harness", run_name="__main__")
except SystemExit as done:
    code = done.code
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {FRAMEWORKS!r})
if loaded:
    sys.exit("imported " + ", ".join(loaded))
sys.exit(code)
"""
MIN_PIXELS, MAX_PIXELS = 300, 2000


def harness(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, timeout=300)


def _results(tmp: Path, spec: str, backends: str) -> Path:
    path, out = tmp / "spec.toml", tmp / "results"
    path.write_text(spec)
    proc = harness("run", str(path), "--backends", backends, "--out", str(out), "--quiet")
    assert proc.returncode in (0, 1, 3), proc.stderr
    return out


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    return _results(tmp_path_factory.mktemp("single"), SPEC, BACKENDS)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    return _results(tmp_path_factory.mktemp("sweep"), SWEEP, "numpy")


def pngs(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.png")}


def test_plot_redraws_every_png_without_importing_frameworks(single):
    expected = ALWAYS | {"loss_drift"}
    for path in single.glob("*.png"):
        path.unlink()
    proc = subprocess.run([sys.executable, "-c", GUARDED_PLOT, str(single)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert pngs(single) == {f"{kind}.png" for kind in expected}
    assert {Path(line).name for line in proc.stdout.split()} == pngs(single)
    assert not list(single.glob(".*.tmp")), "temporary files left behind"


def test_the_import_guard_can_fail(tmp_path):
    """The guard above is real: a plot run with a framework module loaded is caught (a stand-in
    module named torch: the guard reads sys.modules, and the real import takes seconds)."""
    script = "import sys, types\nsys.modules['torch'] = types.ModuleType('torch')\n" + GUARDED_PLOT
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0
    assert "imported torch" in proc.stderr


def test_pngs_are_readable_images_of_a_sensible_size(single):
    plots.plot_folder(single)
    for name in pngs(single):
        pixels = image.imread(single / name)
        height, width = pixels.shape[:2]
        assert MIN_PIXELS <= width <= MAX_PIXELS and MIN_PIXELS <= height <= MAX_PIXELS, name
        assert pixels.std() > 0, f"{name} is blank"


def test_report_has_verdict_plots_and_provenance(single):
    for path in single.glob("*.png"):
        path.unlink()
    proc = harness("report", str(single))
    assert proc.returncode == 0, proc.stderr
    report = Path(proc.stdout.strip())
    assert report == single / "report.md"
    text = report.read_text()
    meta = json.loads((single / "meta.json").read_text())
    assert "| check | numpy (ref) |" in text
    assert pngs(single), "the report draws missing plots first"
    for name in pngs(single):
        assert f"]({name})" in text
    assert "## Provenance" in text
    assert f"| git commit | `{meta['git']['commit'] or 'unknown'}`" in text
    assert "```toml" in text and 'name = "plots_small"' in text


def test_sweep_gets_one_set_of_figures_per_point(sweep):
    summary = json.loads((sweep / "summary.json").read_text())
    labels = [v["variant"] for v in summary["variants"]]
    paths = plots.plot_folder(sweep)
    assert all(p.is_file() for p in paths)
    names = {p.name for p in paths}
    for label, slug in zip(labels, plots.slugs(labels), strict=True):
        assert slug and slug in label.replace("=", "-")
        assert {f"{kind}__{slug}.png" for kind in ALWAYS} <= names
    assert "sweep_overview.png" in names
    proc = harness("report", str(sweep))
    assert proc.returncode == 0, proc.stderr
    text = (sweep / "report.md").read_text()
    for label in labels:
        assert f"`{label}`" in text


def test_variant_labels_become_safe_distinct_file_names():
    labels = ["", "learning_rate=0.1", "l2=0.001,drop_prob=0.2", "a b/c", "a_b_c", "==="]
    out = plots.slugs(labels)
    assert out[0] == ""
    assert out[1] == "learning_rate-0.1"
    assert len(set(out)) == len(out)
    assert all(s == "" or (s[0].isalnum() and all(c.isalnum() or c in "._-" for c in s))
               for s in out)


def test_every_figure_has_a_title_axis_labels_and_a_legend(single):
    frames, summary, _ = results.read(single)
    for plot in plots.plan(frames, summary):
        fig = plot.draw()
        assert summary["experiment"] in fig.get_suptitle(), plot.file
        assert fig.legends, f"{plot.file}: no legend"
        axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
        assert axes and all(ax.get_xlabel() and ax.get_ylabel() for ax in axes), plot.file
