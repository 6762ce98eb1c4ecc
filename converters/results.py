"""Step 2 from export to sidecar: one task's result list becomes a ``SongAnnotation``.

Region labels and per-region texts are paired by result ``id`` (Label Studio gives a region's label and its
per-region TextAreas the same id). Song-level controls are read by the names in ``label_config.names``; what
people type is normalised with ``label_config.vocabulary`` and every change or drop is returned as a warning.
Times are in seconds.
"""

from __future__ import annotations

import math

from dataclasses import dataclass, field

from label_config import names
from label_config.sidecar import Region, SongAnnotation
from label_config.vocabulary import (
    BPM_MAX, BPM_MIN, normalize_bpm, normalize_keyscale, normalize_language, normalize_timesignature,
)

_LIST_FIELDS = {  # control name -> SongAnnotation attribute
    names.GENRE: "genres",
    names.INSTRUMENTS: "instruments",
    names.EFFECTS: "effects",
    names.VOCAL_CHARACTERISTICS: "vocal_characteristics",
    names.MIX_NOTES: "mix_notes",
}

# What each known control is, looked up once per result item (exports hold dozens of items per task).
_SECTION, _REGION_TEXT, _SONG_FIELD = "section", "region text", "song field"
_CONTROL_KINDS = {names.SECTION: _SECTION, **dict.fromkeys(names.PER_REGION_TEXTS, _REGION_TEXT),
                  **dict.fromkeys((*names.SONG_TEXTS, *names.SONG_CHOICES, names.BPM), _SONG_FIELD)}


@dataclass
class Converted:
    """A song read from a result list, and what was changed or dropped on the way."""

    song: SongAnnotation
    warnings: list[str] = field(default_factory=list)


def value_text(value: dict) -> str:
    """The text of a result value: TextArea ``text`` lines, Choices ``choices``, or a Number, joined by newlines."""
    for key in ("text", "choices"):
        items = value.get(key)
        if isinstance(items, list):
            try:
                return "\n".join(items)  # the usual case: all strings
            except TypeError:
                return "\n".join(str(x) for x in items if x is not None)
        if isinstance(items, str):
            return items
    number = value.get("number")
    return "" if number is None else str(number)


def split_entries(text: str) -> list[str]:
    """List-like TextAreas hold one entry per line; blank lines and bullet marks are dropped."""
    entries = []
    for line in text.splitlines():
        line = line.strip().lstrip("-*•").strip()
        if line:
            entries.append(line)
    return entries


def _seconds(value: object) -> float | None:
    """A time in seconds from a JSON value; None for anything that is not a finite number."""
    if type(value) is float:  # the common case, kept cheap: exports hold tens of times per task
        return value if value == value else None
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer of 400 digits
        return None
    return number if math.isfinite(number) else None  # NaN and infinity are no time


def export_duration(result: list, task_data: dict | None = None) -> float | None:
    """The song length (seconds) the export knows of, for ``--audio none``: ``data.duration`` when the task
    carries it, else the ``original_length`` Label Studio stores with audio regions, else None."""
    if isinstance(task_data, dict):
        seconds = _seconds(task_data.get("duration"))
        if seconds and seconds > 0:
            return seconds
    lengths = [_seconds(item["original_length"]) for item in result
               if isinstance(item, dict) and "original_length" in item]
    lengths = [x for x in lengths if x and x > 0]
    return max(lengths) if lengths else None


def song_from_results(result: list, duration: float | None = None) -> Converted:
    """Turn one annotation's (or prediction's) result list into a SongAnnotation. ``duration`` (seconds) clamps
    region times into [0, duration] and is stored on the song."""
    reading = _Reading()
    for index, item in enumerate(result):
        reading.item(index, item)
    warnings = reading.warnings
    song = SongAnnotation(duration=duration)
    song.regions = sorted(reading.regions_with_texts(), key=lambda r: (r.start_sec, r.end_sec))
    _clamp(song.regions, duration, warnings)
    song.regions = _without_empty(song.regions, warnings)
    _song_fields(song, {k: "\n".join(v) for k, v in reading.song_texts.items()}, warnings)
    for control in sorted(reading.ignored):
        warnings.append(f"control {control!r} is not part of the label config; ignored")
    return Converted(song, warnings)


class _Reading:
    """What one result list says, item by item: regions by result id, per-region texts, song-level texts, and
    the warnings on the way. One method per kind of control."""

    def __init__(self):
        self.warnings: list[str] = []
        self.regions: dict[str, Region] = {}
        self.texts: dict[str, dict[str, str]] = {}  # region id -> control -> text
        self.text_times: dict[str, tuple] = {}  # region id -> (start, end) of its first text
        self.song_texts: dict[str, list[str]] = {}
        self.ignored: set[str] = set()
        self.untimed: set[str] = set()  # region keys whose label result has no usable start or end

    def item(self, index: int, item: object) -> None:
        if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
            self.warnings.append(f"result #{index} is not a Label Studio result object; ignored")
            return
        control, value, ident = item.get("from_name"), item["value"], item.get("id")
        rid = ident if type(ident) is str else str(ident or "")
        kind = _CONTROL_KINDS.get(control) if isinstance(control, str) else None
        if kind is _SECTION:
            self.section(index, rid, value)
        elif kind is _REGION_TEXT:
            self.region_text(control, rid, value)
        elif kind is _SONG_FIELD:
            self.song_texts.setdefault(control, []).append(value_text(value).strip())
        else:
            self.ignored.add(str(control))

    def section(self, index: int, rid: str, value: dict) -> None:
        """A section label on the timeline: the region's times and label."""
        raw = value.get("labels") or []
        if isinstance(raw, str):  # a list of one, written by hand or by another tool: not a list of characters
            self.warnings.append(f"region {rid}: labels is the string {raw!r}, not a list; taken whole")
            raw = [raw]
        elif not isinstance(raw, list):
            self.warnings.append(f"region {rid}: labels is a {type(raw).__name__}, not a list; ignored")
            raw = []
        labels = [label for label in (str(x).strip() for x in raw) if label]
        if len(labels) > 1:
            self.warnings.append(f"region {rid} has several labels {labels}; kept {labels[0]!r}")
        key = rid or f"#{index}"
        region = self.regions.get(key)
        if region is None:
            region = self.regions[key] = Region(0.0, 0.0, id=rid)
        start, end = _seconds(value.get("start")), _seconds(value.get("end"))
        if start is None or end is None:  # never 0.0 in its place: that would invent a region from the song start
            self.warnings.append(f"region {rid or key}: start {value.get('start')!r:.40} or end "
                                 f"{value.get('end')!r:.40} is not a time; the region and its texts are dropped")
            self.untimed.add(key)
        region.start_sec, region.end_sec = start or 0.0, end or 0.0
        region.section_label = labels[0] if labels else ""

    def region_text(self, control: str, rid: str, value: dict) -> None:
        """A per-region TextArea (notes, lyrics), paired with its region by the result id."""
        if not rid:
            self.warnings.append(f"{control} text without a region id; ignored (export as JSON, not JSON_MIN)")
            return
        by_control = self.texts.get(rid)
        if by_control is None:  # the first text of this region gives its times
            by_control = self.texts[rid] = {}
            self.text_times[rid] = (value.get("start"), value.get("end"))
        by_control[control] = value_text(value).strip()

    def regions_with_texts(self):
        """The regions with their notes and lyrics; a text whose label was removed keeps its own times."""
        for rid, by_control in self.texts.items():
            region = self.regions.get(rid)
            if region is None:
                start, end = (_seconds(x) for x in self.text_times[rid])
                if start is None or end is None:
                    self.warnings.append(f"region {rid}: text without times and without a section label; dropped")
                    continue
                region = self.regions[rid] = Region(start, end, id=rid)
                self.warnings.append(f"region {rid} has text but no section label")
            region.notes = by_control.get(names.SEGMENT_NOTES, "")
            region.lyrics = by_control.get(names.SEGMENT_LYRICS, "")
        return [region for key, region in self.regions.items() if key not in self.untimed]


def _clamp(regions: list[Region], duration: float | None, warnings: list[str]) -> None:
    """Order each region's times and clamp them into [0, duration] seconds."""
    for region in regions:
        start, end = sorted((region.start_sec, region.end_sec))
        high = duration if duration is not None else max(end, 0.0)
        new_start, new_end = min(max(start, 0.0), high), min(max(end, 0.0), high)
        if (new_start, new_end) != (region.start_sec, region.end_sec):
            if (start, end) != (region.start_sec, region.end_sec):
                warnings.append(f"region {region.id}: start after end; swapped")
            before, after = f"{start:.3f}-{end:.3f}", f"{new_start:.3f}-{new_end:.3f}"
            if before != after:  # a clamp below the millisecond the sidecar keeps changes nothing worth saying
                warnings.append(f"region {region.id}: {before} s clamped to {after} s (song length {high:.3f} s)")
        region.start_sec, region.end_sec = new_start, new_end


def _without_empty(regions: list[Region], warnings: list[str]) -> list[Region]:
    """The regions that last at least a millisecond (the sidecar's precision); the others are dropped with a
    warning: a region of no length holds nothing to train on, and its text would sit at one instant."""
    kept = []
    for region in regions:
        if round(region.end_sec, 3) > round(region.start_sec, 3):
            kept.append(region)
        else:
            what = f" {region.section_label!r}" if region.section_label else ""
            warnings.append(f"region {region.id}{what}: zero length (at {region.start_sec:.3f} s); dropped")
    return kept


def _song_fields(song: SongAnnotation, values: dict[str, str], warnings: list[str]) -> None:
    """Fill the song-level fields from control texts, normalising what ACE-Step reads."""
    song.caption = values.get(names.CAPTION, "")
    song.lyrics = values.get(names.LYRICS, "")
    for control, attr in _LIST_FIELDS.items():
        setattr(song, attr, split_entries(values.get(control, "")))

    raw = values.get(names.BPM, "")
    if raw:
        song.bpm = normalize_bpm(raw)
        if song.bpm is None:
            warnings.append(f"bpm {raw!r} is outside {BPM_MIN}-{BPM_MAX} or not a number; dropped")
    for control, attr, normalize in (
        (names.KEYSCALE, "keyscale", normalize_keyscale),
        (names.TIMESIGNATURE, "timesignature", normalize_timesignature),
        (names.VOCAL_LANGUAGE, "language", normalize_language),
    ):
        raw = values.get(control, "").strip()
        if not raw:
            continue
        canonical = normalize(raw)
        if canonical is None:
            warnings.append(f"{control} {raw!r} not understood; dropped")
        else:
            setattr(song, attr, canonical)
            if canonical != raw:
                warnings.append(f"{control} {raw!r} written as {canonical!r}")
