"""Step 3 from export to sidecar: file names (stems), atomic writes, audio placement and the state that makes
re-runs idempotent and protects files edited by hand.

State lives in ``DIR/.ls-acestep/state.jsonl``: one line per written task (its stem, audio reference and a hash
of each text file as we wrote it), appended as tasks are written so that an interrupted run loses nothing, and
compacted at the end of a run. A sidecar or lyrics file whose content no longer matches the recorded hash was
edited by someone else and is only overwritten with ``--force``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, unquote, urlsplit

from ls_acestep.files import atomic_write

STATE_DIR = ".ls-acestep"
STATE_FILE = "state.jsonl"
DATASET_DIR = "dataset"
MANIFEST = "annotations_manifest.jsonl"
INDEX = "annotations_index.json"
ACESTEP_DATASET = "acestep_dataset.json"
REPORT = "conversion_report.json"
OUTPUT_FILES = (MANIFEST, INDEX, ACESTEP_DATASET, REPORT)

_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-(?=.)")  # Label Studio's upload prefix: 8 hex characters and a dash
_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
_MAX_STEM_BYTES = 180  # leaves room for "-<task id>.lyrics.txt" under the usual 255-byte name limit


# --- stems -----------------------------------------------------------------------------------------------------

def ref_file_name(ref: str) -> str:
    """The percent-decoded file name a reference points at (``?d=`` path for local files)."""
    parts = urlsplit(ref)
    if "local-files" in parts.path and "d=" in parts.query:
        path = (parse_qs(parts.query).get("d") or [""])[-1]
    else:
        path = unquote(parts.path if parts.scheme or ref.startswith("/") else ref)
    return PurePosixPath(path.replace("\\", "/")).name


def stem_and_ext(ref: str) -> tuple[str, str]:
    """(stem, extension) for a task's outputs: the audio file name without Label Studio's upload prefix,
    unicode kept (NFC), characters that are unsafe in file names replaced by "_". The extension is lowercased."""
    name = unicodedata.normalize("NFC", ref_file_name(ref))
    stem, ext = os.path.splitext(name)
    if not stem and ext:  # ".wav" alone
        stem, ext = ext, ""
    stem = _UPLOAD_PREFIX.sub("", stem, count=1)
    stem = _UNSAFE.sub("_", stem).strip(" .")
    while len(stem.encode()) > _MAX_STEM_BYTES:
        stem = stem[:-1]
    return stem or "audio", ext.lower()


class StemBook:
    """Assigns each task a distinct, deterministic stem. A task keeps the stem a previous run gave it; a new name
    clash is resolved by suffixing the later task's id ("song", "song-42")."""

    def __init__(self, known: dict[int, str] | None = None):
        self.by_task: dict[int, str] = dict(known or {})
        self.owner: dict[str, int] = {s.casefold(): t for t, s in self.by_task.items()}

    def assign(self, task_id: int, stem: str) -> str:
        previous = self.by_task.get(task_id)
        if previous and (previous == stem or previous.startswith(f"{stem}-")):
            return previous
        candidate, n = stem, 1
        while self.owner.get(candidate.casefold(), task_id) != task_id:
            candidate = f"{stem}-{task_id}" if n == 1 else f"{stem}-{task_id}-{n}"
            n += 1
        if previous:
            self.owner.pop(previous.casefold(), None)
        self.by_task[task_id] = candidate
        self.owner[candidate.casefold()] = task_id
        return candidate


# --- content hashes and JSON text ----------------------------------------------------------------------------

def content_hash(data: bytes) -> str:
    """A short content hash (16 hex digits of SHA-256) for change detection."""
    return hashlib.sha256(data).hexdigest()[:16]


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


def _compact(value) -> str:
    """Compact JSON. Scalars and lists (most sidecar values) skip the encoder's set-up, which costs more than
    encoding them; the text is the same as the encoder's."""
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
        return "[" + ", ".join([_compact(item) for item in value]) + "]"
    return _encode(value)


def pretty_json(value, level: int = 0, width: float = 100) -> str:
    """Indented JSON (two spaces a level) in which any container that fits in ``width`` characters stays on one
    line. Built from the C encoder's compact output, so it is several times faster than ``indent=2``."""
    compact = _compact(value)
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
                    rows = ",\n".join(f"      {_compact(region)}" for region in item)
                    inner.append(f'    "timeline": [\n{rows}\n    ]')
                else:
                    inner.append(f"    {_string(sub)}: {pretty_json(item, 2)}")
            lines.append(f'  "music_analysis": {{\n' + ",\n".join(inner) + "\n  }")
        else:
            lines.append(f"  {_string(key)}: {pretty_json(value, 1)}")
    return "{\n" + ",\n".join(lines) + "\n}"


def sidecar_bytes(sidecar: dict) -> bytes:
    """The sidecar as written: readable JSON (see sidecar_json), unicode kept, newline at the end."""
    return (sidecar_json(sidecar) + "\n").encode()


@dataclass
class TextPlan:
    """What to do with one text output: "new", "update", "same" (already identical) or "kept" (edited by hand)."""

    path: Path
    data: bytes
    action: str
    disk_hash: str = ""

    @property
    def new_hash(self) -> str:
        return content_hash(self.data)


def plan_text(path: Path, data: bytes, recorded_hash: str, force: bool, known_absent: bool = False) -> TextPlan:
    """Decide whether ``path`` may get ``data``: it may when absent, when it still holds what we last wrote
    (``recorded_hash``) or with ``force``; a file changed since then (or never written by us) is kept.
    ``known_absent`` skips the look-up (the folder was empty when the run began)."""
    if known_absent:
        return TextPlan(path, data, "new")
    try:
        current = path.read_bytes()
    except FileNotFoundError:
        return TextPlan(path, data, "new")
    disk = content_hash(current)
    if current == data:
        return TextPlan(path, data, "same", disk)
    if force or (recorded_hash and disk == recorded_hash):
        return TextPlan(path, data, "update", disk)
    return TextPlan(path, data, "kept", disk)


# --- state ---------------------------------------------------------------------------------------------------

@dataclass(slots=True)
class TaskState:
    """What the last run wrote for one task (compact: 100,000 of these fit in a few tens of MB)."""

    stem: str
    ref: str
    sidecar_hash: str
    lyrics_hash: str
    audio_name: str = ""  # file name of the audio in dataset/ ("" with --audio none)


class State:
    """The per-folder journal of written tasks (see the module docstring)."""

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / STATE_DIR / STATE_FILE
        self.tasks: dict[int, TaskState] = {}
        self._journal = None

    def load(self) -> list[str]:
        """Read the journal (last line per task wins); returns warnings for unreadable lines."""
        warnings = []
        if not self.path.exists():
            return warnings
        with open(self.path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                try:
                    row = json.loads(line)
                    self.tasks[int(row["task"])] = TaskState(row["stem"], row.get("ref", ""),
                                                             row.get("sidecar", ""), row.get("lyrics", ""),
                                                             row.get("audio", ""))
                except (ValueError, KeyError, TypeError):
                    warnings.append(f"{self.path}:{number}: unreadable state line ignored")
        return warnings

    def record(self, task_id: int, entry: TaskState) -> None:
        """Remember a written task and append it to the journal at once (flushed, so a crash keeps it)."""
        self.tasks[task_id] = entry
        if self._journal is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._journal = open(self.path, "a", encoding="utf-8")
        self._journal.write(_state_line(task_id, entry))
        self._journal.flush()

    def compact(self) -> None:
        """Rewrite the journal with one line per task."""
        self.close()
        if not self.tasks:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(_state_line(t, e) for t, e in sorted(self.tasks.items()))
        atomic_write(self.path, text.encode())

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None


def _state_line(task_id: int, e: TaskState) -> str:
    return _compact({"task": task_id, "stem": e.stem, "ref": e.ref, "sidecar": e.sidecar_hash,
                     "lyrics": e.lyrics_hash, "audio": e.audio_name}) + "\n"


# --- audio -----------------------------------------------------------------------------------------------------

class AudioReadError(Exception):
    """The audio file cannot be read to measure its length."""


def measure_duration(path: Path) -> float:
    """The length of an audio file in seconds, from its header: soundfile (wav, flac, ogg, mp3), else ffprobe
    (m4a/aac, opus and whatever libsndfile lacks)."""
    import soundfile

    try:
        info = soundfile.info(str(path))
        if info.frames > 0 and info.samplerate > 0:
            return info.frames / info.samplerate
    except Exception:  # libsndfile says "format not recognised" in several exception types
        pass
    try:
        out = subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
            capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        raise AudioReadError(f"{path} is not readable by soundfile and ffprobe is not installed") from None
    except subprocess.TimeoutExpired:
        raise AudioReadError(f"ffprobe timed out on {path}") from None
    try:
        seconds = float(out.stdout.strip().splitlines()[0])
    except (ValueError, IndexError):
        detail = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "no duration"
        raise AudioReadError(f"{path} is not a readable audio file ({detail})") from None
    if seconds <= 0:
        raise AudioReadError(f"{path} has no audio (length 0 s)")
    return seconds


def place_audio(src: Path, dest: Path, mode: str, move: bool = False) -> str:
    """Put the audio at ``dest``: "copy" (or move a downloaded file, ``move=True``), "link" (a symlink to the
    absolute source) or "none". Returns "same" when ``dest`` already holds it, else the mode."""
    if mode == "none":
        return "none"
    if mode == "link":
        target = str(Path(src).resolve())
        if dest.is_symlink() and os.readlink(dest) == target:
            return "same"
        tmp = dest.with_name(f".{dest.name}.link.tmp")
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(target, tmp)
        os.replace(tmp, dest)
        return "link"
    if dest.exists() and not dest.is_symlink() and _same_file_content(src, dest):
        if move:
            os.unlink(src)
        return "same"
    if move:  # a download: rename it into place (shutil.move copies across file systems)
        shutil.move(str(src), str(dest))
        return "copy"
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name[:40]}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copy2(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return "copy"


def _same_file_content(a: Path, b: Path) -> bool:
    import filecmp

    return filecmp.cmp(a, b, shallow=True)


# --- spooled lists ---------------------------------------------------------------------------------------------

class Spool:
    """A list of JSON rows kept on disk while a run goes on (memory stays flat), read back as lines at the end."""

    def __init__(self, folder: Path, name: str):
        folder.mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".jsonl")
        self.path = Path(path)
        self._out = os.fdopen(fd, "w", encoding="utf-8")
        self.count = 0

    def add(self, row: dict) -> None:
        self._out.write(_compact(row) + "\n")
        self.count += 1

    def lines(self):
        self._out.flush()
        with open(self.path, encoding="utf-8") as handle:
            yield from handle

    def discard(self) -> None:
        self._out.close()
        if self.path.exists():
            self.path.unlink()


def write_json_with_lists(path: Path, head: dict, lists: dict) -> None:
    """Write ``{**head, name: [rows...], ...}`` atomically without holding the rows in memory: ``lists`` maps
    each key to an iterable of rows, written one row per line."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(pretty_json(head, width=0)[:-1].rstrip())
            for number, (key, rows) in enumerate(lists.items()):
                out.write(("," if head or number else "") + f"\n  {json.dumps(key)}: [")
                n = 0
                for n, row in enumerate(rows, 1):  # a row is a dict, or already one line of compact JSON
                    text = row.rstrip("\n") if isinstance(row, str) else _compact(row)
                    out.write(("," if n > 1 else "") + "\n    " + text)
                out.write("\n  ]" if n else "]")
            out.write("\n}\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
