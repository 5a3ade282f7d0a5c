"""CSV cells a spreadsheet cannot mistake for a formula.

Excel, LibreOffice and Google Sheets run a cell that starts with `=`, `+`, `-` or `@` (and, in some,
a tab or carriage return) as a formula: a file named `=HYPERLINK("http://x","y").jpg` becomes a link,
and worse ones can fetch or run things ("CSV injection"). Every cell Tim writes into a CSV goes through
`safe_cell`, which puts a `'` in front of such a cell (the usual neutralisation: spreadsheets show the
text as typed and hide the quote). A cell that already starts with `'` gets one too, so the rule to get
the raw value back has no exception: **a cell that starts with `'` had one added; drop that first
character** (pandas: `df["path"].str.replace(r"^'", "", regex=True)`). Plain numbers (`-0.5`, `1e-3`)
are numbers to a spreadsheet, not formulas, and are written unchanged.
"""
from __future__ import annotations

import re

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def safe_cell(value):
    """`value` as a spreadsheet shows it: text starting like a formula gets a leading `'`; others unchanged."""
    if not isinstance(value, str) or not value.startswith(FORMULA_STARTS) or _NUMBER.fullmatch(value):
        return value
    return "'" + value


def safe_row(row) -> list:
    """`safe_cell` on every cell of a CSV row."""
    return [safe_cell(cell) for cell in row]
