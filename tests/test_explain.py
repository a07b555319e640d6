"""`harness explain`: the chain rule of one step, every backend side by side. The worked example
must show the tutorial's numbers (Mazur, "A Step by Step Backpropagation Example") in every
backend's column, and a backend with a wrong derivative must stand out in the row of that
derivative."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import implementations.numpy_textbook as textbook
from harness import cli, data, explain, params
from harness.explain import rows as explain_rows
from harness.explain.rows import Point, items
from harness.explain.text import Row, largest, spread, table
from harness.spec import sweep
from implementations.numpy_textbook import NumpyTextbook

WORKED = Path("experiments/worked_example.toml")
SPEC = sweep.load(WORKED)[0]
EVERY = ("numpy", "numpy_fast", "torch", "jax")
# The tutorial's numbers (printed there to 8-9 significant digits) by our row labels: w5 is
# W1[0,0], w1 is W0[0,0] (W is stored (fan_in, fan_out); see the spec's comment).
TUTORIAL = {"loss E at step 0 (trace)": 0.298371109,
            "input h0[0] = dz1[j]/dW1[0,j]": 0.593269992,          # out_h1
            "out a1[0] = sigmoid(net)": 0.75136507,                # out_o1
            "dE/dout da1[0]": 0.74136507,                          # dE/dout_o1
            "dout/dnet f'(z1[0]) = dz/da": 0.186815602,            # dout_o1/dnet_o1
            "dE/dW1[0,0] (batch)": 0.082167041,                    # dE/dw5
            "W1[0,0] after the step": 0.35891648,                  # w5+
            "dE/dW0[0,0] (batch)": 0.000438568,                    # dE/dw1
            "W0[0,0] after the step": 0.149780716}                 # w1+
HALF_LAST_DIGIT = 5e-9                    # the tutorial's 8-9 significant digits
INJECTED = 1e-3                           # relative error of the wrong sigmoid derivative
EXACT = 1e-15                             # float64 rounding of numbers of order one


def parse(out: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """The printed table back into {label: {column: cell}}, cut at the header row's columns."""
    lines = out.splitlines()
    head = next(line for line in lines if line.rstrip().endswith("max diff"))
    names = head.split()[:-2]               # the last two words are "max diff"
    starts = [head.index(f" {n} ") + 1 for n in names] + [head.index("max diff")]
    rows = {}
    for line in lines[lines.index(head) + 1:]:
        label = " ".join(line[:starts[0]].split())
        if label and len(line) > starts[0]:
            cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
            rows[label] = dict(zip([*names, "max diff"], cells, strict=True))
    return names, rows


def test_worked_example_shows_the_tutorials_numbers_for_every_backend(capsys):
    assert cli.main(["explain", str(WORKED), "--backends", ",".join(EVERY)]) == 0
    names, rows = parse(capsys.readouterr().out)
    assert names[0] == "numpy"
    for label, want in TUTORIAL.items():
        for name in names:
            assert float(rows[label][name]) == pytest.approx(want, abs=HALF_LAST_DIGIT), \
                (label, name)


def test_a_wrong_derivative_shows_in_its_own_row(monkeypatch):
    """numpy with f'(z) 0.1% too large: every row before the output's f' agrees exactly, that
    row differs by the error, and the error travels down to the weights."""
    right = textbook.activation_derivative
    monkeypatch.setattr(textbook, "activation_derivative",
                        lambda layer, z, a: right(layer, z, a) * (1 + INJECTED))
    rows = [r for r in items(explain.observe(SPEC, ["numpy_fast", "numpy"], 0, 0))
            if isinstance(r, Row)]
    first = next(r for r in rows if r.diff > EXACT)
    assert first.label.split() == ["dout/dnet", "f'(z1[0])", "=", "dz/da"]
    assert first.diff == pytest.approx(INJECTED * TUTORIAL["dout/dnet f'(z1[0]) = dz/da"],
                                       rel=1e-6)
    by_label = {" ".join(r.label.split()): r for r in rows}
    assert by_label["dE/dW0[0,0] (batch)"].diff > EXACT


class Opaque(NumpyTextbook):
    """The reference maths, but it can neither trace nor take an optimizer state."""
    name = "opaque"

    def trace(self, batch):
        return None

    def loss_and_grads(self, batch):
        traced = super().trace(batch)
        return traced.loss, traced.grads

    def load_state(self, state):
        return False


def test_a_backend_that_cannot_trace_still_shows_its_gradients_and_step():
    point = explain.observe(SPEC, ["numpy", Opaque], 1, 0)
    assert point.observed["opaque"].notes == ("fresh optimizer state", "cannot trace")
    assert point.observed["numpy"].notes == ()
    rows = {" ".join(r.label.split()): r for r in items(point) if isinstance(r, Row)}
    assert rows["net z1[0]"].values["opaque"] is None
    assert rows["net z1[0]"].diff is None
    assert rows["dE/dW1[0,0] (batch)"].values["opaque"] == rows["dE/dW1[0,0] (batch)"].values[
        "numpy"]
    assert "-" in "\n".join(table(items(point), ["numpy", "opaque"]))


def test_the_step_starts_where_the_reference_is_after_that_many_steps():
    backend = NumpyTextbook(SPEC)
    backend.load(params.initial_params(SPEC))
    batch = data.eval_batch(data.prepare(SPEC).train)
    losses = [backend.train_step(batch) for _ in range(3)]
    point = explain.observe(SPEC, ["numpy"], 2, 0)
    assert point.observed["numpy"].step_loss == losses[2]
    assert point.observed["numpy"].trace.loss == losses[2]


def digits_point() -> Point:
    spec = sweep.load(Path("experiments/digits_mlp.toml"))[0]
    return explain.observe(spec, ["numpy", "numpy_fast"], 0, 5)


def test_wide_layers_are_summarised():
    text = explain_rows.text(digits_point())
    lines = text.splitlines()
    assert len(lines) < 150
    assert any("61 more" in line for line in lines)
    assert "units 3..9 (7 more; sample 5)" in text


@pytest.mark.parametrize(("args", "fragment"), [
    (["--step", "10000"], "--step: 10000 is out of range"),
    (["--sample", "1"], "--sample: 1 is out of range"),
    (["--backends", "numpy,nope"], "'nope' is not one of"),
    (["--variant", "nope"], "--variant: 'nope' is not one of")])
def test_bad_input_is_one_line_and_exit_two(args, fragment, capsys):
    assert cli.main(["explain", str(WORKED), *args]) == 2
    err = capsys.readouterr().err
    assert fragment in err
    assert err.count("\n") == 1


def test_spread_is_the_largest_elementwise_difference():
    a, b, c = np.array([1.0, 5.0]), np.array([1.5, 5.0]), np.array([1.0, 4.0])
    assert spread([a, b, c]) == 1.0
    assert spread([a]) is None
    rows = [Row("small", {}, 1e-3), Row("diverged", {}, float("nan")), Row("one", {}, None)]
    assert largest(rows).label == "diverged"


def test_help_names_every_option(capsys):
    with pytest.raises(SystemExit):
        cli.main(["explain", "--help"])
    text = capsys.readouterr().out
    for option in ("--step", "--sample", "--backends", "--dtype", "--variant"):
        assert option in text
