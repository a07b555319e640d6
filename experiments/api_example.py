"""The Python API in one script: a learning-rate sweep, given as a dict, run in float64 and in
float32, summarised as one small table.

    .venv/bin/python experiments/api_example.py

Per dtype and learning rate: the verdict, the worst gradient error between the backends at
the same parameters (relative, with the tolerance it was held to), how far the loss curves
drifted apart, and each backend's final loss. float64 is where agreement is decided; float32
shows what rounding does to the same training. Nothing is written: add out="results/..." to
`harness.run` to keep a results folder that `harness plot` and `harness report` can read.
"""

from __future__ import annotations

import importlib.util

import pandas as pd

import harness

SPEC = {
    "name": "api_example",
    "seed": 0,
    "data": {"name": "spirals", "n_samples": 300},
    "model": {"layers": [{"size": 8, "activation": "tanh"},
                         {"size": 8, "activation": "tanh"},
                         {"size": 3, "activation": "softmax"}]},
    "loss": {"name": "cross_entropy"},
    "optimizer": {"name": "sgd"},
    "training": {"learning_rate": 0.1, "batch_size": 32, "epochs": 10,
                 "grad_check_steps": [0, 50]},
    "sweep": {"field": "training.learning_rate", "values": [0.01, 0.3, 3.0],
              "labels": ["0.01", "0.3", "3.0"]},
}
# The textbook reference against a framework where one is installed, else against the tuned
# NumPy backend.
OTHER = next((n for n in ("torch", "jax") if importlib.util.find_spec(n)), "numpy_fast")
BACKENDS = ["numpy", OTHER]


def check(variant: dict, name: str) -> dict:
    """The summary's check `name` of the second backend against the reference."""
    return next(c for c in variant["checks"] if c["check"] == name and c["backend"] == OTHER)


def rows(result: harness.Result) -> list[dict]:
    """One row per sweep point: the summary's verdict and checks, the steps table's last
    losses."""
    steps = result.tables["steps"]
    last = steps[steps.step == steps.step.max()].set_index(["variant", "backend"]).loss
    out = []
    for v in result.summary["variants"]:
        grads = check(v, "gradients")
        out.append({"dtype": v["dtype"], "learning rate": v["variant"], "verdict": v["verdict"],
                    "gradient error": f"{grads['worst']:.1e} (tol {grads['tolerance']:.0e})",
                    "loss-curve drift": f"{check(v, 'loss_curve')['worst']:.1e}",
                    **{f"final loss {b}": f"{last[v['variant'], b]:.4f}" for b in BACKENDS}})
    return out


def main() -> None:
    table = [row for dtype in ("float64", "float32")
             for row in rows(harness.run(SPEC, backends=BACKENDS, dtype=dtype))]
    print(pd.DataFrame(table).to_string(index=False))


if __name__ == "__main__":
    main()
