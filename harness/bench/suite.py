"""`harness bench`: step time, achieved GFLOP/s and fraction of the machine's own matmul
roofline for every backend over a grid of shapes, in float32 and float64.

Work per training step is counted as 6 * batch * sum(fan_in * fan_out) flops: three matmuls
per layer (forward h @ W, weight gradient h^T @ delta, input gradient delta @ W^T), two flops
per multiply-add. The roofline is the matrix products a step really needs, done by bare NumPy
on preallocated arrays and timed in the same interleaved rounds as the backends: every
layer's forward and weight gradient, and the input gradient of every layer but the first (no
one needs dL/dx). Its time is the least a step can take on this machine's BLAS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.bench import threads, timing, workers
from harness.data import Batch, rng_for
from harness.params import initial_params
from harness.registry import backend_class
from harness.spec import Data, Layer, Loss, Model, Optimizer, Spec, Training

# (layer sizes, batch): from overhead-bound to matmul-bound, width 64..2048, depth 2..8.
DEFAULT_SHAPES = ("64-64-10:32", "64-64-64-10:1024", "256-256-256-10:128", "784-256-256-10:128",
                  "512-512-512-512-512-10:256", "1024-1024-1024-10:512", "2048-2048-10:256",
                  "256-256-256-256-256-256-256-256-10:64")
ROOFLINE = "roofline"
# The NumPy contestant is the tuned backend; `numpy`, the textbook one, is the reference of
# comparisons, not of speed (it can still be timed with --backends).
NUMPY = "numpy_fast"
FRAMEWORKS = ("torch", "jax")
DEFAULT_BACKENDS = (NUMPY, *FRAMEWORKS)
BENCH_LR = 1e-4               # small: the weights stay put, so no NaN/denormal slow paths
BENCH_SEED = 0


@dataclass(frozen=True)
class Shape:
    sizes: tuple[int, ...]
    batch: int

    @classmethod
    def parse(cls, text: str) -> Shape:
        sizes, _, batch = text.partition(":")
        try:
            shape = cls(tuple(int(s) for s in sizes.split("-")), int(batch))
        except ValueError:
            shape = None
        if shape is None or len(shape.sizes) < 2 or min(*shape.sizes, shape.batch) < 1:
            raise ValueError(f"--shapes: {text!r} is not SIZES:BATCH like 784-256-256-10:128")
        return shape

    @property
    def label(self) -> str:
        return f"{'-'.join(map(str, self.sizes))}:{self.batch}"

    @property
    def flops(self) -> float:
        pairs = zip(self.sizes[:-1], self.sizes[1:], strict=False)
        return 6.0 * self.batch * sum(a * b for a, b in pairs)


def bench_spec(shape: Shape, dtype: str) -> Spec:
    """A ReLU MLP with a softmax cross-entropy head and plain SGD (the classic benchmark)."""
    hidden = tuple(Layer(s, "relu") for s in shape.sizes[1:-1])
    layers = (*hidden, Layer(shape.sizes[-1], "softmax"))
    return Spec("bench", BENCH_SEED, dtype, Model(shape.sizes[0], layers, "he_normal"),
                Loss("cross_entropy"), Optimizer("sgd"),
                Training(BENCH_LR, shape.batch, steps=1), Data("inline"))


def bench_batch(shape: Shape, dtype: str) -> Batch:
    rng = rng_for(BENCH_SEED, "bench")
    x = rng.normal(size=(shape.batch, shape.sizes[0])).astype(dtype)
    labels = rng.integers(0, shape.sizes[-1], size=shape.batch)
    return Batch(x, np.eye(shape.sizes[-1], dtype=dtype)[labels])


def roofline(shape: Shape, dtype: str) -> timing.Timed:
    """The step's necessary matrix products alone, on preallocated arrays (out= buffers)."""
    rng = rng_for(BENCH_SEED, "roofline")
    layers = []
    for fan_in, fan_out in zip(shape.sizes[:-1], shape.sizes[1:], strict=False):
        h, w, d = (rng.normal(size=s).astype(dtype) for s in
                   ((shape.batch, fan_in), (fan_in, fan_out), (shape.batch, fan_out)))
        layers.append((h, w, d, np.empty_like(d), np.empty_like(w), np.empty_like(h)))

    def call() -> None:
        for i, (h, w, d, z, dw, dh) in enumerate(layers):
            np.matmul(h, w, out=z)
            np.matmul(h.T, d, out=dw)
            if i > 0:
                np.matmul(d, w.T, out=dh)
    return timing.local(ROOFLINE, call)


def contestant(name: str, shape: Shape, dtype: str, device: str = "cpu") -> timing.Timed:
    """The roofline, or a backend loaded with initial weights stepping on one fixed batch."""
    if name == ROOFLINE:
        return roofline(shape, dtype)
    spec = bench_spec(shape, dtype)
    backend = backend_class(name)(spec, device)
    threads.apply()
    backend.load(initial_params(spec))
    batch = bench_batch(shape, dtype)
    return timing.local(name, lambda: backend.train_step(batch), backend.sync)


def bench_grid(names: list[str], points: list[tuple[Shape, str]], protocol: timing.Protocol,
               pool: dict[str, workers.Worker] | None = None,
               device: str = "cpu") -> list[dict[str, timing.Timing]]:
    """Timings of the roofline and every backend at each (shape, dtype) point, all points
    interleaved round by round: each contestant in its own worker process when `pool` is
    given, else all in this process."""
    build = contestant if pool is None else lambda name, *args: pool[name].build(*args)
    grid = [[build(n, shape, dtype, device) for n in [ROOFLINE, *names]]
            for shape, dtype in points]
    return timing.measure_grid(grid, protocol)


def start_workers(names: list[str], n_threads: int) -> dict[str, workers.Worker]:
    return {n: workers.Worker(n, contestant, n_threads) for n in [ROOFLINE, *names]}


def rows(shape: Shape, dtype: str, timings: dict[str, timing.Timing]) -> list[dict]:
    """One tidy row per backend (and the roofline) at this shape. The roofline fraction is
    paired like every ratio: roofline time / backend time within a round, median over rounds
    (a ratio of two medians would let the machine's drift between rounds into it). Each
    ratio comes with the relative half-width of its 95% confidence interval (`_ci`)."""
    roof = timings[ROOFLINE].samples
    backends = {k: v for k, v in timings.items() if k != ROOFLINE}
    ratio, best = timing.ratios_to_fastest(backends), timing.fastest(backends)
    out = []
    for name, t in timings.items():
        out.append({"shape": shape.label, "dtype": dtype, "backend": name,
                    "gflop_per_step": shape.flops / 1e9, "median_s": t.median, "iqr_s": t.iqr,
                    "first_call_s": t.first_call, "gflops": shape.flops / t.median / 1e9,
                    "roofline_fraction": timing.paired_ratio(roof, t.samples),
                    "roofline_fraction_ci": timing.paired_ci(roof, t.samples),
                    "ratio_to_fastest": ratio.get(name, np.nan),
                    "ratio_to_fastest_ci": (timing.paired_ci(t.samples, best)
                                            if name in backends else np.nan),
                    "rounds": len(t.samples)})
    return out


def sample_rows(shape: Shape, dtype: str, timings: dict[str, timing.Timing]) -> list[dict]:
    """Every sample (the median call time of one round) of every contestant at this shape:
    stored, so that any other statistic can be computed later from the same run."""
    return [{"shape": shape.label, "dtype": dtype, "backend": name, "round": r, "seconds": v}
            for name, t in timings.items() for r, v in enumerate(t.samples)]
