"""The `harness` command line: run · check · explain · plot · report · bench · backends ·
conformance.

Exit codes: 0 everything agrees, 1 something disagrees, 2 bad input (one line on stderr,
never a traceback), 3 not compared (fewer than two backends ran, or a check that was asked
for never ran or could not resolve what it checks), 130 interrupted (the message says
what state the results folder is in).

Each sub-command imports its module when it runs, so `harness --help` does not load
matplotlib or the benchmark; tests/test_layout.py counts these imports too, so none hides a
cycle.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from harness import escape, experiment, preflight, stats, table
from harness.bench.suite import DEFAULT_BACKENDS
from harness.bench.timing import Protocol
from harness.cluster import ClusterError
from harness.results import ResultsError, interruption
from harness.spec import SpecError
from harness.verify import verdict


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="harness",
        description="Train one network spec with several backprop implementations (hand-written "
                    "NumPy, PyTorch autograd, JAX grad) from the same weights, batches and "
                    "dropout masks, and check that gradients, loss values and evaluations "
                    "agree at the same parameters; loss curves and final parameters measure "
                    "drift.",
        epilog="exit status: 0 agree, 1 disagree, 2 bad input, 3 not compared (fewer than two "
               "backends ran, or a requested check never ran or could not resolve its "
               "tolerance)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="train every backend on a spec and compare them",
                       description="Train every backend on SPEC (every sweep point), compare "
                                   "them at the same parameters (gradients, loss value, "
                                   "evaluate) and measure the drift of loss curves and final "
                                   "parameters, write results/<name>/ and print the verdict "
                                   "table.",
                       epilog="exit status: 0 agree, 1 disagree, 2 bad input, 3 not compared "
                              "(fewer than two backends ran, or a requested check never ran "
                              "or could not resolve its tolerance)")
    r.add_argument("spec", type=Path, help="experiment TOML file, e.g. "
                   "experiments/digits_mlp.toml (- reads standard input)")
    r.add_argument("--backends", type=lambda s: [x for x in s.split(",") if x],
                   help="comma-separated backends, the first is the reference "
                        "(default: the spec's `backends`, else numpy,torch,jax)")
    r.add_argument("--dtype", choices=("float64", "float32"),
                   help="override the spec's dtype (float64 = correctness, float32 = drift)")
    r.add_argument("--out", type=Path, help="results folder (default: results/<spec name>)")
    r.add_argument("--force", action="store_true",
                   help="replace --out even if it was not written by this harness")
    r.add_argument("--device", default="cpu", choices=experiment.DEVICES,
                   help="device for the backends that support it (default: cpu)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--max-minutes", type=float, default=preflight.DEFAULT_MAX_MINUTES,
                   help="refuse a run whose estimated time (training, checks and the "
                        "finite-difference oracle, over every sweep point) exceeds this many "
                        f"minutes (default: {preflight.DEFAULT_MAX_MINUTES:g}); memory is "
                        "always limited to what this machine has available")
    r.add_argument("--workers", type=int, default=None, metavar="N",
                   help="run a sweep's points side by side on a local Dask cluster of N "
                        "worker processes, one thread each (default: one per core for a "
                        "sweep of several points when Dask is installed; 1: one after "
                        "another in this process, no cluster); docs/cluster.md")
    r.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="send the sweep's points to the workers of this running Dask "
                        "cluster (`dask scheduler`, `dask worker`); the results are written "
                        "here")

    c = sub.add_parser("check", help="check one backend's gradients against finite differences",
                       description="Compare a backend's gradients on the first training batch, "
                                   "at the initial parameters, with central finite differences "
                                   "in float64 (every parameter for small nets, random "
                                   "directions per tensor for large ones). Exit 0 when every "
                                   "tensor is within tolerance, 1 when one is not, 3 when "
                                   "finite differences cannot resolve a tensor.")
    c.add_argument("spec", type=Path, help="experiment TOML file")
    c.add_argument("--backend", default="numpy", help="backend to check (default: numpy)")
    c.add_argument("--max-minutes", type=float, default=preflight.DEFAULT_MAX_MINUTES,
                   help="refuse a check whose estimated time exceeds this many minutes "
                        f"(default: {preflight.DEFAULT_MAX_MINUTES:g})")

    e = sub.add_parser("explain", help="write out the chain rule of one training step",
                       description="Write out the chain rule of one training step as the "
                                   "textbooks teach it, layer by layer from the output back "
                                   "to the input: per unit net input, output, dE/dout, "
                                   "dout/dnet and dE/dnet; per weight the input it "
                                   "multiplies, the sample's product, the batch gradient and "
                                   "the weight after the step. Every backend starts from the "
                                   "reference's parameters and optimizer state at the step; "
                                   "one column per backend and the largest difference "
                                   "between them (docs/explain.md).")
    e.add_argument("spec", type=Path, help="experiment TOML file, e.g. "
                                           "experiments/worked_example.toml")
    e.add_argument("--step", type=int, default=0, help="training step to explain (default: 0)")
    e.add_argument("--sample", type=int, default=0,
                   help="row of that step's batch for the per-sample values (default: 0)")
    e.add_argument("--backends", type=lambda s: [x for x in s.split(",") if x],
                   help="comma-separated backends, the first is the reference "
                        "(default: the spec's `backends`, else numpy,torch,jax)")
    e.add_argument("--dtype", choices=("float64", "float32"), help="override the spec's dtype")
    e.add_argument("--variant", help="the sweep point to explain, by label (default: the first)")

    sub.add_parser("backends", help="list registered backends and whether they can run here",
                   description="List every registered backend (built-in and entry-point "
                               "plug-ins), its framework, version and capabilities.")

    pl = sub.add_parser("plot", help="regenerate every plot of a results folder",
                        description="Redraw every PNG of RESULTS_DIR from its stored tables "
                                    "alone: no training, no torch or JAX import.")
    pl.add_argument("folder", type=Path, metavar="RESULTS_DIR", help="e.g. results/digits_mlp")

    rp = sub.add_parser("report", help="write report.md for a results folder",
                        description="Write RESULTS_DIR/report.md: the verdict table, key "
                                    "numbers, embedded plots and provenance, in Markdown; for "
                                    "a bench folder, the targets and the step-time table.")
    rp.add_argument("folder", type=Path, metavar="RESULTS_DIR", help="e.g. results/digits_mlp")

    b = sub.add_parser("bench", help="time every backend over a grid of shapes",
                       description="Time one training step of every backend over a grid of "
                                   "network shapes, interleaved in rounds with the machine's "
                                   "own NumPy matmul roofline; report step time, GFLOP/s, "
                                   "fraction of the roofline and ratio to the fastest backend; "
                                   "write results/bench/.")
    b.add_argument("--shapes", type=lambda s: s.split(","), metavar="SIZES:BATCH,...",
                   help="e.g. 784-256-256-10:128,1024-1024-1024-10:512, or conv shapes "
                        "conv:CxHxW-FcK-...-CLASSES:BATCH like conv:3x16x16-16c3-32c3-10:64 "
                        "(default: a grid from 64-64-10:32 to 2048-wide and 8-deep nets, and "
                        "two conv nets)")
    b.add_argument("--dtypes", type=lambda s: s.split(","), default=["float32", "float64"],
                   help="comma-separated (default: float32,float64)")
    b.add_argument("--backends", type=lambda s: [x for x in s.split(",") if x],
                   default=list(DEFAULT_BACKENDS), help=f"default: {','.join(DEFAULT_BACKENDS)}")
    b.add_argument("--rounds", type=int, default=Protocol.rounds,
                   help=f"interleaved rounds every point gets (default: {Protocol.rounds})")
    b.add_argument("--max-rounds", type=int, default=Protocol.max_rounds,
                   help="rounds a point may get while any of its ratios is uncertain by more "
                        f"than {Protocol.precision:.0%}% (95%% CI; default: {Protocol.max_rounds})")
    b.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="threads for every framework: BLAS, torch, XLA, and a backend's own "
                        "pools through its set_threads hook (default: all cores)")
    b.add_argument("--in-process", action="store_true",
                   help="time every backend in this one process (default: each in its own "
                        "spawned process, still interleaved in rounds: the frameworks' thread "
                        "pools otherwise slow each other down)")
    b.add_argument("--out", type=Path, default=Path("results/bench"), help="results folder")
    b.add_argument("--force", action="store_true", help="replace --out even if foreign")
    b.add_argument("--device", default="cpu", choices=experiment.DEVICES)
    b.add_argument("--baseline", type=Path, metavar="BENCH_DIR",
                   help="an earlier bench's results folder: report how far every ratio "
                        "moved from it (the reproducibility target is 5%%)")

    cf = sub.add_parser("conformance", help="run the backend conformance suite on one backend",
                        description="Check that backend NAME keeps the contract: exact "
                                    "load/params round trip, pure loss_and_grads, gradient "
                                    "shapes and dtypes, gradients vs finite differences, one "
                                    "step of each supported optimizer vs closed form, a 10-step "
                                    "trajectory vs the NumPy reference, a timing smoke run.")
    cf.add_argument("name", help="a registered backend (see `harness backends`)")
    return p


def _run(args: argparse.Namespace) -> int:
    _positive("--max-minutes", args.max_minutes)
    workers = _workers(args.workers, args.scheduler)
    specs, origin = experiment.load(args.spec, args.dtype)
    names = experiment.backend_names(args.backends, specs[0])
    out = args.out or experiment.RESULTS_ROOT / specs[0].name
    summary = experiment.conduct(specs, origin, names, out, args.force, args.device,
                                 progress=not args.quiet, max_minutes=args.max_minutes,
                                 workers=workers, scheduler=args.scheduler).summary
    _print_points(summary)
    t = summary["time"]
    print(f"\ntime {t['wall']:.1f} s: training steps {t['step']:.1f} s, first steps (JIT "
          f"compile) {t['first_step']:.1f} s, setup and imports {t['setup']:.1f} s, gradient "
          f"checks {t['checks']:.1f} s, evaluation {t['evaluate']:.1f} s, data "
          f"{t['data']:.1f} s, harness overhead {t['overhead']:.2f} s "
          f"({t['overhead_fraction']:.1%})")
    if "workers" in t:
        print(f"the points ran on {t['workers']} workers: {t['point_seconds']:.1f} s of point "
              f"time in {t['wall']:.1f} s, {t['point_seconds'] / t['wall']:.2f}x; executor: "
              f"{t['executor_startup']:.1f} s to start, " + (
                  "no worker ran two points" if t["executor_per_point"] is None
                  else f"{t['executor_per_point']:.2f} s between points on a worker"))
    print(f"{table.VERDICT_TEXT[summary['verdict']]}; results in {out}/")
    return verdict.EXIT_CODES[summary["verdict"]]


def _check(args: argparse.Namespace) -> int:
    from harness.oracle_command import check_spec

    _positive("--max-minutes", args.max_minutes)
    specs, _ = experiment.load(args.spec, None)
    experiment.backend_names([args.backend], specs[0], option="--backend")
    preflight.check_oracle(specs, args.backend, args.max_minutes)
    return check_spec(specs, args.backend)


def _print_points(summary: dict) -> None:
    """Each point's table; a sweep over seeds instead shows one line per point and the
    statistics across seeds (its report has every table)."""
    seeded = "seeds" in summary
    for v in summary["variants"]:
        title = escape.terminal(f"{summary['experiment']}" +
                                (f" [{v['variant']}]" if v["variant"] else ""))
        if seeded:
            print(f"{title}  ({v['dtype']}): {v['verdict']}" +
                  (f": {escape.terminal(v['error'])}" if "error" in v else ""))
        else:
            print(f"\n{title}  ({v['dtype']})")
            print(table.text(v))
    if seeded:
        print("\nAcross seeds\n")
        print("\n".join(stats.markdown(summary["seeds"], escape.terminal)))


def _workers(workers: int | None, scheduler: str | None) -> int:
    """--workers as given (at least 1, never with --scheduler), else one per core this
    process may use when Dask is installed, else 1."""
    if workers is not None and scheduler is not None:
        raise SpecError("--workers", "cannot be combined with --scheduler: the cluster's "
                        "workers run the points (allowed: one of them)")
    if workers is not None:
        if workers < 1:
            raise SpecError("--workers", f"{workers} is not allowed (allowed: an integer >= 1)")
        return workers
    if scheduler is not None or importlib.util.find_spec("distributed") is None:
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else os.cpu_count() or 1


def _positive(option: str, value: float) -> None:
    if not value > 0:                     # NaN included; inf: no limit
        raise SpecError(option, f"{value!r} is not allowed (allowed: a number > 0)")


def _explain(args: argparse.Namespace) -> int:
    from harness.explain import explain, pick

    specs, _ = experiment.load(args.spec, args.dtype)
    spec = pick(specs, args.variant)
    print(explain(spec, experiment.backend_names(args.backends, spec), args.step, args.sample))
    return 0


def _backends(args: argparse.Namespace) -> int:
    from harness.listing import list_backends

    print(list_backends())
    return 0


def _plot(args: argparse.Namespace) -> int:
    if (args.folder / "bench.csv").is_file():
        from harness.bench.plot import write_plot

        print(write_plot(args.folder))
        return 0
    from harness.plots.folder import plot_folder

    for path in plot_folder(args.folder):
        print(path)
    return 0


def _report(args: argparse.Namespace) -> int:
    if (args.folder / "bench.csv").is_file():
        from harness.bench.report import write_bench_report

        print(write_bench_report(args.folder))
        return 0
    from harness.report import write_report

    print(write_report(args.folder))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from harness.bench.command import run_bench
    from harness.bench.suite import DEFAULT_SHAPES, Shape, check_memory
    from harness.registry import registry

    dtypes, names = list(dict.fromkeys(args.dtypes)), list(dict.fromkeys(args.backends))
    for dtype in dtypes:
        if dtype not in ("float32", "float64"):
            raise SpecError("--dtypes", f"{dtype!r} is not one of float32, float64")
    for name in names:
        if name not in registry():
            raise SpecError("--backends", f"{name!r} is not one of {', '.join(registry())}")
    if args.rounds < 3:
        raise SpecError("--rounds", f"{args.rounds} is too small (allowed: integer >= 3)")
    if args.max_rounds < args.rounds:
        raise SpecError("--max-rounds", f"{args.max_rounds} is below --rounds {args.rounds} "
                                        "(allowed: integer >= --rounds)")
    if args.threads < 1:
        raise SpecError("--threads", f"{args.threads} is too small (allowed: integer >= 1)")
    try:
        shapes = [Shape.parse(s) for s in args.shapes or DEFAULT_SHAPES]
    except ValueError as err:
        raise SpecError("", str(err)) from None
    shapes = list({s.label: s for s in shapes}.values())      # each point once
    try:
        check_memory(shapes, dtypes, names, args.in_process)
    except ValueError as err:
        raise SpecError("", str(err)) from None
    protocol = Protocol(rounds=args.rounds, max_rounds=args.max_rounds)
    return run_bench(shapes, dtypes, names, protocol, args.threads, args.in_process,
                     args.out, args.force, args.device, args.baseline)


def _conformance(args: argparse.Namespace) -> int:
    from harness.conformance.suite import run_conformance

    return run_conformance(args.name)


COMMANDS = {"run": _run, "check": _check, "explain": _explain, "backends": _backends,
            "plot": _plot, "report": _report, "bench": _bench, "conformance": _conformance}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except SpecError as err:
        where = f"{args.spec}: " if getattr(args, "spec", None) else ""
        print(f"harness: error: {escape.terminal(f'{where}{err}')}", file=sys.stderr)
        return 2
    except (ResultsError, ClusterError, experiment.PointsFailed) as err:
        print(f"harness: error: {escape.terminal(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        print(f"harness: interrupted; {interruption(err)}", file=sys.stderr)
        return 130
