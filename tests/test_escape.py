"""Text from files is shown literally: no terminal escape acts, no Markdown or HTML renders."""

from __future__ import annotations

import pytest

from harness import escape


@pytest.mark.parametrize("raw", ["\x1b[2J\x1b[31mred", "bell\x07", "a\rb", "nul\x00", "c1\x9b",
                                 "two\nlines"])
def test_terminal_shows_control_characters_instead_of_acting_on_them(raw):
    shown = escape.terminal(raw)
    assert shown.isprintable() and shown != raw
    assert all(ord(c) >= 0x20 and not 0x7f <= ord(c) <= 0x9f for c in shown)


@pytest.mark.parametrize("raw", ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>",
                                 "`code` and ``more``", "[link](http://x)", "![i](x)",
                                 "a | b", "*bold* _it_", "# heading"])
def test_markdown_leaves_no_markup(raw):
    shown = escape.markdown(raw)
    assert "<" not in shown and ">" not in shown.replace("&gt;", "")
    for c in "`[]()|*_#!":
        assert shown.count(c) == shown.count("\\" + c)


def test_a_code_span_outlasts_the_backticks_inside_it():
    shown = escape.code("a`b``c")
    assert shown.startswith("```") and shown.endswith("```") and "a`b``c" in shown


def test_plain_text_is_unchanged_by_terminal():
    assert escape.terminal("lr=0.1 ünïcode") == "lr=0.1 ünïcode"
