"""Statistics across seeds: one comparison on one seed is an anecdote, the distribution over
seeds is the answer. Pure functions of what a seed sweep's points already record, their
summaries (each check's worst error, tolerance and status; the verdict) and the steps table
(every backend's loss at every step):

- `check_errors`: one row per seed and check, the long table everything else reads;
- `check_stats`: per backend pair and check, the median, 95th percentile and worst error over
  the seeds, which seed was worst, and the fraction of seeds on which the check agrees;
- `verdicts`: per sweep point without its seed, the fraction of seeds with each verdict;
- `drift_bands`: the loss drift from the reference, as its running worst up to each step,
  at each step the 5 / 50 / 95 % quantiles over the seeds (float32's drift grows; float64's
  stays at the rounding level);
- `block`: all of it as the JSON `summary.json` holds; `markdown`: the report's tables.

A point belongs to a seed sweep when its label has a `seed=<k>` component (labels are
comma-separated `key=value` components, as the sweep writes them); the other components are
its group: `lr=0.1,seed=3` is seed 3 of group `lr=0.1`, `seed=3` is seed 3 of group "".
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from harness import escape
from harness.verify import verdict as vd

SEED = re.compile(r"^seed=(\d+)$")
SEP = ","                                 # between a label's components
QUANTILE = 0.95                           # the "95th percentile" of the errors over the seeds
BANDS = (0.05, 0.5, 0.95)                 # the drift's quantile bands over the seeds
AGREEING = ("ok", "drift")                # statuses of a check that does not disagree; an
                                          # unresolved or not run check agrees on nothing
KEYS = ["group", "check", "backend", "compared_to"]
ERROR_COLUMNS = ["group", "seed", "check", "backend", "compared_to", "status", "worst",
                 "tolerance"]
STAT_COLUMNS = [*KEYS, "seeds", "median", "p95", "worst", "worst_seed", "agree", "fail",
                "tolerance"]
BAND_COLUMNS = ["group", "backend", "compared_to", "step", "seeds", "q05", "q50", "q95"]


def seed_of(label: str) -> tuple[str, int] | None:
    """(group, seed) of a sweep point's label, or None when it has no seed component."""
    parts = label.split(SEP) if label else []
    seeds = [m for m in map(SEED.match, parts) if m]
    if len(seeds) != 1:
        return None
    group = SEP.join(p for p in parts if not SEED.match(p))
    return group, int(seeds[0].group(1))


def seeded(summaries: Sequence[dict]) -> list[tuple[str, int, dict]]:
    """(group, seed, summary) of every point of a seed sweep, in sweep order."""
    out = []
    for s in summaries:
        found = seed_of(s.get("variant", ""))
        if found is not None:
            out.append((*found, s))
    return out


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile (linear interpolation) of the non-NaN values; inf where it lies at or
    beside an infinite error (a seed that diverged is worse than any finite one); NaN when
    nothing was measured."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return math.nan
    big = np.finfo(float).max
    at = float(np.quantile(np.where(np.isinf(v), big, v), q))
    finite = v[np.isfinite(v)]
    return math.inf if finite.size == 0 or at > finite.max() else at


def check_errors(summaries: Sequence[dict]) -> pd.DataFrame:
    """One row per seed and check: group, seed, check, backend, compared_to, status, worst,
    tolerance (points that failed before any check have no rows)."""
    rows = [{"group": group, "seed": seed, **{k: c[k] for k in ERROR_COLUMNS[2:]}}
            for group, seed, s in seeded(summaries) for c in s.get("checks", [])]
    return pd.DataFrame(rows, columns=ERROR_COLUMNS).astype({"worst": float,
                                                              "tolerance": float})


def check_stats(errors: pd.DataFrame) -> pd.DataFrame:
    """Per group, check and backend pair (first-seen order): how many seeds ran it, the
    median, 95th percentile and worst error over them, the seed of the worst (the first in
    sweep order on a tie; none where every error is 0), the fraction of seeds on which it
    agrees (AGREEING), how many failed, and the widest tolerance applied."""
    rows = []
    for key, g in errors.groupby(KEYS, sort=False, dropna=False):
        worst = g.worst.to_numpy(float)
        measured = ~np.isnan(worst)
        at = int(np.argmax(np.where(measured, worst, -np.inf))) if measured.any() else None
        named = at is not None and worst[at] != 0      # no seed is worst where all are 0
        rows.append({**dict(zip(KEYS, key, strict=True)), "seeds": len(g),
                     "median": quantile(worst, 0.5), "p95": quantile(worst, QUANTILE),
                     "worst": worst[at] if at is not None else math.nan,
                     "worst_seed": int(g.seed.iloc[at]) if named else None,
                     "agree": float(g.status.isin(AGREEING).mean()),
                     "fail": int((g.status == "fail").sum()),
                     "tolerance": float(g.tolerance.max())})
    return pd.DataFrame(rows, columns=STAT_COLUMNS).astype({"worst_seed": "Int64"})


def verdicts(summaries: Sequence[dict]) -> pd.DataFrame:
    """Per group: the number of seeds and the fraction with each verdict; a point that failed
    (its summary has an `error`) counts as `failed`, whatever its verdict says."""
    rows = [{"group": group, "outcome": "failed" if s.get("error") else s.get("verdict")}
            for group, _, s in seeded(summaries)]
    cols = [*vd.VERDICTS, "failed"]
    if not rows:
        return pd.DataFrame(columns=["group", "seeds", *cols])
    df = pd.DataFrame(rows)
    out = pd.crosstab(df.group, df.outcome, normalize="index").reindex(columns=cols,
                                                                       fill_value=0.0)
    out.insert(0, "seeds", df.groupby("group", sort=False).size())
    order = list(dict.fromkeys(df.group))
    return out.reindex(order).rename_axis(None, axis=1).reset_index()


def seed_drift(steps: pd.DataFrame, summaries: Sequence[dict]) -> pd.DataFrame:
    """group, seed, backend, compared_to, step, drift: each other backend's loss drift from
    its point's reference (`verify.verdict.loss_drift`), as its running worst up to each
    step, on the steps both ran. `steps` is the results' steps table (its `variant` column
    names the point)."""
    parts = []
    for group, seed, s in seeded(summaries):
        mine = steps[steps.variant == s["variant"]]
        ref = s.get("reference") or (s.get("backends") or [None])[0]
        lr = mine[mine.backend == ref].set_index("step").loss
        for name in [b for b in s.get("backends", []) if b != ref]:
            la = mine[mine.backend == name].set_index("step").loss
            common = la.index.intersection(lr.index).sort_values()
            if common.empty:
                continue
            drift = np.maximum.accumulate(vd.loss_drift(la[common].to_numpy(float),
                                                        lr[common].to_numpy(float)))
            parts.append(pd.DataFrame({"group": group, "seed": seed, "backend": name,
                                       "compared_to": ref, "step": common.to_numpy(),
                                       "drift": drift}))
    cols = ["group", "seed", "backend", "compared_to", "step", "drift"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)


def drift_bands(drift: pd.DataFrame) -> pd.DataFrame:
    """Per group, backend pair and step: how many seeds reached the step and the BANDS
    quantiles of their running-worst drift there (`seed_drift`)."""
    rows = [{**dict(zip(["group", "backend", "compared_to", "step"], key, strict=True)),
             "seeds": len(g), **{f"q{round(q * 100):02d}": quantile(g.drift, q) for q in BANDS}}
            for key, g in drift.groupby(["group", "backend", "compared_to", "step"],
                                        sort=False)]
    return pd.DataFrame(rows, columns=BAND_COLUMNS)


def block(summaries: Sequence[dict], steps: pd.DataFrame) -> dict | None:
    """The statistics across seeds as `summary.json` holds them (None for a sweep without
    seeds): per group, the verdict fractions, every check's statistics, and the drift bands
    at the steps the per-point drift is reported at (`verify.verdict.DRIFT_MARKS`, the last)."""
    if not seeded(summaries):
        return None
    stats = check_stats(check_errors(summaries))
    bands = drift_bands(seed_drift(steps, summaries))
    groups = []
    for row in verdicts(summaries).to_dict("records"):
        group = row.pop("group")
        mine = bands[bands.group == group]
        groups.append({"group": group, "seeds": int(row.pop("seeds")), "verdicts": row,
                       "checks": _records(stats[stats.group == group]),
                       "drift_bands": {name: _marks(b) for name, b in
                                       mine.groupby("backend", sort=False)}})
    return {"quantile": QUANTILE, "bands": list(BANDS), "groups": groups}


def _records(stats: pd.DataFrame) -> list[dict]:
    """One group's check statistics as JSON-ready dicts (a seed that is missing is None)."""
    return [{**r, "worst_seed": None if pd.isna(r["worst_seed"]) else int(r["worst_seed"])}
            for r in stats.drop(columns="group").to_dict("records")]


def _marks(bands: pd.DataFrame) -> list[list[float]]:
    """[step, seeds, q05, q50, q95] at step 0, DRIFT_MARKS and the last step."""
    steps = bands.step.to_numpy()
    keep = {0, int(steps.max()), *(m for m in vd.DRIFT_MARKS if m < steps.max())}
    picked = bands[bands.step.isin(keep)]
    return [[int(r.step), int(r.seeds), r.q05, r.q50, r.q95] for r in picked.itertuples()]


def markdown(stats: dict, cell: Callable[[str], str] = escape.markdown) -> list[str]:
    """The report's section: per group, the verdict fractions and one table row per check and
    backend pair (labels and names through `cell`: they come from files; the console passes
    `escape.terminal`)."""
    q = round(stats["quantile"] * 100)
    lines = []
    for g in stats["groups"]:
        name = cell(g["group"]) if g["group"] else "all seeds"
        shares = ", ".join(f"{k.replace('_', ' ')} {v:.0%}" for k, v in g["verdicts"].items()
                           if v)
        lines += [f"### {name}: {g['seeds']} seeds", "", f"Verdicts: {shares}.", "",
                  f"| check | backend | vs | seeds | median | {q}th pct | worst (seed) | "
                  "agree | tolerance |", "|---|---|---|---|---|---|---|---|---|"]
        for c in g["checks"]:
            seed = "" if pd.isna(c["worst_seed"]) else f" ({c['worst_seed']})"
            lines.append(f"| {cell(c['check'])} | {cell(c['backend'])} | "
                         f"{cell(c['compared_to'])} | {c['seeds']} | "
                         f"{c['median']:.2e} | {c['p95']:.2e} | {c['worst']:.2e}{seed} | "
                         f"{c['agree']:.0%} | {c['tolerance']:.2g} |")
        lines.append("")
    return lines
