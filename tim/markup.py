"""Text from a checkpoint or a file name, made safe to put inside the app's Markdown.

A model's name, its labels, the fields of its card, an uploaded file's name and the messages that
quote them all come from someone else. Gradio's Markdown keeps HTML tags such as `<img src=...>`
(it only strips scripts and event handlers), and Markdown itself turns `![x](http://...)` into an
image the browser fetches. `markdown_text` makes any such value plain text: every character Markdown
or HTML treats specially inside a line is backslash-escaped (CommonMark shows an escaped character as
itself; `:` and `.` too, so `http://` and `www.` are not turned into links), line breaks become spaces,
and a first character that would start a list, quote or heading is escaped as well.
"""
from __future__ import annotations

import re

SPECIAL = set("\\`*_{}[]()<>#!|~&$:.")
_BLOCK_START = re.compile(r"[-+=>|]|\d+[.)]")


def markdown_text(value) -> str:
    """`value` as literal text inside Markdown: shown exactly as typed, never as markup, HTML or a link."""
    text = " ".join(str(value).splitlines()).strip()
    escaped = "".join("\\" + c if c in SPECIAL else c for c in text)
    start = _BLOCK_START.match(text)
    if start and not text[start.end() - 1] in SPECIAL:  # "- x", "+ x", "1) x": escape the marker itself
        i = start.end() - 1
        escaped = escaped[:i] + "\\" + escaped[i:]
    return escaped
