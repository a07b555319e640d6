"""`harness bench`: step time, achieved GFLOP/s and fraction of the machine's own matmul
roofline for every backend over a grid of shapes, in float32 and float64.

Work per training step is counted as 6 * batch * sum(fan_in * fan_out) flops: three matmuls
per layer (forward h @ W, weight gradient h^T @ delta, input gradient delta @ W^T), two flops
per multiply-add. A conv shape (`harness.bench.conv`) counts its im2col products the same way,
with n oh ow rows, fan_in C k k and fan_out F.

The roofline is the machine's, not one library's: the matrix products a step really needs
(every layer's forward and weight gradient, and the input gradient of every layer but the
first: no one needs dL/dx) are done by each library present, NumPy's BLAS (`gemm:numpy`) and
the GEMM of every timed backend that has its own (`gemm:torch`, `gemm:jax`, see
Backend.gemm), all timed in the same interleaved rounds as the backends. In each round the
roofline is the fastest of them, so a backend's fraction of it cannot exceed 1 because its
framework's GEMM beats NumPy's on this CPU (MKL against OpenBLAS on an Intel Xeon).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.backend import Backend, Operands, Products
from harness.bench import threads, timing, workers
from harness.bench.conv import PREFIX as CONV_PREFIX
from harness.bench.conv import ConvShape
from harness.data import Batch, rng_for
from harness.params import initial_params
from harness.preflight import USABLE_MEMORY_FRACTION, available_memory, size
from harness.preflight.memory import (
    FRAMEWORK_BYTES,
    INTERPRETER_BYTES,
    OTHER_FRAMEWORK_BYTES,
    PARAM_COPIES,
    WORK_ARRAYS,
)
from harness.registry import backend_class
from harness.spec import MAX_PARAMS, MAX_UNITS, Data, Layer, Loss, Model, Optimizer, Spec, Training
from harness.spec.datasets import MAX_SAMPLES
from harness.spec.schema import shown

# (layer sizes, batch): from overhead-bound to matmul-bound, width 64..2048, depth 2..8.
DEFAULT_SHAPES = ("64-64-10:32", "64-64-64-10:1024", "256-256-256-10:128", "784-256-256-10:128",
                  "512-512-512-512-512-10:256", "1024-1024-1024-10:512", "2048-2048-10:256",
                  "256-256-256-256-256-256-256-256-10:64",
                  # two convs: digits-sized (im2col overhead-bound), and one whose second
                  # conv's products dominate (each layer within MAX_UNITS outputs)
                  "conv:1x8x8-16c3-10:256", "conv:3x16x16-16c3-32c3-10:64")
ROOFLINE = "roofline"
GEMM = "gemm:"                 # prefix of a library's products: gemm:numpy, gemm:torch, ...
NUMPY_GEMM = f"{GEMM}numpy"
# The NumPy contestant is the tuned backend; `numpy`, the textbook one, is the reference of
# comparisons, not of speed (it can still be timed with --backends).
NUMPY = "numpy_fast"
FRAMEWORKS = ("torch", "jax")
DEFAULT_BACKENDS = (NUMPY, *FRAMEWORKS)
BENCH_LR = 1e-4               # small: the weights stay put, so no NaN/denormal slow paths
BENCH_SEED = 0
# Bounds of --shapes, as a spec's (harness.spec.types: MAX_UNITS per layer, MAX_PARAMS per
# network; a batch no larger than a data set may be, datasets.MAX_SAMPLES), and a depth: the
# default grid's deepest net has 8 layers; far deeper ones time per-layer call overhead,
# which a few dozen layers already show, and JAX's compile time grows with depth.
MAX_LAYERS = 64


@dataclass(frozen=True)
class Shape:
    sizes: tuple[int, ...]
    batch: int

    @classmethod
    def parse(cls, text: str) -> Shape | ConvShape:
        """SIZES:BATCH, e.g. 784-256-256-10:128, within the bounds of a spec's network; or a
        conv shape, conv:CxHxW-FcK-...-CLASSES:BATCH (`harness.bench.conv`)."""
        if text.startswith(CONV_PREFIX):
            return ConvShape.parse(text)
        sizes, _, batch = text.partition(":")
        try:
            shape = cls(tuple(int(s) for s in sizes.split("-")), int(batch))
        except ValueError:
            shape = None
        if shape is None or len(shape.sizes) < 2 or min(*shape.sizes, shape.batch) < 1:
            raise ValueError(f"--shapes: {shown(text)} is not SIZES:BATCH like "
                             "784-256-256-10:128")
        shape.check_bounds(text)
        return shape

    def check_bounds(self, text: str) -> None:
        """ValueError, one line, where the shape exceeds what a spec's network may be."""
        layers, widest = len(self.sizes) - 1, max(self.sizes)
        for what, value, limit in (("layers", layers, MAX_LAYERS),
                                   ("units in a layer", widest, MAX_UNITS),
                                   ("rows in the batch", self.batch, MAX_SAMPLES),
                                   ("parameters", self.params, MAX_PARAMS)):
            if value > limit:
                raise ValueError(f"--shapes: {shown(text)} has {value} {what} (allowed: at "
                                 f"most {limit})")

    @property
    def params(self) -> int:
        """Weights and biases."""
        return sum((a + 1) * b for a, b in zip(self.sizes[:-1], self.sizes[1:], strict=False))

    @property
    def label(self) -> str:
        return f"{'-'.join(map(str, self.sizes))}:{self.batch}"

    @property
    def inputs(self) -> int:
        return self.sizes[0]

    @property
    def classes(self) -> int:
        return self.sizes[-1]

    @property
    def units(self) -> int:
        """Outputs of every layer, per sample."""
        return sum(self.sizes[1:])

    def layers(self) -> tuple[Layer, ...]:
        """ReLU hidden layers and a softmax head."""
        hidden = tuple(Layer(s, "relu", in_shape=(a,), out_shape=(s,))
                       for a, s in zip(self.sizes[:-2], self.sizes[1:-1], strict=True))
        return (*hidden, Layer(self.classes, "softmax", in_shape=(self.sizes[-2],),
                               out_shape=(self.classes,)))

    def gemms(self) -> list[tuple[int, int, int]]:
        """(rows, fan_in, fan_out) of every layer's products."""
        return [(self.batch, a, b) for a, b in zip(self.sizes[:-1], self.sizes[1:],
                                                   strict=False)]

    @property
    def flops(self) -> float:
        return 6.0 * sum(r * a * b for r, a, b in self.gemms())


AnyShape = Shape | ConvShape


def contestant_bytes(shape: AnyShape, dtype: str, gemm: bool) -> int:
    """What one contestant holds for one point of the grid, all of them at once: a library's
    products their operands and outputs, (h, W, delta) and (z, dW, dh) per layer; a backend
    its parameters and their gradients, its batch, and the arrays of a step."""
    s = np.dtype(dtype).itemsize
    if gemm:
        return 2 * s * sum(r * (a + b) + a * b for r, a, b in shape.gemms())
    return s * (PARAM_COPIES * shape.params + shape.batch * (shape.inputs + shape.classes)
                + WORK_ARRAYS * shape.batch * shape.units)


def bench_memory(shapes: list[AnyShape], dtypes: list[str], names: list[str],
                 in_process: bool) -> int:
    """Peak bytes of a bench: every contestant builds every point before the rounds start
    and keeps it; each contestant's process (one in all with `in_process`) has its
    interpreter and its framework."""
    owners = gemm_contestants(names)
    held = sum(contestant_bytes(shape, dtype, gemm)
               for shape in shapes for dtype in dtypes
               for gemm in [True] * len(owners) + [False] * len(names))
    frameworks = [backend_class(owner).framework if owner else "numpy"
                  for owner in owners.values()] + [backend_class(n).framework for n in names]
    if in_process:
        frameworks, processes = list(dict.fromkeys(frameworks)), 1
    else:
        processes = len(frameworks)
    return held + INTERPRETER_BYTES * processes + \
        sum(FRAMEWORK_BYTES.get(f, OTHER_FRAMEWORK_BYTES) for f in frameworks)


def check_memory(shapes: list[AnyShape], dtypes: list[str], names: list[str], in_process: bool,
                 available: int | None = None) -> int:
    """The bench's estimated peak bytes; ValueError (one line) where it does not fit in the
    memory this machine has available."""
    need = bench_memory(shapes, dtypes, names, in_process)
    free = available_memory() if available is None else available
    if need > USABLE_MEMORY_FRACTION * free:
        raise ValueError(f"--shapes: the bench would hold an estimated {size(need)} "
                         f"({len(shapes)} shapes x {len(dtypes)} dtypes, every contestant "
                         f"keeps every point), more than {USABLE_MEMORY_FRACTION:.0%} of the "
                         f"{size(free)} this machine has available: fewer or smaller shapes")
    return need


def bench_spec(shape: AnyShape, dtype: str) -> Spec:
    """A ReLU network (dense or conv) with a softmax cross-entropy head and plain SGD (the
    classic benchmark)."""
    return Spec("bench", BENCH_SEED, dtype, Model(shape.inputs, shape.layers(), "he_normal"),
                Loss("cross_entropy"), Optimizer("sgd"),
                Training(BENCH_LR, shape.batch, steps=1), Data("inline"))


def bench_batch(shape: AnyShape, dtype: str) -> Batch:
    rng = rng_for(BENCH_SEED, "bench")
    x = rng.normal(size=(shape.batch, shape.inputs)).astype(dtype)
    labels = rng.integers(0, shape.classes, size=shape.batch)
    return Batch(x, np.eye(shape.classes, dtype=dtype)[labels])


def operands(shape: AnyShape, dtype: str) -> list[Operands]:
    """(h, W, delta) of every layer's products (a conv's im2col columns, kernels and deltas),
    drawn by the harness, for the libraries' products."""
    rng = rng_for(BENCH_SEED, "roofline")
    return [tuple(rng.normal(size=s).astype(dtype) for s in
                  ((rows, fan_in), (fan_in, fan_out), (rows, fan_out)))
            for rows, fan_in, fan_out in shape.gemms()]


def numpy_products(layers: list[Operands]) -> Products:
    """The step's products by NumPy's matmul into preallocated arrays (see Backend.gemm)."""
    outs = [(np.empty_like(d), np.empty_like(w), np.empty_like(h)) for h, w, d in layers]

    def call() -> list:
        for i, ((h, w, d), (z, dw, dh)) in enumerate(zip(layers, outs, strict=True)):
            np.matmul(h, w, out=z)
            np.matmul(h.T, d, out=dw)
            if i > 0:
                np.matmul(d, w.T, out=dh)
        return [(z, dw, dh if i > 0 else None) for i, (z, dw, dh) in enumerate(outs)]
    return call, lambda: None


def gemm_contestants(names: list[str]) -> dict[str, str | None]:
    """{gemm contestant: the backend whose library does it}: NumPy's always (None: the harness
    does it), then one per other library among `names` whose class has a `gemm`."""
    out: dict[str, str | None] = {NUMPY_GEMM: None}
    frameworks = {"numpy"}
    for name in names:
        cls = backend_class(name)
        if cls.gemm.__func__ is not Backend.gemm.__func__ and cls.framework not in frameworks:
            frameworks.add(cls.framework)
            out[f"{GEMM}{name}"] = name
    return out


def contestant(name: str, shape: AnyShape, dtype: str, device: str = "cpu") -> timing.Timed:
    """A library's products (gemm:numpy, gemm:<backend>), or a backend loaded with initial
    weights stepping on one fixed batch."""
    if name == NUMPY_GEMM:
        return timing.local(name, *numpy_products(operands(shape, dtype)))
    cls = backend_class(name.removeprefix(GEMM))
    threads.apply_to(cls)
    if name.startswith(GEMM):
        return timing.local(name, *cls.gemm(operands(shape, dtype), device))
    spec = bench_spec(shape, dtype)
    backend = cls(spec, device)
    backend.load(initial_params(spec))
    batch = bench_batch(shape, dtype)
    return timing.local(name, lambda: backend.train_step(batch), backend.sync)


def bench_grid(names: list[str], points: list[tuple[AnyShape, str]], protocol: timing.Protocol,
               pool: dict[str, workers.Worker] | None = None,
               device: str = "cpu") -> list[dict[str, timing.Timing]]:
    """Timings of every library's products and every backend at each (shape, dtype) point,
    all points interleaved round by round: each contestant in its own worker process when
    `pool` is given, else all in this process."""
    build = contestant if pool is None else lambda name, *args: pool[name].build(*args)
    grid = [[build(n, shape, dtype, device) for n in [*gemm_contestants(names), *names]]
            for shape, dtype in points]
    return timing.measure_grid(grid, protocol)


def start_workers(names: list[str], n_threads: int) -> dict[str, workers.Worker]:
    return {n: workers.Worker(n, contestant, n_threads)
            for n in [*gemm_contestants(names), *names]}


def roofline(timings: dict[str, timing.Timing]) -> timing.Timing:
    """The machine roofline: in each round, the fastest library's products."""
    gemms = {k: v for k, v in timings.items() if k.startswith(GEMM)}
    return timing.Timing(ROOFLINE, samples=list(timing.fastest(gemms)))


def roofline_library(timings: dict[str, timing.Timing]) -> str:
    """The library whose products are fastest in most rounds (the roofline's usual source)."""
    gemms = {k: v for k, v in timings.items() if k.startswith(GEMM)}
    wins = np.argmin([v.samples for v in gemms.values()], axis=0)
    return list(gemms)[int(np.bincount(wins).argmax())]


def rows(shape: AnyShape, dtype: str, timings: dict[str, timing.Timing]) -> list[dict]:
    """One tidy row per contestant and one for the roofline at this shape. Every ratio is
    paired: within a round, median over rounds (a ratio of two medians would let the
    machine's drift between rounds into it), with the relative half-width of its 95%
    confidence interval (`_ci`). `roofline_fraction` is against the machine roofline,
    `numpy_gemm_fraction` against NumPy's own products."""
    roof = roofline(timings)
    numpy_gemm = timings[NUMPY_GEMM].samples
    backends = {k: v for k, v in timings.items() if not k.startswith(GEMM)}
    ratio, best = timing.ratios_to_fastest(backends), timing.fastest(backends)
    out = []
    for name, t in {ROOFLINE: roof, **timings}.items():
        out.append({"shape": shape.label, "dtype": dtype, "backend": name,
                    "gflop_per_step": shape.flops / 1e9, "median_s": t.median,
                    "iqr_s": t.iqr, "first_call_s": t.first_call,
                    "gflops": shape.flops / t.median / 1e9,
                    "roofline_fraction": timing.paired_ratio(roof.samples, t.samples),
                    "roofline_fraction_ci": timing.paired_ci(roof.samples, t.samples),
                    "numpy_gemm_fraction": timing.paired_ratio(numpy_gemm, t.samples),
                    "numpy_gemm_fraction_ci": timing.paired_ci(numpy_gemm, t.samples),
                    "ratio_to_fastest": ratio.get(name, np.nan),
                    "ratio_to_fastest_ci": (timing.paired_ci(t.samples, best)
                                            if name in backends else np.nan),
                    "library": roofline_library(timings) if name == ROOFLINE else "",
                    "rounds": len(t.samples)})
    return out


def sample_rows(shape: AnyShape, dtype: str, timings: dict[str, timing.Timing]) -> list[dict]:
    """Every sample (the median call time of one round) of every contestant at this shape:
    stored, so that any other statistic can be computed later from the same run."""
    return [{"shape": shape.label, "dtype": dtype, "backend": name, "round": r, "seconds": v}
            for name, t in timings.items() for r, v in enumerate(t.samples)]
