"""What ACE-Step 1.5 holds for each song of a dataset folder, release by release: the reading rules of its folder
scan, re-implemented from the facts (docs/acestep.md lists them with the file names in ACE-Step's source), so that
``convert`` can write what every release reads right and ``validate`` can say what each one will hold.

Two releases read a folder differently:

- ``early`` (up to early February 2026, e.g. f30aee4): lyrics only from ``<stem>.txt``; caption, BPM and key only
  from ``*.csv`` files in the top folder (columns ``File``, ``BPM``, ``Key``, ``Caption``). No JSON at all.
- ``current`` (from mid February 2026, JSON sidecars with upstream PR #593; still so at the time of writing):
  lyrics from ``<stem>.lyrics.txt`` then ``<stem>.txt``; caption from ``<stem>.caption.txt``, then ``<stem>.json``
  (``caption``, ``bpm``, ``keyscale``, ``timesignature``, ``language``, each only when truthy), then the CSV files,
  which are applied last and so win.

Both: a non-empty lyrics file makes the song vocal; without one the lyrics are ``[Instrumental]`` and the song keeps
the dataset's "all instrumental" default (on). In ``current`` a truthy JSON ``language`` other than
``"instrumental"`` also clears the flag; nothing in a folder can set it. The duration is measured from the audio in
whole seconds (truncated).

The original captioning pipeline's own trainer reads ``<stem>.json`` too: ``read_pipeline``.
"""

from __future__ import annotations

import csv
import errno
import json
import math
import os
import stat
import subprocess
from dataclasses import dataclass, field, fields
from pathlib import Path

from label_config.vocabulary import normalize_bpm, normalize_keyscale, normalize_language, normalize_timesignature

SCANNED = (".wav", ".mp3", ".flac", ".ogg", ".opus")  # both releases' SUPPORTED_AUDIO_FORMATS
INSTRUMENTAL = "[Instrumental]"  # what ACE-Step trains a song without lyrics on

# ACE-Step's constants.VALID_LANGUAGES (the codes its lyric prompt expects; "unknown" when not determined).
ACESTEP_LANGUAGES = (
    "ar", "az", "bg", "bn", "ca", "cs", "da", "de", "el", "en", "es", "fa", "fi", "fr", "he", "hi", "hr", "ht",
    "hu", "id", "is", "it", "ja", "ko", "la", "lt", "ms", "ne", "nl", "no", "pa", "pl", "pt", "ro", "ru", "sa",
    "sk", "sr", "sv", "sw", "ta", "te", "th", "tl", "tr", "uk", "ur", "vi", "yue", "zh", "unknown",
)
# ACE-Step's constants.VALID_KEYSCALES: 7 notes x (natural, #, b, ♯, ♭) x (major, minor) = 70 spellings.
ACESTEP_KEYSCALES = frozenset(f"{note}{acc} {mode}" for note in "ABCDEFG" for acc in ("", "#", "b", "♯", "♭")
                              for mode in ("major", "minor"))
ACESTEP_TIME_SIGNATURES = ("2", "3", "4", "6")  # constants.VALID_TIME_SIGNATURES, as the JSON spells them
BPM_MIN, BPM_MAX = 30, 300  # constants.BPM_MIN / BPM_MAX: the model's tempo range
DURATION_MIN, DURATION_MAX = 10, 600  # constants.DURATION_MIN / MAX, seconds: what the UI accepts
MAX_TRAIN_SECONDS = 240  # preprocess_to_tensors(max_duration=240.0): audio past this is cut before encoding
MAX_TEXT_CHARS = 16 << 20  # per sidecar, caption or lyrics file read here: they hold a few KB; a larger file
# (or a FIFO, or a link to /dev/zero) is not read into memory but taken as unreadable
MAX_DATASET_CHARS = 512 << 20  # an ACE-Step dataset JSON: ~1-5 KB a sample, so >100,000 songs

FIELDS = ("caption", "bpm", "keyscale", "timesignature", "language", "lyrics", "is_instrumental", "duration")


@dataclass(frozen=True)
class Release:
    """One release's folder-reading rules."""

    name: str
    title: str
    lyrics_suffixes: tuple[str, ...]  # tried in order; the first non-empty file wins
    reads_caption_file: bool
    reads_json: bool
    csv_encoding: str  # "utf-8" leaves a BOM in the first header, which then hides the File column
    readable: frozenset  # the FIELDS some file of a folder can set in this release

    def __str__(self) -> str:
        return self.name


EARLY = Release("early", "ACE-Step 1.5 up to early February 2026 (folder: <stem>.txt and CSV only)", (".txt",),
                False, False, "utf-8",
                frozenset({"caption", "bpm", "keyscale", "lyrics", "is_instrumental", "duration"}))
CURRENT = Release("current", "ACE-Step 1.5 from mid February 2026 (folder: JSON sidecars, .lyrics.txt)",
                  (".lyrics.txt", ".txt"), True, True, "utf-8-sig", frozenset(FIELDS))
RELEASES = {r.name: r for r in (CURRENT, EARLY)}


@dataclass
class Held:
    """What one release holds for one song after scanning a folder (its AudioSample fields)."""

    caption: str = ""
    bpm: object = None
    keyscale: object = ""
    timesignature: object = ""
    language: object = "unknown"
    lyrics: str = INSTRUMENTAL
    is_instrumental: bool = True
    duration: int = 0  # whole seconds, truncated
    labeled: bool = False  # a caption came from a file: unlabeled samples are skipped at preprocessing
    sources: dict = field(default_factory=dict)  # field -> the file name it came from

    def values(self) -> dict:
        return {name: getattr(self, name) for name in FIELDS}


# --- files -------------------------------------------------------------------------------------------------------

class TooLargeError(ValueError):
    """A file holds more than the limit for its kind; it is not read into memory."""


def open_regular(path: Path, encoding: str = "utf-8", newline: str | None = None):
    """A text file opened for reading; OSError (EINVAL) for a FIFO or device, whose open or read would never end
    (O_NONBLOCK: opening a FIFO does not wait for a writer)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file; not read", str(path))
    except BaseException:
        os.close(fd)
        raise
    return open(fd, encoding=encoding, newline=newline, closefd=True)


def read_text(path: Path, limit: int = MAX_TEXT_CHARS) -> str:
    """A UTF-8 text file whole, at most ``limit`` characters. Raises OSError (also for a FIFO or device),
    UnicodeDecodeError, or TooLargeError (a ValueError) for a longer file."""
    with open_regular(path) as handle:
        text = handle.read(limit + 1)
    if len(text) > limit:
        raise TooLargeError(f"{Path(path).name} holds more than {limit} characters; not read")
    return text


def _text(path: Path) -> str:
    """A text file's stripped content, "" when missing, empty or unreadable (ACE-Step treats all three alike;
    a file over MAX_TEXT_CHARS counts as unreadable here)."""
    try:
        return read_text(path).strip()
    except (OSError, ValueError):  # UnicodeDecodeError and TooLargeError are ValueErrors
        return ""


def read_json_object(path: Path) -> dict:
    """``<stem>.json`` as ACE-Step loads it: a dict, or nothing for a missing, broken, too large (MAX_TEXT_CHARS)
    or non-object file."""
    try:
        data = json.loads(read_text(path))
    except (OSError, ValueError, RecursionError):  # RecursionError: nested deeper than Python's JSON reader goes
        return {}
    return data if isinstance(data, dict) else {}


def stem_path(audio: Path) -> str:
    """The audio path without its extension: ACE-Step appends ``.txt``, ``.json`` ... to this."""
    return os.path.splitext(str(audio))[0]


def load_csv_metadata(folder: Path, release: Release = CURRENT) -> tuple[dict[str, dict], list[str]]:
    """The CSV rows ACE-Step applies, by audio file name (with extension, no folder), and what went wrong.

    Only ``*.csv`` files directly in ``folder`` count; each is sniffed for ``,`` ``;`` or tab; a file without a
    ``File`` column (any case) is ignored; a row's BPM is ``int(float(text))`` and dropped when not a number; empty
    cells count as missing. A file that fails part-way keeps the rows read before the failure (ACE-Step fills its
    table row by row inside one try). Files are taken in name order (ACE-Step: directory order), later ones win."""
    metadata: dict[str, dict] = {}
    warnings: list[str] = []
    try:
        names = sorted(n for n in os.listdir(folder) if n.lower().endswith(".csv"))
    except OSError:
        return metadata, warnings
    for name in names:
        path = Path(folder) / name
        try:
            with open_regular(path, release.csv_encoding, newline="") as handle:
                sample = handle.read(4096)
                handle.seek(0)
                try:
                    reader = csv.DictReader(handle, dialect=csv.Sniffer().sniff(sample, delimiters=",;\t"))
                except csv.Error:
                    reader = csv.DictReader(handle)
                if reader.fieldnames is None:
                    continue
                headers = {h.lower(): h for h in reader.fieldnames if isinstance(h, str)}
                if "file" not in headers:
                    warnings.append(f"{name}: no File column ({', '.join(reader.fieldnames)}); ignored")
                    continue
                for row in reader:
                    entry = _csv_entry(row, headers)
                    filename = (row.get(headers["file"]) or "").strip()
                    if filename and entry:
                        metadata[filename] = entry
        except Exception as exc:  # what ACE-Step catches: the rest of that file is lost
            warnings.append(f"{name}: {type(exc).__name__}: {exc}; the rows after this point are not read")
    return metadata, warnings


def _csv_entry(row: dict, headers: dict) -> dict:
    entry: dict = {}
    bpm = row.get(headers.get("bpm")) if "bpm" in headers else None
    if bpm:
        try:
            entry["bpm"] = int(float(bpm.strip()))  # OverflowError ("inf") is not caught: it ends the file
        except (ValueError, TypeError):
            pass
    for column, key in (("key", "key"), ("caption", "caption")):
        value = row.get(headers[column]) if column in headers else None
        if value and value.strip():
            entry[key] = value.strip()
    return entry


def audio_seconds(path: Path) -> int:
    """The audio length in whole seconds, truncated, as ACE-Step measures it; 0 when unreadable (so does it)."""
    try:
        import soundfile

        info = soundfile.info(str(path))
        if info.frames > 0 and info.samplerate > 0:
            return int(info.frames / info.samplerate)
    except Exception:  # libsndfile reports unknown formats through several exception types
        pass
    try:
        out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                              str(path)], capture_output=True, text=True, timeout=60, check=False)
        return max(int(float(out.stdout.strip().splitlines()[0])), 0)
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return 0


# --- the readers -------------------------------------------------------------------------------------------------

def read_sample(audio: Path, release: Release, csv_metadata: dict | None = None, duration: int = 0,
                all_instrumental: bool = True) -> Held:
    """What ``release`` holds for one audio file; ``duration`` is its measured length in whole seconds."""
    base = stem_path(audio)
    held = Held(is_instrumental=all_instrumental, duration=duration)
    for suffix in release.lyrics_suffixes:
        words = _text(Path(base + suffix))
        if words:
            held.lyrics, held.is_instrumental = words, False
            held.sources["lyrics"] = held.sources["is_instrumental"] = Path(base + suffix).name
            break
    if release.reads_caption_file:
        caption = _text(Path(base + ".caption.txt"))
        if caption:
            held.caption, held.labeled = caption, True
            held.sources["caption"] = Path(base + ".caption.txt").name
    if release.reads_json:
        data = read_json_object(Path(base + ".json"))
        name = Path(base + ".json").name
        for key in ("caption", "bpm", "keyscale", "timesignature", "language"):
            if data.get(key):  # falsy values (0, "", null) count as missing
                setattr(held, key, data[key])
                held.sources[key] = name
        if data.get("caption"):
            held.labeled = True
        if data.get("language") and data["language"] != "instrumental":
            held.is_instrumental = False
            held.sources["is_instrumental"] = name
    meta = (csv_metadata or {}).get(Path(audio).name)
    if meta:
        for key, attr in (("bpm", "bpm"), ("key", "keyscale"), ("caption", "caption")):
            if meta.get(key):
                setattr(held, attr, meta[key])
                held.sources[attr] = "CSV"
        if meta.get("caption"):
            held.labeled = True
    return held


def audio_files(folder: Path) -> list[Path]:
    """The audio files the folder scan finds: recursively, by extension (any case), sorted by path."""
    found = []
    for root, _dirs, files in os.walk(folder):
        for name in files:
            if os.path.splitext(name)[1].lower() in SCANNED:
                found.append(Path(root) / name)
    return sorted(found, key=str)


def scan_folder(folder: Path, release: Release, measure=audio_seconds) -> tuple[dict[Path, Held], list[str]]:
    """Every song ``release`` finds in ``folder`` and what it holds for each, plus the CSV warnings."""
    csv_metadata, warnings = load_csv_metadata(folder, release)
    songs = {}
    for audio in audio_files(folder):
        songs[audio] = read_sample(audio, release, csv_metadata, measure(audio))
    return songs, warnings


def read_pipeline(audio: Path) -> dict | None:
    """What the original captioning pipeline's trainer (``lora_train.py``) takes from ``<stem>.json``; None without
    a readable JSON object. Only caption and lyrics condition its training."""
    path = Path(stem_path(audio) + ".json")
    if not path.is_file():
        return None
    data = read_json_object(path)
    return {"caption": data.get("caption") or "", "lyrics": data.get("lyrics") or "", "bpm": data.get("bpm"),
            "keyscale": data.get("keyscale") or "", "timesignature": data.get("timesignature") or "4/4",
            "vocal_language": data.get("vocal_language") or "en"}


# --- what the sidecar means ------------------------------------------------------------------------------------

def has_words(lyrics: object) -> bool:
    """Whether lyrics hold words (not empty, not just ``[Instrumental]``)."""
    return isinstance(lyrics, str) and lyrics.strip() not in ("", INSTRUMENTAL)


def vocal_status(sidecar: dict) -> bool | None:
    """``True`` instrumental, ``False`` vocal, ``None`` unknown, from a sidecar (ours or another tool's):
    ``is_instrumental`` when it is a bool, else words in ``lyrics`` or a language code mean vocal and the language
    ``instrumental`` means instrumental."""
    flag = sidecar.get("is_instrumental")
    if isinstance(flag, bool):
        return flag
    if has_words(sidecar.get("lyrics")):
        return False
    for key in ("language", "vocal_language"):
        code = normalize_language(sidecar.get(key)) if sidecar.get(key) else None
        if code == "instrumental":
            return True
        if code and code != "unknown":
            return False
    return None


def intended(sidecar: dict) -> dict:
    """What the sidecar's author meant ACE-Step to hold, for the FIELDS the sidecar states (others are left out):
    values normalised the way ``convert`` does ("Am" -> "A minor", "4/4" -> "4", "English" -> "en"); a value that
    cannot be normalised is kept as written."""
    want: dict = {}
    if isinstance(sidecar.get("caption"), str):
        want["caption"] = sidecar["caption"]
    if sidecar.get("bpm") not in (None, ""):
        want["bpm"] = normalize_bpm(sidecar["bpm"]) or sidecar["bpm"]
    if sidecar.get("keyscale"):
        want["keyscale"] = normalize_keyscale(sidecar["keyscale"]) or sidecar["keyscale"]
    if sidecar.get("timesignature"):
        want["timesignature"] = normalize_timesignature(sidecar["timesignature"]) or sidecar["timesignature"]
    status = vocal_status(sidecar)
    language = None
    for key in ("language", "vocal_language"):
        if sidecar.get(key):
            language = normalize_language(sidecar[key]) or sidecar[key]
            break
    if language is not None:
        want["language"] = "unknown" if language == "instrumental" else language
    elif status is True:
        want["language"] = "unknown"
    if "lyrics" in sidecar and isinstance(sidecar["lyrics"], str):
        want["lyrics"] = sidecar["lyrics"].strip() if has_words(sidecar["lyrics"]) else INSTRUMENTAL
    elif status is True:
        want["lyrics"] = INSTRUMENTAL
    if status is not None:
        want["is_instrumental"] = status
    duration = sidecar.get("duration")
    if isinstance(duration, int) and not isinstance(duration, bool) or \
            isinstance(duration, float) and math.isfinite(duration):
        want["duration"] = int(duration)  # NaN and Infinity (Python's JSON reader takes both) state no length
    return want


def _key(value: object) -> object:
    """A key ACE-Step reads right, as our canonical spelling ("A# major" and "B♭ major" both -> "Bb major");
    anything else as it is (so "Am" never equals "A minor")."""
    if isinstance(value, str) and value in ACESTEP_KEYSCALES:
        return normalize_keyscale(value.replace("♯", "#").replace("♭", "b"))
    return value


def same(name: str, held: object, wanted: object) -> bool:
    """Whether a held value is what was meant, field by field (lyrics ignore line-end style and outer space; the
    language "instrumental" counts as ACE-Step's "unknown"; durations may differ by the 1 s of truncation)."""
    if name == "keyscale":
        return _key(held) == _key(wanted)
    if name == "bpm":
        return isinstance(held, int) and not isinstance(held, bool) and held == wanted
    if name == "timesignature":
        return isinstance(held, (str, int)) and not isinstance(held, bool) and str(held) == str(wanted)
    if name == "language":
        return ("unknown" if held == "instrumental" else held) == wanted
    if name == "lyrics":
        return _lines(held) == _lines(wanted)
    if name == "duration":
        return abs(int(held) - int(wanted)) <= 1 if held else False
    return held == wanted


def _lines(text: object) -> list[str]:
    return [line.rstrip() for line in str(text).strip().splitlines()]


def differences(held: Held, want: dict) -> list[tuple[str, object, object]]:
    """(field, held, meant) for every stated field the reader holds differently."""
    return [(name, getattr(held, name), want[name]) for name in FIELDS
            if name in want and not same(name, getattr(held, name), want[name])]


def first_line(text: str) -> str:
    """The first non-empty line of lyrics, for a one-line summary."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def summary(values: dict, names: tuple[str, ...] = FIELDS) -> str:
    """A one-line account of held values: caption shortened, lyrics as their first line."""
    parts = []
    for name in names:
        value = values[name]
        if name == "caption":
            text = value if isinstance(value, str) else repr(value)
            parts.append(f"caption {_short(text)!r}" if text else "caption (none: unlabeled)")
        elif name == "lyrics":
            parts.append(f"lyrics {_short(first_line(value), 40)!r}")
        elif name == "is_instrumental":
            parts.append("instrumental" if value else "vocal")
        elif name == "duration":
            parts.append(f"{value} s" if value else "duration 0 s (unreadable)")
        elif name == "bpm":
            parts.append(f"bpm {value}" if value is not None else "bpm N/A")
        else:
            parts.append(f"{name} {value if value not in ('', None) else '(none)'}")
    return "; ".join(parts)


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


HELD_FIELDS = tuple(f.name for f in fields(Held))
