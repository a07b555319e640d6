"""The reading layer: what the user hands the harness (a spec's TOML text, from a file or from
standard input, or a spec given as a dict) becomes a checked document, or a one-line
`SpecError` naming the file and the field. The .npz archive beside a spec has its own reader,
`harness.spec.npz`.

Everything here runs before a value is validated: it bounds what validation may walk, so a
hostile or mistaken file exhausts neither memory nor Python's recursion limit, and is read
exactly once (the text parsed is the text the provenance records).
"""

from __future__ import annotations

import datetime
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.spec.schema import SpecError, join, shown

STDIN = "-"                       # `harness run -` reads the spec from standard input
# A spec is a page of settings; inline data is for small worked examples. 16 MiB parses in
# about ten seconds into a few hundred MB of Python objects, and still holds inline data up to
# the 1M-sample limit for narrow rows.
MAX_SPEC_BYTES = 16 * 2**20
# Nesting of tables and lists. A spec needs about 6 (sweep values of a weight matrix); tomllib,
# copy.deepcopy and the readers here recurse once or more per level and hit Python's
# recursion limit (1000 frames) near 300 levels.
MAX_DEPTH = 32
# What a spec given as a dict may hold: the types tomllib produces (and their subclasses).
TOML_TYPES = (str, int, float, bool, list, Mapping, datetime.date, datetime.time)
_SCALARS = {str, int, float, bool, datetime.date, datetime.datetime, datetime.time}
# Values of a whole spec: each takes at least two bytes of TOML ("0,"), so no file within
# MAX_SPEC_BYTES holds more; a dict spec is held to the same.
MAX_VALUES = MAX_SPEC_BYTES // 2

@dataclass(frozen=True)
class Document:
    """A spec as read: the text exactly as parsed (so provenance records what ran) and the
    document it parses to."""
    name: str                     # as the user gave it ("-" for standard input)
    text: str
    raw: dict[str, Any]
    base: Path                    # where the spec's relative file paths resolve from


def read_spec(path: str | Path) -> Document:
    """Read, decode and parse a spec file (or standard input for "-"), once."""
    text = _decode(_read_bytes(str(path)))
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError("", f"TOML syntax error: {err}") from None
    except RecursionError:
        raise SpecError("", "TOML syntax error: lists or tables nested too deeply to parse "
                        f"(allowed: at most {MAX_DEPTH} levels)") from None
    except ValueError as err:             # an integer longer than Python converts
        raise SpecError("", f"TOML syntax error: {str(err).split(';')[0]}") from None
    check_tree(raw)
    return Document(str(path), text, raw, Path(path).parent)


def _read_bytes(path: str) -> bytes:
    """At most MAX_SPEC_BYTES of the file, or of standard input for STDIN."""
    data = _read_stdin() if path == STDIN else _read_file(path)
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError("", f"the spec is larger than {MAX_SPEC_BYTES} bytes (allowed: at most "
                        f"{MAX_SPEC_BYTES // 2**20} MiB; larger data belongs in a data set)")
    return data


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise SpecError("", f"no such spec file: {path}") from None
    except OSError as err:                # a folder, no permission, ...
        raise SpecError("", f"cannot read the spec file: {err.strerror or err}") from None
    except ValueError as err:             # a NUL byte in the name
        raise SpecError("", f"cannot read the spec file: {err}") from None


def _read_stdin() -> bytes:
    try:
        return sys.stdin.buffer.read(MAX_SPEC_BYTES + 1)
    except (AttributeError, OSError, ValueError) as err:   # no, or a closed, standard input
        raise SpecError("", f"cannot read the spec from standard input: {err}") from None


def _decode(data: bytes) -> str:
    """UTF-8 text; a leading byte-order mark (Windows editors write one) is dropped."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise SpecError("", f"TOML syntax error: not UTF-8 text (byte {err.start})") from None


def check_tree(raw: Any, where: str = "") -> None:
    """`raw` is what tomllib could have produced: tables with string keys, lists and TOML
    scalars, nested at most MAX_DEPTH levels (a table that contains itself is infinitely deep),
    at most MAX_VALUES values in all (so a dict sharing one list between many keys cannot make
    the spec's readers walk it billions of times). Walked without recursion; a key path is
    spelled out only for an error or for a table or list that holds more than scalars."""
    count = 0
    stack: list[tuple[Any, str, str | int | None, int]] = [(raw, where, None, 0)]
    while stack:
        node, parent, key, depth = stack.pop()
        if type(node) in _SCALARS:
            continue
        if depth > MAX_DEPTH:
            raise SpecError(_path(parent, key), f"nests lists or tables more than {MAX_DEPTH} "
                            f"levels deep (allowed: at most {MAX_DEPTH} levels)")
        if not isinstance(node, TOML_TYPES):
            raise SpecError(_path(parent, key), f"{shown(node)} ({type(node).__name__}) is not "
                            "a TOML value (allowed: tables, lists, strings, numbers, booleans, "
                            "dates)")
        if not isinstance(node, list | Mapping):
            continue
        count += len(node)
        if count > MAX_VALUES:
            raise SpecError(where, f"holds more than {MAX_VALUES} values (allowed: at most "
                            f"{MAX_VALUES}, what a {MAX_SPEC_BYTES // 2**20} MiB file can hold)")
        table = isinstance(node, Mapping)
        if table:
            _check_keys(node, _path(parent, key))
        if not _SCALARS.issuperset(map(type, node.values() if table else node)):
            path = _path(parent, key)
            stack.extend((v, path, k, depth + 1)
                         for k, v in (node.items() if table else enumerate(node)))


def _path(parent: str, key: str | int | None) -> str:
    """The key path of `key` in `parent` (the walk's root has no key)."""
    return parent if key is None else join(parent, key)


def _check_keys(table: Mapping, path: str) -> None:
    for key in table:
        if not isinstance(key, str):
            raise SpecError(join(path, shown(key)), f"a key must be a string, got "
                            f"{type(key).__name__} {shown(key)}")
