"""The rules a product record must meet before the catalog takes it: id, FIELDS, business fields.

Every problem is a RecordError whose message names the product id and the field, so a write
fails with INVALID_ARGUMENT saying exactly what to fix (the rest of its batch goes on).
FIELDS is a JSON object of scalars; the fields the service understands are typed here, any other
scalar is kept as it is (and returned by the catalog, not searched or filtered).
"""
from __future__ import annotations

import json
import math

from productsearch.core.limits import MAX_TEXT_BYTES

MAX_ID_BYTES = 256
MAX_FIELDS_BYTES = 64 * 1024
NUMBER_FIELDS = ("price", "stock", "rating", "popularity")  # finite numbers >= 0
TERM_FIELDS = ("category", "color", "pattern", "brand", "sku", "group")  # filterable / facet-able strings
TEXT_FIELDS = ("description",)
RESERVED = ("id", "title", "image")  # sent as their own inputs, never inside FIELDS


class RecordError(ValueError):
    """A product record the catalog refuses; the message names the id and the field."""


class ClosedValue(RecordError):
    """A value outside the catalog's closed list of a field (set_closed_values)."""


def product_id(raw: bytes | str) -> str:
    """A product id: 1..256 bytes of UTF-8, no control characters, not only spaces."""
    data = raw.encode() if isinstance(raw, str) else bytes(raw)
    if not data.strip():
        raise RecordError("ID is missing: every product needs a non-empty id")
    if len(data) > MAX_ID_BYTES:
        raise RecordError(f"product id of {len(data)} bytes is too long (at most {MAX_ID_BYTES}): {data[:40]!r}...")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RecordError(f"product id {data[:40]!r} is not valid UTF-8") from None
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise RecordError(f"product id {text[:40]!r} contains control characters")
    return text


def parse_fields(pid: str, raw: bytes | str, closed: dict[str, list[str]] | None = None) -> dict:
    """FIELDS of product `pid` as a checked dict ({} for an empty element). `closed`: field ->
    allowed values (a catalog with a closed category list)."""
    data = raw.encode() if isinstance(raw, str) else bytes(raw)
    if not data.strip():
        return {}
    if len(data) > MAX_FIELDS_BYTES:
        raise RecordError(f"product {pid!r}: FIELDS is {len(data)} bytes (at most {MAX_FIELDS_BYTES})")
    try:
        fields = json.loads(data)
    except (UnicodeDecodeError, ValueError) as err:
        raise RecordError(f"product {pid!r}: FIELDS is not valid JSON ({err})") from None
    if not isinstance(fields, dict):
        raise RecordError(f"product {pid!r}: FIELDS must be a JSON object, got {type(fields).__name__}")
    return check_fields(pid, fields, closed)


def check_fields(pid: str, fields: dict, closed: dict[str, list[str]] | None = None) -> dict:
    out = {}
    for key, value in fields.items():
        where = f"product {pid!r}: FIELDS.{key}"
        if key in RESERVED:
            raise RecordError(f"{where}: '{key}' is not a field (send it as the {key.upper()} input)")
        if not isinstance(key, str) or not key or len(key) > 64:
            raise RecordError(f"product {pid!r}: field names must be 1-64 characters, got {key!r}")
        if isinstance(value, (dict, list)):
            raise RecordError(f"{where} must be a scalar (string, number, true/false or null), got {type(value).__name__}")
        if key in NUMBER_FIELDS and value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise RecordError(f"{where} must be a finite number >= 0, got {json.dumps(value)}")
        if key in TERM_FIELDS + TEXT_FIELDS and value is not None:
            if not isinstance(value, str):
                raise RecordError(f"{where} must be a string, got {json.dumps(value)}")
            if len(value.encode()) > MAX_TEXT_BYTES:
                raise RecordError(f"{where} is longer than {MAX_TEXT_BYTES} bytes")
        allowed = (closed or {}).get(key)
        if allowed is not None and value is not None and value not in allowed:
            shown = ", ".join(allowed[:30]) + (" ..." if len(allowed) > 30 else "")
            raise ClosedValue(f"{where}: unknown {key} {value!r}; this catalog's {key} values are: {shown}")
        out[key] = value
    return out
