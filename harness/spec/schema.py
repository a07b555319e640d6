"""Small, strict readers for the TOML spec: every error names its key path and what is allowed.

The spec is user input, so each reader returns a checked Python value or raises `SpecError`
with a one-line message such as ``model.layers[2].activation: 'relu6' is not one of ...``.
Values and keys from the file are shown escaped and shortened, so no message spans lines or
acts on the terminal. A number of a float32 run is checked as float32 reads it.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.escape import terminal

# How much of a value from the file a message shows: enough to recognise it, never a page.
_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 60    # characters of a string or other value
_SHOWN.maxlong = 40                        # digits of an integer
_SHOWN.maxlist = _SHOWN.maxdict = 6        # elements of a list or table
_SHOWN.maxlevel = 3                        # levels of nesting


class SpecError(ValueError):
    """A spec is malformed. `str(err)` is one line: ``key.path: what is wrong (allowed: ...)``,
    with any control character of a key or value shown as an escape."""

    def __init__(self, path: str, message: str) -> None:
        path, message = terminal(path), terminal(message)
        super().__init__(f"{path}: {message}" if path else message)
        self.path, self.message = path, message


def shown(value: Any) -> str:
    """`value` as a message shows it: its repr, shortened (a 10 MB list becomes a few
    elements and "...")."""
    try:
        return _SHOWN.repr(value)
    except ValueError:                    # an integer longer than Python converts to text
        return f"<{type(value).__name__} too long to show>"


def join(path: str, key: str | int) -> str:
    """The key path of `key` below `path`: ``a.b``, or ``a[2]`` for list indices."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
            dict: "table"}.get(type(value), type(value).__name__)


class Table:
    """A TOML table being read: tracks which keys were used so leftovers are reported.
    `dtype` is the run's precision, which every number read from it (and its sub-tables)
    must keep its allowed range in."""

    def __init__(self, raw: Any, path: str, dtype: str = "float64") -> None:
        if not isinstance(raw, Mapping):
            raise SpecError(path, f"expected a table, got {_type_name(raw)}")
        self.raw, self.path, self.used, self.dtype = raw, path, set(), dtype

    def has(self, key: str | int) -> bool:
        return key in self.raw

    def get(self, key: str | int, default: Any = None) -> Any:
        self.used.add(key)
        return self.raw.get(key, default)

    def sub(self, key: str, required: bool = False) -> Table:
        if required and key not in self.raw:
            raise SpecError(join(self.path, key), "missing required table")
        return self.child(self.get(key, {}), key)

    def child(self, raw: Any, key: str | int) -> Table:
        """`raw`, read as the table at `key` below this one (in the same dtype)."""
        return Table(raw, join(self.path, key), self.dtype)

    def finish(self, allowed_hint: Iterable[str] | None = None) -> None:
        """Reject keys nobody read, naming what is allowed here."""
        extra = sorted(set(self.raw) - self.used)
        if extra:
            allowed = sorted(allowed_hint if allowed_hint is not None else self.used)
            raise SpecError(join(self.path, extra[0]),
                            f"unknown key (allowed: {', '.join(allowed)})")


def _number(path: str, value: Any, limit: float = math.inf, why: str = "") -> float:
    """A finite float of magnitude at most `limit` (`why`: the reason, for the message)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(path, f"expected a number, got {_type_name(value)} {shown(value)}")
    try:
        x = float(value)                  # TOML integers are unbounded; floats are not
    except OverflowError:
        raise SpecError(path, "must be a finite number, got an integer too large for a "
                        "float") from None
    if not math.isfinite(x):
        raise SpecError(path, f"must be a finite number, got {shown(value)}")
    if abs(x) > limit:
        raise SpecError(path, f"{x:g} is too large in magnitude (allowed: |value| <= "
                        f"{limit:.3g}{why})")
    return x


def as_dtype(x: float, dtype: str) -> float:
    """`x` as a run of `dtype` holds it: float32 rounds, overflows to inf, underflows to 0."""
    with np.errstate(over="ignore", under="ignore"):
        return float(np.array(x, dtype=dtype))


def number(t: Table, key: str, default: float | None = None, *, low: float | None = None,
           high: float | None = None, low_open: bool = False, high_open: bool = False) -> float:
    """A finite float within [low, high] (open ends where asked)."""
    path = join(t.path, key)
    value = t.get(key, default)
    if value is None:
        raise SpecError(path, "missing required number")
    x = _number(path, value)
    bounds = _Bounds(low, high, low_open, high_open)
    if bounds.outside(x):
        raise SpecError(path, f"{x!r} is outside the allowed range {bounds}")
    held = as_dtype(x, t.dtype)               # a float32 run computes with this value
    if not math.isfinite(held):
        big = float(np.finfo(t.dtype).max)
        raise SpecError(path, f"{x!r} is beyond {t.dtype}'s range in this {t.dtype} run "
                        f"(allowed: |value| <= {big:.4g})")
    if bounds.outside(held):
        raise SpecError(path, f"{x!r} becomes {held!r} in this {t.dtype} run, outside the "
                        f"allowed range {bounds}")
    return x


@dataclass(frozen=True)
class _Bounds:
    """An interval with optional, open or closed ends."""
    low: float | None
    high: float | None
    low_open: bool
    high_open: bool

    def outside(self, x: float) -> bool:
        too_low = self.low is not None and (x <= self.low if self.low_open else x < self.low)
        return too_low or (self.high is not None
                           and (x >= self.high if self.high_open else x > self.high))

    def __str__(self) -> str:
        lo = "(-inf" if self.low is None else ("(" if self.low_open else "[") + f"{self.low:g}"
        hi = "inf)" if self.high is None else f"{self.high:g}" + (")" if self.high_open else "]")
        return f"{lo}, {hi}"


def integer(t: Table, key: str | int, default: int | None = None, *, low: int | None = None,
            high: int | None = None) -> int:
    """An int (not a bool) within [low, high]; `high` keeps sizes within what memory holds."""
    path = join(t.path, key)
    value = t.get(key, default)
    if value is None:
        raise SpecError(path, "missing required integer")
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(path, f"expected an integer, got {_type_name(value)} {shown(value)}")
    if low is not None and value < low:
        raise SpecError(path, f"{shown(value)} is too small (allowed: integer >= {low})")
    if high is not None and value > high:
        raise SpecError(path, f"{shown(value)} is too large (allowed: integer <= {high})")
    return value


def boolean(t: Table, key: str, default: bool) -> bool:
    path = join(t.path, key)
    value = t.get(key, default)
    if not isinstance(value, bool):
        raise SpecError(path, f"expected true or false, got {_type_name(value)} "
                        f"{shown(value)}")
    return value


def choice(t: Table, key: str, allowed: Iterable[str], default: str | None = None) -> str:
    """A string out of `allowed`."""
    path = join(t.path, key)
    allowed = tuple(allowed)
    value = t.get(key, default)
    if value is None:
        raise SpecError(path, f"missing required key (allowed: {', '.join(allowed)})")
    if not isinstance(value, str):
        raise SpecError(path, f"expected a string, got {_type_name(value)} {shown(value)}")
    if value not in allowed:
        raise SpecError(path, f"{shown(value)} is not one of {', '.join(allowed)}")
    return value


def string(t: Table, key: str | int, default: str | None = None) -> str:
    path = join(t.path, key)
    value = t.get(key, default)
    if value is None:
        raise SpecError(path, "missing required string")
    if not isinstance(value, str) or not value:
        raise SpecError(path, f"expected a non-empty string, got {_type_name(value)} "
                        f"{shown(value)}")
    return value


def listof(t: Table, key: str, default: list[Any] | None = None) -> list[Any]:
    path = join(t.path, key)
    value = t.get(key, default)
    if value is None:
        raise SpecError(path, "missing required list")
    if not isinstance(value, list):
        raise SpecError(path, f"expected a list, got {_type_name(value)}")
    return value


def each(t: Table, key: str, read: Callable[..., Any], default: list[Any] | None = None,
         **limits: Any) -> list[Any]:
    """Every element of the list `key`, read by a scalar reader (`integer`, `string`, ...), so
    a bad element is named ``key[i]``."""
    items = listof(t, key, default)
    row = t.child(dict(enumerate(items)), key)
    return [read(row, i, **limits) for i in range(len(items))]


def matrix(path: str, value: Any, ndim: int, limit: float = math.inf,
           why: str = "") -> list[Any]:
    """A nested list of finite numbers of magnitude at most `limit` (`why`: the reason),
    with `ndim` levels and rectangular rows."""
    if ndim == 0:
        return _number(path, value, limit, why)
    if not isinstance(value, list) or not value:
        raise SpecError(path, f"expected a non-empty {ndim}-D list of numbers")
    rows = [matrix(join(path, i), v, ndim - 1, limit, why) for i, v in enumerate(value)]
    if ndim > 1 and len({len(r) for r in rows}) != 1:
        lengths = ", ".join(map(str, sorted({len(r) for r in rows})))
        raise SpecError(path, f"rows have different lengths ({lengths}; allowed: one length "
                        "for every row)")
    return rows
