"""Small, strict readers for the TOML spec: every error names its key path and what is allowed.

The spec is user input, so each reader returns a checked Python value or raises `SpecError`
with a one-line message such as ``model.layers[2].activation: 'relu6' is not one of ...``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any


class SpecError(ValueError):
    """A spec is malformed. `str(err)` is one line: ``key.path: what is wrong (allowed: ...)``."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


def join(path: str, key: str | int) -> str:
    """The key path of `key` below `path`: ``a.b``, or ``a[2]`` for list indices."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
            dict: "table"}.get(type(value), type(value).__name__)


class Table:
    """A TOML table being read: tracks which keys were used so leftovers are reported."""

    def __init__(self, raw: Any, path: str) -> None:
        if not isinstance(raw, Mapping):
            raise SpecError(path, f"expected a table, got {_type_name(raw)}")
        self.raw, self.path, self.used = raw, path, set()

    def has(self, key: str | int) -> bool:
        return key in self.raw

    def get(self, key: str | int, default: Any = None) -> Any:
        self.used.add(key)
        return self.raw.get(key, default)

    def sub(self, key: str, required: bool = False) -> Table:
        if required and key not in self.raw:
            raise SpecError(join(self.path, key), "missing required table")
        return Table(self.get(key, {}), join(self.path, key))

    def finish(self, allowed_hint: Iterable[str] | None = None) -> None:
        """Reject keys nobody read, naming what is allowed here."""
        extra = sorted(set(self.raw) - self.used)
        if extra:
            allowed = sorted(allowed_hint if allowed_hint is not None else self.used)
            raise SpecError(join(self.path, extra[0]),
                            f"unknown key (allowed: {', '.join(allowed)})")


def _number(path: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(path, f"expected a number, got {_type_name(value)} {value!r}")
    try:
        x = float(value)                  # TOML integers are unbounded; floats are not
    except OverflowError:
        raise SpecError(path, "must be a finite number, got an integer too large for a "
                        "float") from None
    if not math.isfinite(x):
        raise SpecError(path, f"must be a finite number, got {value!r}")
    return x


def number(t: Table, key: str, default: float | None = None, *, low: float | None = None,
           high: float | None = None, low_open: bool = False, high_open: bool = False) -> float:
    """A finite float within [low, high] (open ends where asked)."""
    path = join(t.path, key)
    value = t.get(key, default)
    if value is None:
        raise SpecError(path, "missing required number")
    x = _number(path, value)
    too_low = low is not None and (x <= low if low_open else x < low)
    too_high = high is not None and (x >= high if high_open else x > high)
    if too_low or too_high:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
        hi = "" if high is None else f"{high:g}" + (")" if high_open else "]")
        rng = f"{lo or '(-inf'}, {hi or 'inf)'}"
        raise SpecError(path, f"{x!r} is outside the allowed range {rng}")
    return x


def integer(t: Table, key: str | int, default: int | None = None, *, low: int | None = None,
            high: int | None = None) -> int:
    """An int (not a bool) within [low, high]; `high` keeps sizes within what memory holds."""
    path = join(t.path, key)
    value = t.get(key, default)
    if value is None:
        raise SpecError(path, "missing required integer")
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(path, f"expected an integer, got {_type_name(value)} {value!r}")
    if low is not None and value < low:
        raise SpecError(path, f"{value} is too small (allowed: integer >= {low})")
    if high is not None and value > high:
        raise SpecError(path, f"{value} is too large (allowed: integer <= {high})")
    return value


def boolean(t: Table, key: str, default: bool) -> bool:
    path = join(t.path, key)
    value = t.get(key, default)
    if not isinstance(value, bool):
        raise SpecError(path, f"expected true or false, got {_type_name(value)} {value!r}")
    return value


def choice(t: Table, key: str, allowed: Iterable[str], default: str | None = None) -> str:
    """A string out of `allowed`."""
    path = join(t.path, key)
    allowed = tuple(allowed)
    value = t.get(key, default)
    if value is None:
        raise SpecError(path, f"missing required key (allowed: {', '.join(allowed)})")
    if not isinstance(value, str):
        raise SpecError(path, f"expected a string, got {_type_name(value)} {value!r}")
    if value not in allowed:
        raise SpecError(path, f"{value!r} is not one of {', '.join(allowed)}")
    return value


def string(t: Table, key: str | int, default: str | None = None) -> str:
    path = join(t.path, key)
    value = t.get(key, default)
    if value is None:
        raise SpecError(path, "missing required string")
    if not isinstance(value, str) or not value:
        raise SpecError(path, f"expected a non-empty string, got {_type_name(value)} {value!r}")
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
    row = Table(dict(enumerate(items)), join(t.path, key))
    return [read(row, i, **limits) for i in range(len(items))]


def matrix(path: str, value: Any, ndim: int) -> list[Any]:
    """A nested list of finite numbers with `ndim` levels and rectangular rows."""
    if ndim == 0:
        return _number(path, value)
    if not isinstance(value, list) or not value:
        raise SpecError(path, f"expected a non-empty {ndim}-D list of numbers")
    rows = [matrix(join(path, i), v, ndim - 1) for i, v in enumerate(value)]
    if ndim > 1 and len({len(r) for r in rows}) != 1:
        lengths = ", ".join(map(str, sorted({len(r) for r in rows})))
        raise SpecError(path, f"rows have different lengths ({lengths}; allowed: one length "
                        "for every row)")
    return rows
