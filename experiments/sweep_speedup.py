"""What running a sweep's points side by side buys on this machine, measured in one run.

    .venv/bin/python experiments/sweep_speedup.py [--points 16] [--workers 2]

A seed sweep of experiments/digits_mlp.toml (seeds 0 .. points-1, every backend of the spec)
runs three ways: with workers=1 (the points one after another in this process, each
framework with its default threads), with workers=1 and one thread per framework (the same
threads a worker gets: the control that separates the cluster's gain from the threads'), and
on a local Dask cluster of `workers` processes. It prints each wall time and the speed-ups,
checks that the three runs' tables are byte-identical (timings aside), and the executor's
cost: per point, the mean gap on a worker between one point's end and the next one's start,
over the mean point time; once, the time to the first point's start; and, bounding both from
above, all the workers' time not spent inside a point, (workers x wall - the points' own
seconds) / points, which adds the idle tail while the last points finish.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import harness
from harness import cluster, experiment, provenance

SPEC = Path(__file__).with_name("digits_mlp.toml")
# The tables that hold wall-clock seconds: the only ones allowed to differ between runs.
TIMED = ("timings",)
WAYS = ("one", "single", "many")


def fingerprint(result: harness.Result) -> str:
    """A hash of every table but the timings (as CSV) and of every point's summary."""
    tables = {name: df.to_csv(index=False) for name, df in sorted(result.tables.items())
              if name not in TIMED}
    text = json.dumps([tables, result.summary["variants"]], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def run_one(way: str, points: int, workers: int) -> None:
    """One of the three runs, in this (fresh) process; its wall time and fingerprint as JSON.
    `single` limits this process's frameworks to one thread as a worker's are."""
    raw = {**tomllib.loads(SPEC.read_text()), "sweep": {"seeds": points}}
    if way == "single":
        specs, _ = experiment.load(raw, None)
        cluster.single_threaded(raw["backends"], specs[0], "cpu")
    result = harness.run(raw, workers=workers if way == "many" else 1)
    print(json.dumps({"time": result.summary["time"], "fingerprint": fingerprint(result)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--way", choices=WAYS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.points < 2 * args.workers:
        parser.error(f"--points must be at least twice --workers ({2 * args.workers}): the "
                     "executor's cost per point is the gap between two points on a worker")
    if args.way:
        run_one(args.way, args.points, args.workers)
        return
    print(f"{args.points}-seed sweep of {SPEC.name} on {provenance.cpu_model()}, "
          f"{os.cpu_count()} cores")
    found = {}
    for way in WAYS:           # each in a fresh process: thread settings hold from its start
        out = subprocess.run([sys.executable, __file__, "--way", way, "--points",
                              str(args.points), "--workers", str(args.workers)],
                             capture_output=True, text=True, check=True)
        found[way] = json.loads(out.stdout.strip().splitlines()[-1])
    wall = {way: found[way]["time"]["wall"] for way in WAYS}
    t = found["many"]["time"]
    idle = t["workers"] * t["wall"] - t["point_seconds"]
    mean = t["point_seconds"] / args.points
    gap = t["executor_per_point"]
    same = len({found[way]["fingerprint"] for way in WAYS}) == 1
    print(f"workers=1: {wall['one']:.1f} s; workers=1, one thread per framework: "
          f"{wall['single']:.1f} s; workers={args.workers}: {wall['many']:.1f} s")
    print(f"speed-up of workers={args.workers}: {wall['one'] / wall['many']:.2f}x against "
          f"workers=1, {wall['single'] / wall['many']:.2f}x against the one-thread control")
    print(f"executor per point: {gap:.3f} s between points on a worker, {gap / mean:.2%} of "
          f"the mean point ({mean:.1f} s); to start: {t['executor_startup']:.1f} s")
    print(f"all the workers' time outside a point (start, gaps, the idle tail): "
          f"{idle / args.points:.2f} s per point, {idle / args.points / mean:.1%}")
    print(f"tables byte-identical across the three runs (timings aside): {same}")


if __name__ == "__main__":
    main()
