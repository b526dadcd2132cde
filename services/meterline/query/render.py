"""Report and generation bodies as JSON or CSV.

Money stays exact: Decimal values are written as JSON numbers from their decimal text
(``96.4125``, trailing zeros dropped), never through float, so a client that parses numbers
as decimals (``json.loads(text, parse_float=Decimal)``) gets the warehouse's value exactly.
The standard json module cannot write a Decimal as a number, hence the small writer here."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from decimal import Decimal
from json.encoder import encode_basestring
from typing import Any, Final


def decimal_text(value: Decimal) -> str:
    # format(..., "f") is exact; Decimal.normalize() would round to the context's 28 digits.
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _null(value: None) -> str:
    return "null"


def _bool(value: bool) -> str:
    return "true" if value else "false"


# By exact type: a report of a thousand rows has some fifteen thousand values, and one dict
# lookup each is about half the cost of a chain of isinstance checks and a call per value.
_SCALARS: Final[dict[type, Callable[[Any], str]]] = {
    str: encode_basestring,
    int: int.__repr__,
    Decimal: decimal_text,
    bool: _bool,
    type(None): _null,
}


def to_json(value: Any) -> str:
    scalar = _SCALARS.get(type(value))
    if scalar is not None:
        return scalar(value)
    get = _SCALARS.get
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(
                [
                    f"{encode_basestring(str(k))}:{get(type(v), to_json)(v)}"
                    for k, v in value.items()
                ]
            )
            + "}"
        )
    if isinstance(value, list | tuple):
        return "[" + ",".join([get(type(item), to_json)(item) for item in value]) + "]"
    if isinstance(value, bool):
        return _bool(value)
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, str):
        return str(encode_basestring(value))
    return json.dumps(value)


def to_csv(fields: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(fields)
    for row in rows:
        writer.writerow([_csv_cell(row.get(field)) for field in fields])
    return out.getvalue()


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, bool):
        return _bool(value)  # as in JSON, not Python's "True"
    return str(value)
