"""Text that comes from a file (a spec's keys and labels, a foreign meta.json, a file name) made
safe for where it is shown: a terminal, Markdown, HTML. One place, so nothing shown raw slips by.

- `terminal`: control characters (escape sequences, carriage returns, bells, NUL, DEL and the
  C1 range) become visible `\\x1b`-style escapes; newlines too, so one message stays one line.
- `markdown`: `terminal`, then every character Markdown or HTML gives a meaning to is
  backslash-escaped or written as an entity, so a label cannot close a code span, start a
  link, an image or a table cell, or open an HTML tag.
- `code`: text for inside a Markdown code span: a span delimited by more backticks than the
  text's longest run, and no HTML (a code span shows `<script>` as text).
"""

from __future__ import annotations

import re

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")
HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}


def terminal(text: object) -> str:
    """`text` with every control character shown as an escape, never acted on."""
    return CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


def markdown(text: object) -> str:
    """`text` as literal Markdown: no markup, no HTML, one line."""
    plain = "".join(HTML.get(c, c) for c in terminal(text))
    return MARKDOWN.sub(r"\\\1", plain)


def code(text: object) -> str:
    """`text` as a Markdown code span (with its delimiters), one line, shown literally."""
    plain = terminal(text)
    runs = [len(r) for r in re.findall(r"`+", plain)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if plain.startswith("`") or plain.endswith("`") or not plain.strip() else ""
    return f"{fence}{pad}{plain}{pad}{fence}"
