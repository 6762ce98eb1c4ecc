"""Existing labels read back into songs, for ``ls-acestep import``: an ACE-Step dataset JSON, folders of
``<stem>.json`` sidecars (the original captioning pipeline's, with ``music_analysis.timeline``, or our own
converted ones), and folders of ``<stem>.lyrics.txt`` / ``<stem>.txt`` / ``<stem>.caption.txt`` / CSV files.

Every value is normalised as ``convert`` normalises what people type; a value that cannot be normalised is left
empty and reported, never guessed (a bare upper-case "AM" may be "A major" or a keyword match of "AM": left out).
One song at a time is read (a folder is listed first, then each song read when its turn comes); a file that cannot
be read is reported and its song skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from label_config.sidecar import Region, SongAnnotation, assemble_lyrics
from label_config.vocabulary import (
    normalize_bpm, normalize_keyscale, normalize_language, normalize_section_label, normalize_timesignature,
)

from .acestep_readers import CURRENT, INSTRUMENTAL, _text, has_words, load_csv_metadata, stem_path, vocal_status
from .json_text import finite_number

AUDIO = (".wav", ".mp3", ".flac", ".ogg", ".opus", ".m4a")  # what ACE-Step scans, plus the v2 trainer's .m4a
MAX_DATASET_BYTES = 512 << 20  # an ACE-Step dataset JSON holds ~1-5 KB a sample: 512 MB is >100,000 songs
MAX_SIDECAR_BYTES = 16 << 20  # a song's sidecar is a few KB; a bigger file is not a sidecar

# model_version of the prediction, one per kind of source, so the annotator sees where the labels came from
ACESTEP_DATASET = "import-acestep-dataset"
SIDECARS = "import-sidecars"  # the original captioning pipeline's <stem>.json
OWN_SIDECARS = "import-ls-acestep"  # folders written by ls-acestep convert
TEXT_FILES = "import-text-files"  # lyrics/caption text files and CSV only

_AMBIGUOUS_KEY = re.compile(r"^\s*[A-Ga-g]\s*[#b♯♭]?\s*M\s*$")  # "AM": major by convention, or a keyword match
_LIST_KEYS = ("instruments", "effects", "vocal_characteristics", "mix_notes")
_SEED_REGION_LISTS = (("instruments", "Instruments"), ("effects", "Effects"),
                      ("vocal_characteristics", "Vocals"), ("mix_notes", "Mix"), ("notable_moments", "Notable"))


class SourceError(Exception):
    """The import source as a whole cannot be read (not a folder, not a dataset JSON)."""


@dataclass
class Item:
    """One song to import: its audio file, the song built from the labels, where the labels came from, and every
    value that was changed or left out on the way. ``error`` set: the song is skipped for that reason."""

    audio: Path
    label: str  # the song as the user knows it: a path relative to the source
    song: SongAnnotation = field(default_factory=SongAnnotation)
    model_version: str = ""
    warnings: list[str] = field(default_factory=list)
    error: str = ""


def content_key(path: Path) -> str:
    """A short content hash of the audio (16 hex digits of SHA-256): the same song imported twice is found by it,
    whatever its path or upload name."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


# --- normalising, with a report of what was changed or dropped ----------------------------------------------------

def strict_keyscale(value: object) -> str | None:
    """``normalize_keyscale`` without the guess: a bare upper-case "M" ("AM", "C#M") is left out."""
    if not isinstance(value, str) or _AMBIGUOUS_KEY.match(value):
        return None
    return normalize_keyscale(value)


def _normalised(song: SongAnnotation, raw: dict, warnings: list[str]) -> None:
    """Set bpm, keyscale, timesignature and language on ``song`` from raw values, reporting each change/drop."""
    for name, attr, normalize in (("bpm", "bpm", normalize_bpm), ("keyscale", "keyscale", strict_keyscale),
                                  ("timesignature", "timesignature", normalize_timesignature),
                                  ("language", "language", normalize_language)):
        value = raw.get(name)
        if value in (None, "") or isinstance(value, bool):
            continue
        canonical = normalize(value)
        if canonical is None:
            warnings.append(f"{name} {value!r} cannot be normalised; left empty")
            continue
        setattr(song, attr, canonical)
        if str(canonical) != str(value).strip():
            warnings.append(f"{name} {value!r} imported as {canonical!r}")


def _strings(value: object) -> list[str]:
    """A list of non-empty strings from a list (other items dropped) or a comma-separated string."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        return [str(x).strip() for x in value if isinstance(x, (str, int, float)) and str(x).strip()]
    return []


_seconds = finite_number  # a JSON number of seconds; None for NaN, Infinity, a 400-digit integer, a string


def measure(audio: Path) -> float | None:
    """The audio length in seconds, None when unreadable (regions are then not clamped)."""
    try:
        import soundfile

        info = soundfile.info(str(audio))
        if info.frames > 0 and info.samplerate > 0:
            return info.frames / info.samplerate
    except Exception:  # libsndfile raises several exception types for unknown formats
        pass
    return None


# --- one folder song ---------------------------------------------------------------------------------------------

def _is_ours(sidecar: dict) -> bool:
    """A sidecar written by ``ls-acestep convert``: it carries provenance, or timeline regions with notes."""
    if isinstance(sidecar.get("provenance"), dict):
        return True
    timeline = (sidecar.get("music_analysis") or {}).get("timeline") if isinstance(sidecar.get("music_analysis"),
                                                                                      dict) else None
    return bool(timeline) and isinstance(timeline[0], dict) and "notes" in timeline[0]


def _region(entry: object, index: int, warnings: list[str]) -> Region | None:
    """A timeline entry (ours: notes/lyrics; the captioning pipeline's: segment_summary and lists) as a region."""
    if not isinstance(entry, dict):
        warnings.append(f"timeline entry #{index + 1} is not an object; left out")
        return None
    start, end = _seconds(entry.get("start_sec")), _seconds(entry.get("end_sec"))
    if start is None or end is None or end <= start:
        warnings.append(f"timeline entry #{index + 1} has no usable start_sec/end_sec; left out")
        return None
    raw_label = entry.get("section_label") or ""
    label = normalize_section_label(raw_label) if raw_label else ""
    if raw_label and not label:
        warnings.append(f"section label {raw_label!r} (at {start:.1f} s) matches no label; region left unlabelled")
    if "notes" in entry:
        notes = str(entry.get("notes") or "").strip()
    else:
        lines = [str(entry.get("segment_summary") or "").strip()]
        for key, title in _SEED_REGION_LISTS:
            items = _strings(entry.get(key))
            if items:
                lines.append(f"{title}: {', '.join(items)}")
        notes = "\n".join(line for line in lines if line)
    lyrics = str(entry.get("lyrics") or "").strip()
    return Region(start, end, label or "", notes, lyrics, id=f"imp{index + 1}")


def folder_item(audio: Path, root: Path, csv_metadata: dict) -> Item:
    """The song for one audio file of a folder and the files next to it."""
    item = Item(audio=audio, label=str(audio.relative_to(root)))
    base = stem_path(audio)
    sidecar: dict = {}
    json_path = Path(base + ".json")
    if json_path.is_file():
        try:
            if json_path.stat().st_size > MAX_SIDECAR_BYTES:
                raise ValueError(f"{json_path.stat().st_size} bytes, more than a sidecar holds")
            data = json.loads(json_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            item.error = f"{json_path.name} cannot be read ({type(exc).__name__}: {exc}); song skipped"
            return item
        if not isinstance(data, dict):
            item.error = f"{json_path.name} is a JSON {type(data).__name__}, not an object; song skipped"
            return item
        sidecar = data
    item.model_version = OWN_SIDECARS if _is_ours(sidecar) else SIDECARS if sidecar else TEXT_FILES
    song, warnings = item.song, item.warnings

    # caption, bpm, key in ACE-Step's own order: <stem>.caption.txt, then the JSON, then the CSV
    caption = _text(Path(base + ".caption.txt"))
    raw: dict = {}
    if isinstance(sidecar.get("caption"), str) and sidecar["caption"].strip():
        caption = sidecar["caption"].strip()
    for key in ("bpm", "keyscale", "timesignature"):
        if sidecar.get(key) not in (None, ""):
            raw[key] = sidecar[key]
    row = csv_metadata.get(audio.name) or {}
    if row.get("caption"):
        caption = row["caption"]
    if row.get("bpm"):
        raw["bpm"] = row["bpm"]
    if row.get("key"):
        raw["keyscale"] = row["key"]
    song.caption = caption
    status = vocal_status(sidecar)
    language = sidecar.get("vocal_language") or sidecar.get("language")
    if language:
        raw["language"] = language
    elif status is True:
        raw["language"] = "instrumental"
    _normalised(song, raw, warnings)

    analysis = sidecar.get("music_analysis") if isinstance(sidecar.get("music_analysis"), dict) else {}
    song.genres = _strings(analysis.get("genres")) or _strings(sidecar.get("genre") or sidecar.get("genres"))
    for key in _LIST_KEYS:
        setattr(song, key, _strings(analysis.get(key)))
    timeline = analysis.get("timeline") if isinstance(analysis.get("timeline"), list) else []
    song.regions = [r for r in (_region(e, i, warnings) for i, e in enumerate(timeline)) if r is not None]

    words = ""
    for suffix in CURRENT.lyrics_suffixes:  # the lyrics file ACE-Step trains on, before the JSON's copy
        words = _text(Path(base + suffix))
        if words:
            break
    if not has_words(words) and has_words(sidecar.get("lyrics")):
        words = sidecar["lyrics"].strip()
    if has_words(words) and _lines(words) != _lines(assemble_lyrics(song.regions)):
        song.lyrics = words  # regions that already carry exactly these lyrics keep them (no double copy)
    if has_words(words) and song.language == "instrumental":
        warnings.append("marked instrumental but has lyrics; language left empty")
        song.language = ""
    song.duration = measure(audio) or _seconds(sidecar.get("duration"))
    return item


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip().splitlines()]


def folder_audio(root: Path) -> list[Path]:
    """Audio files under ``root`` (recursively; hidden folders such as our state folder skipped), sorted."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(folder) / name for name in files
                     if not name.startswith(".") and os.path.splitext(name)[1].lower() in AUDIO)
    return sorted(found, key=str)


# --- an ACE-Step dataset JSON ------------------------------------------------------------------------------------

def dataset_item(sample: object, index: int, dataset: Path) -> Item:
    """The song of one sample of an ACE-Step dataset JSON (its own auto-label output or ours)."""
    if not isinstance(sample, dict):
        return Item(Path(), f"sample #{index + 1}", error="not a JSON object; skipped")
    ref = sample.get("audio_path")
    label = f"sample #{index + 1} ({sample.get('filename') or ref or 'no audio_path'})"
    if not isinstance(ref, str) or not ref.strip():
        return Item(Path(), label, error="no audio_path; skipped")
    path = Path(ref)
    candidates = [path] if path.is_absolute() else [dataset.parent / path, Path.cwd() / path]
    audio = next((p for p in candidates if p.is_file()), None)
    if audio is None:
        return Item(path, label, error=f"audio {ref} not found (relative paths are tried from the dataset's folder "
                                       "and the current folder); skipped")
    item = Item(audio=audio, label=label, model_version=ACESTEP_DATASET)
    song = item.song
    song.caption = sample["caption"].strip() if isinstance(sample.get("caption"), str) else ""
    song.genres = _strings(sample.get("genre"))
    words = next((sample[k].strip() for k in ("lyrics", "formatted_lyrics", "raw_lyrics")
                  if has_words(sample.get(k))), "")
    song.lyrics = words
    raw = {k: sample.get(k) for k in ("bpm", "keyscale", "timesignature")}
    language = sample.get("language")
    if language and language != "unknown":
        raw["language"] = language
    elif sample.get("is_instrumental") is True and not words:
        raw["language"] = "instrumental"
    _normalised(song, raw, item.warnings)
    song.duration = measure(audio) or _seconds(sample.get("duration"))
    return item


def is_dataset_json(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".json"


def read_source(source: Path) -> tuple[int, Iterator[Item], list[str]]:
    """(number of songs, the songs one at a time, notes about the source as a whole) for a folder or an ACE-Step
    dataset JSON; SourceError when the source as a whole is unusable."""
    source = Path(source)
    if source.is_dir():
        audio = folder_audio(source)
        if not audio:
            raise SourceError(f"{source} holds no audio files ({' '.join(AUDIO)})")
        csv_metadata, csv_warnings = load_csv_metadata(source, CURRENT)
        return len(audio), (_safely(folder_item, path, str(path.relative_to(source)), path, source, csv_metadata)
                            for path in audio), \
            [f"CSV {w}" for w in csv_warnings]
    if not is_dataset_json(source):
        raise SourceError(f"{source} is neither a folder nor an ACE-Step dataset .json file")
    size = source.stat().st_size
    if size > MAX_DATASET_BYTES:
        raise SourceError(f"{source} is {size} bytes, more than an ACE-Step dataset file holds "
                          f"({MAX_DATASET_BYTES} bytes at most)")
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise SourceError(f"{source} cannot be read as JSON ({type(exc).__name__}: {exc})") from None
    samples = data.get("samples") if isinstance(data, dict) else None
    if not isinstance(samples, list):
        raise SourceError(f"{source} is not an ACE-Step dataset file (no \"samples\" list)")
    return len(samples), (_safely(dataset_item, source, f"sample #{i + 1}", s, i, source)
                          for i, s in enumerate(samples)), []


def _safely(read, audio: Path, label: str, *args) -> Item:
    """``read(*args)``; a song whose files hold something unforeseen is reported and skipped, not the run."""
    try:
        return read(*args)
    except Exception as exc:  # untrusted files: one odd song must not end the import
        return Item(Path(audio), label, error=f"cannot be read ({type(exc).__name__}: {exc}); skipped")


__all__ = ["Item", "SourceError", "read_source", "content_key", "strict_keyscale", "INSTRUMENTAL"]
