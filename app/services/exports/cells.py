"""Spreadsheet-safe CSV (no formula injection).

Every text cell is enclosed in double quotes (``csv.QUOTE_NONNUMERIC``; a double quote inside
is doubled). A text cell whose first character is ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return (what spreadsheet programs read as the start of a formula) is written with a
leading apostrophe: ``=HYPERLINK(...)`` becomes ``"'=HYPERLINK(...)"``, which spreadsheets
show as the text it is and never evaluate. Integer columns (points, amounts) are written as
plain numbers, so a negative point count stays a number. An empty (null) cell is ``""``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

import orjson

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return value
    if isinstance(value, datetime | date):
        cell = value.isoformat()
    elif isinstance(value, dict | list):
        cell = orjson.dumps(value).decode()
    else:
        cell = value if isinstance(value, str) else str(value)
    if cell.startswith(FORMULA_STARTS):
        return "'" + cell
    return cell


def csv_block(rows: Iterable[Sequence[Any]]) -> bytes:
    """CSV lines (CRLF, as RFC 4180) for these rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC)
    for row in rows:
        writer.writerow([safe_cell(value) for value in row])
    return buffer.getvalue().encode()
