"""What ``convert`` writes so that every ACE-Step 1.5 release reads a song as the annotator meant it (the reading
rules are in acestep_readers.py):

- lyrics in ``<stem>.txt``, only for songs with words: the early release reads nothing else, the current one falls
  back to it; a song without words gets no lyrics file at all, because any lyrics file (even one holding
  ``[Instrumental]``) makes the folder scan call the song vocal, and ACE-Step supplies ``[Instrumental]`` itself;
- ``acestep_metadata.csv`` in the dataset folder with ``File,BPM,Key,Caption``: all the early release reads of
  caption, tempo and key. The current release applies it after the JSON, so each row holds exactly the sidecar's
  values (from the file on disk, a hand-edited one included): what that release reads does not change;
- per-song notes on durations and on the dataset JSON's working-directory rule.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from .acestep_readers import DURATION_MAX, DURATION_MIN, MAX_TRAIN_SECONDS
from .text_plan import TextPlan, content_hash

LYRICS_SUFFIX = ".txt"  # read by every release (the current one tries .lyrics.txt first, then this)
LEGACY_LYRICS_SUFFIX = ".lyrics.txt"  # what earlier versions of convert wrote
CSV_NAME = "acestep_metadata.csv"
CSV_HEADER = ("File", "BPM", "Key", "Caption")


def csv_row(audio_name: str, sidecar: dict) -> list[str] | None:
    """The CSV row of one song: the sidecar's caption, bpm and keyscale as ACE-Step's CSV reader takes them
    (it strips cells and reads BPM as a number); None when the sidecar has none of the three."""
    bpm = sidecar.get("bpm")
    bpm_text = str(bpm) if isinstance(bpm, int) and not isinstance(bpm, bool) and bpm else ""
    key = sidecar.get("keyscale") if isinstance(sidecar.get("keyscale"), str) else ""
    caption = sidecar.get("caption") if isinstance(sidecar.get("caption"), str) else ""
    if not (bpm_text or key.strip() or caption.strip()):
        return None
    return [audio_name, bpm_text, key.strip(), caption.strip()]


def csv_text(rows) -> str:
    """The CSV file: a header and one row per song, every cell quoted, "\\n" line ends, no byte-order mark (the
    early release opens it as plain UTF-8, so a BOM would hide the File column). Quoting every cell keeps
    Python's csv.Sniffer, which ACE-Step runs on the first 4 KB, on the comma whatever the captions hold."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    writer.writerows(rows)
    return out.getvalue()


def plan_absent(path: Path, recorded_hash: str, force: bool, read) -> TextPlan | None:
    """A lyrics file that must not exist: None when it does not; "remove" when it holds what we last wrote (or
    with ``force``); "kept" when someone else wrote or edited it. ``read(path)`` returns its bytes."""
    try:
        current = read(path)
    except FileNotFoundError:
        return None
    if force or (recorded_hash and content_hash(current) == recorded_hash):
        return TextPlan(path, b"", "remove", current)
    return TextPlan(path, b"", "kept", current)


def duration_notes(seconds: float | None) -> list[str]:
    """What ACE-Step does with a song of this length (seconds): cut at 240 s by preprocessing; refused by its UI
    outside 10-600 s."""
    if seconds is None:
        return ["duration unknown (no audio measured): ACE-Step measures it at training time"]
    if seconds < DURATION_MIN or seconds > DURATION_MAX:
        return [f"duration {seconds:.1f} s is outside the {DURATION_MIN}-{DURATION_MAX} s ACE-Step accepts"]
    if seconds > MAX_TRAIN_SECONDS:
        return [f"duration {seconds:.1f} s: ACE-Step's preprocessing cuts it at {MAX_TRAIN_SECONDS} s (the last "
                f"{seconds - MAX_TRAIN_SECONDS:.1f} s and their lyrics are not trained)"]
    return []


def dataset_base(dataset: Path, acestep_dir: Path | None) -> tuple[str, str]:
    """(the folder the dataset JSON's audio paths start with, an error): the absolute dataset folder, or with
    ``acestep_dir`` the dataset folder relative to it (ACE-Step resolves relative paths from its working
    directory and refuses anything outside it); the error says why that cannot work."""
    resolved = Path(dataset).resolve()
    if acestep_dir is None:
        return str(resolved), ""
    root = Path(acestep_dir).resolve()
    if not root.is_dir():
        return "", f"--acestep-dir {acestep_dir} is not a folder"
    if resolved != root and root not in resolved.parents:
        return "", (f"--out must lie under --acestep-dir {root}: ACE-Step refuses a dataset and audio outside its "
                    f"working directory (\"Path escapes safe root\"); {resolved} does not")
    return os.path.relpath(resolved, root), ""


def escapes(audio: Path, acestep_dir: Path) -> bool:
    """Whether ACE-Step would refuse this audio file: it resolves links, so a linked file outside its working
    directory escapes it."""
    target = Path(audio).resolve()
    root = Path(acestep_dir).resolve()
    return target != root and root not in target.parents


def write_csv(path: Path, lines) -> None:
    """Write the CSV atomically from spooled JSON lines ``{"row": [...]}``; an unchanged file is not rewritten.
    The text is built in memory: a row is ~200 bytes, 20 MB for 100,000 songs."""
    import json

    from ls_acestep.files import atomic_write

    from ls_acestep.files import read_inside

    data = csv_text(json.loads(line)["row"] for line in lines).encode("utf-8")
    try:
        if not path.is_symlink() and read_inside(path, path.parent) == data:
            return  # a re-run leaves the file (and its time stamp) alone
    except OSError:  # none yet, or a FIFO or device planted there (never opened blocking): replaced below
        pass
    atomic_write(path, data)
