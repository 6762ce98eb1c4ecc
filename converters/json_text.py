"""JSON text as the converter writes it: compact rows (one per line in spools, the manifest and the journal) and
the readable, diff-friendly layout of sidecars and run-level files. Unicode is kept, not escaped.

Speed matters here (a few rows per task, 100,000 tasks in an export), hence the encoder's C core made once.
"""

from __future__ import annotations

import json
import math

_encoder = json.JSONEncoder(ensure_ascii=False)  # one C encoder, not one per call
_string = json.encoder.py_encode_basestring if json.encoder.c_encode_basestring is None \
    else json.encoder.c_encode_basestring  # a str as JSON, unicode kept


# The encoder's C core, made once: JSONEncoder.encode builds a new one (and a closure) on every call, which costs
# more than encoding a small row. Same arguments as encode() uses, so the text is the same.
_markers: dict = {}
_c_encode = None if json.encoder.c_make_encoder is None else json.encoder.c_make_encoder(
    _markers, _encoder.default, _string, None, ": ", ", ", False, False, True)


def _encode(value) -> str:
    """``_encoder.encode(value)`` for a container, through the C core made once."""
    if _c_encode is None:
        return _encoder.encode(value)
    try:
        return "".join(_c_encode(value, 0))
    except Exception:  # let the encoder raise (or write) exactly what it would, with fresh circular-check markers
        _markers.clear()
        return _encoder.encode(value)


def compact_json(value) -> str:
    """Compact JSON on one line. Scalars and lists (most sidecar values) skip the encoder's set-up, which costs
    more than encoding them; the text is the same as the encoder's."""
    kind = type(value)
    if kind is str:
        return _string(value)
    if kind is int:
        return int.__repr__(value)
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    if kind is bool:
        return "true" if value else "false"
    if value is None:
        return "null"
    if kind is list:
        return "[" + ", ".join([compact_json(item) for item in value]) + "]"
    return _encode(value)


def pretty_json(value, level: int = 0, width: float = 100) -> str:
    """Indented JSON (two spaces a level) in which any container that fits in ``width`` characters stays on one
    line. Built from the C encoder's compact output, so it is several times faster than ``indent=2``."""
    compact = compact_json(value)
    if len(compact) + 2 * level <= width or not isinstance(value, (dict, list)) or not value:
        return compact
    pad, end = "  " * (level + 1), "  " * level
    if isinstance(value, dict):
        items = [f"{pad}{_string(str(k))}: {pretty_json(v, level + 1, width)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{end}}}"
    items = [pad + pretty_json(v, level + 1, width) for v in value]
    return "[\n" + ",\n".join(items) + f"\n{end}]"


def sidecar_json(sidecar: dict) -> str:
    """The sidecar's text: one key per line, each timeline region on its own line (pretty_json for the rest), so
    that a person can edit it and a diff shows which region changed."""
    lines = []
    for key, value in sidecar.items():
        if key == "music_analysis" and isinstance(value, dict):
            inner = []
            for sub, item in value.items():
                if sub == "timeline" and isinstance(item, list) and item:
                    rows = ",\n".join(f"      {compact_json(region)}" for region in item)
                    inner.append(f'    "timeline": [\n{rows}\n    ]')
                else:
                    inner.append(f"    {_string(sub)}: {pretty_json(item, 2)}")
            lines.append('  "music_analysis": {\n' + ",\n".join(inner) + "\n  }")
        else:
            lines.append(f"  {_string(key)}: {pretty_json(value, 1)}")
    return "{\n" + ",\n".join(lines) + "\n}"


def sidecar_bytes(sidecar: dict) -> bytes:
    """The sidecar as written: readable JSON (see sidecar_json), unicode kept, newline at the end."""
    return (sidecar_json(sidecar) + "\n").encode()


def finite_number(value: object) -> float | None:
    """A JSON number as a finite float; None for anything else: a bool, a string, NaN, Infinity, or an integer
    past float's range (Python's JSON reader takes all of these, and a sidecar or export may hold them)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
