"""Step 1 from export to sidecar: stream tasks out of a Label Studio JSON export and choose, per task, the result
list to convert (an annotation, or with ``--use-predictions`` a prediction).

Streaming keeps memory flat however many tasks the export holds: one task is in memory at a time.
"""

from __future__ import annotations

import codecs
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from label_config import names


class ExportError(Exception):
    """The export as a whole is unusable (exit status 2); the message says what to export instead."""


class TaskError(Exception):
    """One task is malformed; the others are still converted."""


@dataclass
class Choice:
    """The result list chosen for one task and where it came from."""

    result: list
    source: str  # "annotation" | "prediction"
    id: int | None  # annotation or prediction id
    annotator: object = None  # completed_by: a user id (or a dict in some exports)
    updated_at: str = ""
    model_version: str = ""  # predictions only
    ground_truth: bool = False


# Keys JSON_MIN (and CSV) rows carry at the top level instead of data/annotations.
_JSON_MIN_KEYS = ("annotation_id", "annotator", "lead_time")

JSON_MIN_MESSAGE = (
    "{path} is a JSON_MIN export: it drops region ids, so per-region notes and lyrics cannot be paired with their "
    "regions. Export the project again as \"JSON\" (Export > JSON), or the snapshot with whole predictions.")


def iter_tasks(path: Path, progress=None) -> Iterator[dict]:
    """Yield the tasks of a Label Studio JSON export one at a time. ``progress(bytes_read)`` is called after each
    task. Raises ExportError when the file is not a Label Studio JSON export (JSON_MIN included)."""
    path = Path(path)
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise ExportError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        first = _first_char(handle)
        if first != b"[":
            raise ExportError(_not_export_message(path, first))
        handle.seek(0)
        count = 0
        try:
            for item, bytes_read in _array_items(handle):
                if count == 0:
                    _check_first(item, path)
                count += 1
                yield item
                if progress is not None:
                    progress(bytes_read)
        except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
            where = f"after task #{count}" if count else "at the start"
            raise ExportError(f"{path} is not valid JSON {where} ({exc}); the export may be truncated: "
                              "download it again") from None
        except RecursionError:  # the C decoder gives up past Python's recursion limit (about 1,000 levels)
            raise ExportError(f"{path}: task #{count + 1} nests lists or objects deeper than JSON can be read "
                              f"here (over {sys.getrecursionlimit()} levels); no Label Studio export does: "
                              "export the project again") from None


_CHUNK_BYTES = 1 << 16  # as much as ijson reads at a time: the progress bar moves as often
MAX_TASK_BYTES = 256 << 20  # a task larger than this is taken for a broken file rather than read into memory
_WHITESPACE = " \t\n\r"


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if value - value != 0.0:  # inf - inf is NaN
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


# NaN, Infinity and numbers too large for a float are errors, as they would be invalid in the sidecars.
_decoder = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float)


def strict_loads(text: str | bytes) -> object:
    """JSON text as this module reads exports: NaN, Infinity and floats past float's range are ValueErrors."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return _decoder.decode(text)


def _array_items(handle) -> Iterator[tuple[object, int]]:
    """The items of the JSON array in ``handle`` (a binary file), one at a time, each with the number of bytes
    read so far. Each item is decoded by the C JSON decoder from a buffer that holds it whole (read in 64 KB
    chunks, grown while an item is cut off at its end), so memory stays at about one item: several times faster
    than an event-based streaming parser. Raises ValueError for anything that is not a JSON array."""
    utf8 = codecs.getincrementaldecoder("utf-8")()
    buf, pos, bytes_read, eof = "", 0, 0, False

    def more(size: int = _CHUNK_BYTES) -> None:
        nonlocal buf, pos, bytes_read, eof
        chunk = handle.read(size)
        bytes_read += len(chunk)
        eof = not chunk
        buf = buf[pos:] + utf8.decode(chunk, final=eof)
        pos = 0

    def next_char() -> str:
        """The next character that is not whitespace, "" at the end of the file; ``pos`` is left on it."""
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in _WHITESPACE:
                pos += 1
            if pos < len(buf) or eof:
                return buf[pos:pos + 1]
            more()

    if next_char() != "[":
        raise ValueError("a JSON array must start with [")
    pos += 1
    if next_char() == "]":
        pos += 1
    else:
        while True:
            next_char()
            while True:
                try:
                    item, end = _decoder.raw_decode(buf, pos)
                except json.JSONDecodeError:
                    if eof or len(buf) - pos > MAX_TASK_BYTES:
                        raise
                    more(max(_CHUNK_BYTES, len(buf) - pos))  # the item goes on past the buffer: read more
                    continue
                if eof or type(item) not in (int, float) or end + 2 < len(buf):
                    break
                more()  # a number at the end of the buffer may go on in the next chunk ("2" "5", "2." "5")
            pos = end
            yield item, bytes_read
            separator = next_char()
            pos += 1
            if separator == "]":
                break
            if separator != ",":
                raise ValueError(f"expected ',' or ']' after array element, found {separator or 'the end'!r}")
    if next_char():
        raise ValueError("trailing garbage after the array")


def _first_char(handle) -> bytes:
    head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head[:1]


def _not_export_message(path: Path, first: bytes) -> str:
    if first == b"{":
        return (f"{path} holds a JSON object, not a Label Studio export (a list of tasks). Export the project as "
                "\"JSON\" in Label Studio (Export > JSON) and pass that file.")
    if not first:
        return f"{path} is empty; export the project as \"JSON\" in Label Studio and pass that file."
    return f"{path} is not JSON; export the project as \"JSON\" in Label Studio and pass that file."


def _check_first(item: object, path: Path) -> None:
    """Tell a Label Studio JSON export from JSON_MIN and from other JSON by its first task."""
    if not isinstance(item, dict):
        raise ExportError(f"{path} is a JSON list of {type(item).__name__}s, not of Label Studio tasks; export "
                          "the project as \"JSON\".")
    if "data" in item or "annotations" in item:
        return
    if any(key in item for key in _JSON_MIN_KEYS):
        raise ExportError(JSON_MIN_MESSAGE.format(path=path))
    raise ExportError(f"{path} is a JSON list whose items have no \"data\" or \"annotations\": not a Label Studio "
                      "JSON export. Export the project as \"JSON\".")


def task_id(task: dict) -> int | None:
    """The task's id (None when absent or not an integer)."""
    value = task.get("id") if isinstance(task, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def audio_ref(task: dict) -> str:
    """The audio reference in ``task.data``: the ``$audio`` key of the label config, else the key Label Studio
    uses for files uploaded without a column name, else the only string value."""
    data = task.get("data")
    if not isinstance(data, dict):
        raise TaskError("the task has no \"data\" object")
    key = names.AUDIO_VALUE.lstrip("$")
    for candidate in (key, "$undefined$"):
        value = data.get(candidate)
        if isinstance(value, str) and value.strip():
            return value.strip()
    strings = [v for v in data.values() if isinstance(v, str) and v.strip()]
    if len(strings) == 1:
        return strings[0].strip()
    raise TaskError(f"task data has no \"{key}\" field; the label config reads the audio from ${key}")


def _newest_key(item: dict) -> tuple:
    # ISO timestamps of one export share a format, so they sort as strings; the id breaks ties.
    stamp = item.get("updated_at") or item.get("created_at") or ""
    ident = item.get("id")
    return (str(stamp), ident if isinstance(ident, (int, float)) else -1)


def choose(task: dict, use_predictions: bool = False) -> tuple[Choice | None, str]:
    """Pick the result list to convert: a ground-truth annotation first, else the most recently updated annotation
    that is not cancelled and not empty; with ``use_predictions`` the newest prediction when no annotation is
    usable. Returns ``(choice, "")`` or ``(None, reason)``."""
    annotations = task.get("annotations") or []
    if not isinstance(annotations, list):
        raise TaskError("\"annotations\" is not a list")
    usable = [a for a in annotations
              if isinstance(a, dict) and not a.get("was_cancelled") and isinstance(a.get("result"), list)
              and a["result"]]
    if usable:
        return _annotation_choice(usable), ""
    reason = _why_no_annotation(annotations)
    if not use_predictions:
        return None, f"{reason}; pass --use-predictions to fall back to the model's prediction"
    return _prediction_choice(task.get("predictions") or [], reason)


def _annotation_choice(usable: list[dict]) -> Choice:
    """The ground-truth annotation, else the newest one, of annotations with results."""
    truth = [a for a in usable if a.get("ground_truth")]
    best = max(truth or usable, key=_newest_key)
    return Choice(result=best["result"], source="annotation", id=best.get("id"),
                  annotator=best.get("completed_by"), updated_at=str(best.get("updated_at") or ""),
                  ground_truth=bool(best.get("ground_truth")))


def _why_no_annotation(annotations: list) -> str:
    if not annotations:
        return "no annotations"
    cancelled = sum(1 for a in annotations if isinstance(a, dict) and a.get("was_cancelled"))
    if cancelled == len(annotations):
        return f"all {len(annotations)} annotation(s) cancelled (skipped in Label Studio)"
    return "no annotation with results"


def _prediction_choice(predictions: list, reason: str) -> tuple[Choice | None, str]:
    """The newest prediction with results; ``reason`` says why no annotation was usable."""
    whole = [p for p in predictions if isinstance(p, dict) and isinstance(p.get("result"), list) and p["result"]]
    if whole:
        best = max(whole, key=_newest_key)
        return Choice(result=best["result"], source="prediction", id=best.get("id"),
                      updated_at=str(best.get("updated_at") or best.get("created_at") or ""),
                      model_version=str(best.get("model_version") or "")), ""
    if predictions and all(isinstance(p, (int, str)) for p in predictions):
        return None, (f"{reason}, and the export holds prediction ids only: export the snapshot with whole "
                      "predictions (see docs/converter.md)")
    return None, f"{reason} and no prediction"
