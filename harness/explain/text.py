"""The text of `harness explain`: rows of one value per backend plus the largest difference
between backends, laid out as a fixed-width table (harness/explain/rows.py builds the rows)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

VALUE_FORMAT = "{:.10g}"                  # the tutorials' nine significant digits, and one more
DIFF_FORMAT = "{:.1e}"
MISSING = "-"                             # a backend that has no such value
GAP = 2                                   # spaces between columns


@dataclass(frozen=True)
class Row:
    """One quantity: its value per backend (None where a backend has none), the largest
    absolute difference between backends over the quantity's elements (None with fewer than
    two values), and a note printed where no backend has a value."""
    label: str
    values: dict[str, float | None]
    diff: float | None
    note: str = ""


# A line of the table: a Row, or a heading printed as it is.
Item = Row | str


def spread(arrays: Sequence[np.ndarray]) -> float | None:
    """max over elements of (largest - smallest value among the arrays); None below two."""
    if len(arrays) < 2:
        return None
    stacked = np.stack([np.asarray(a, np.float64) for a in arrays])
    return float(np.max(np.ptp(stacked, axis=0))) if stacked[0].size else 0.0


def row(label: str, arrays: Mapping[str, np.ndarray | None],
        shown: Callable[[np.ndarray], float] = float, note: str = "") -> Row:
    """A Row from each backend's array for one quantity: `shown` (the value itself, or a norm
    for a summarised tail) is what is printed; the difference is taken element by element."""
    present = [a for a in arrays.values() if a is not None]
    return Row(label, {k: None if a is None else shown(np.asarray(a, np.float64))
                       for k, a in arrays.items()}, spread(present), note)


def norm(a: np.ndarray) -> float:
    return float(np.linalg.norm(a))


def _cells(r: Row, names: Sequence[str]) -> list[str]:
    if r.note and all(r.values.get(n) is None for n in names):
        return [r.note]
    cells = [MISSING if r.values.get(n) is None else VALUE_FORMAT.format(r.values[n])
             for n in names]
    return [*cells, MISSING if r.diff is None else DIFF_FORMAT.format(r.diff)]


def table(items: Sequence[Item], names: Sequence[str]) -> list[str]:
    """Fixed-width lines: the labels, one column per backend, then "max diff"."""
    rows = [i for i in items if isinstance(i, Row)]
    label_w = max([len(r.label) for r in rows] + [0]) + GAP
    widths = [len(c) for r in rows for c in _cells(r, names) if len(_cells(r, names)) > 1]
    cell_w = max([*widths, *(len(n) for n in names), len("max diff")]) + GAP
    lines = [(" " * label_w + "".join(f"{n:<{cell_w}}" for n in [*names, "max diff"])).rstrip()]
    for item in items:
        if isinstance(item, str):
            lines.append(item)
            continue
        text = "".join(f"{c:<{cell_w}}" for c in _cells(item, names))
        lines.append(f"{item.label:<{label_w}}{text}".rstrip())
    return lines


def largest(items: Sequence[Item]) -> Row | None:
    """The row with the largest difference between backends, NaN (a diverged value) above
    all; None when no row compared two backends."""
    rows = [i for i in items if isinstance(i, Row) and i.diff is not None]
    return max(rows, key=lambda r: math.inf if math.isnan(r.diff) else r.diff, default=None)
