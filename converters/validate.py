"""``ls-acestep validate DIR``: check a folder of audio files and sidecars (ours or any other tool's) against what
ACE-Step 1.5's dataset scanner reads, and list what it would ignore or misread.

The rules follow ACE-Step 1.5's folder scan: it finds ``.wav .mp3 .flac .ogg .opus`` recursively (``.m4a`` only in
the v2 command-line trainer), reads ``song.json`` next to ``song.ext`` (each key only when truthy), lyrics from
``song.lyrics.txt`` (fallback ``song.txt``; an empty file counts as missing) and treats a sample without a caption
as unlabeled.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from label_config.sidecar import LORA_TAB_AUDIO, V2_TRAINER_ONLY_AUDIO
from label_config.vocabulary import BPM_MAX, BPM_MIN, LANGUAGES, normalize_language

from .acestep_check import SongView, dataset_json_checks, song_views, view_findings
from .acestep_readers import CURRENT, EARLY, Release, TooLargeError, _text, read_text
from .outputs import ACESTEP_DATASET, OUTPUT_FILES, STATE_DIR

OTHER_AUDIO = (".aac", ".aif", ".aiff", ".wma", ".alac", ".mp4", ".webm", ".mka", ".ape", ".wv")
_LRC_STAMP = re.compile(r"\[\d{1,3}:\d{2}(?:[.:]\d{1,3})?\]")
_CODE = re.compile(r"^[a-z]{2,3}$")


@dataclass(frozen=True)
class Finding:
    """One thing ACE-Step would ignore or misread ("problem") or a default it will apply ("note")."""

    path: Path
    level: str  # "problem" | "note"
    message: str

    def line(self, root: Path) -> str:
        try:
            shown = self.path.relative_to(root)
        except ValueError:
            shown = self.path
        return f"{shown}: {self.level}: {self.message}"


def _walk(folder: Path):
    """All files under ``folder``, skipping hidden folders (our state folder among them)."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != STATE_DIR)
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


def _base(path: Path) -> Path:
    """``song`` for song.json, song.lyrics.txt, song.caption.txt, song.txt and song.<audio ext>."""
    name = path.name
    for suffix in (".lyrics.txt", ".caption.txt"):
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)])
    return path.with_suffix("")


def validate_folder(folder: Path, releases: tuple[Release, ...] = (CURRENT, EARLY)) -> list[Finding]:
    """Every problem and note for ``folder``, in file order."""
    return validate_report(folder, releases)[0]


def validate_report(folder: Path, releases: tuple[Release, ...] = (CURRENT, EARLY)
                    ) -> tuple[list[Finding], list[SongView]]:
    """(every problem and note, what each release holds per song) for ``folder``."""
    folder = Path(folder)
    findings: list[Finding] = []
    audio_by_base: dict[Path, list[Path]] = defaultdict(list)
    texts: list[Path] = []
    for path in _walk(folder):
        ext = path.suffix.lower()
        if ext in LORA_TAB_AUDIO:
            audio_by_base[_base(path)].append(path)
        elif ext in V2_TRAINER_ONLY_AUDIO:
            audio_by_base[_base(path)].append(path)
            findings.append(Finding(path, "problem", "the LoRA training tab does not scan .m4a (only the v2 "
                                    "command-line trainer does); convert it to .flac or .wav"))
        elif ext in OTHER_AUDIO:
            findings.append(Finding(path, "problem", f"ACE-Step does not scan {ext} files; convert to .flac or .wav"))
        elif ext in (".json", ".txt"):
            texts.append(path)
        elif ext == ".csv" and path.parent == folder:
            findings.append(Finding(path, "note", "a CSV in the top folder is applied last: its File/BPM/Key/"
                                    "Caption columns override the sidecars"))

    if not audio_by_base:
        findings.append(Finding(folder, "problem", f"no audio files ACE-Step scans ({' '.join(LORA_TAB_AUDIO)})"))
    for base, audios in sorted(audio_by_base.items()):
        if len(audios) > 1:
            findings.append(Finding(audios[0], "problem", "several audio files share one base name ("
                                    + ", ".join(a.name for a in audios) + "); they share one sidecar"))
        for audio in audios:
            findings.extend(_checked_sample(audio))

    for path in texts:
        if path.parent == folder and path.name in OUTPUT_FILES:
            continue
        if _base(path) not in audio_by_base and not (path.suffix == ".txt" and _base(path).with_suffix("")
                                                     in audio_by_base):
            findings.append(Finding(path, "problem", "orphan: no audio file with this base name next to it, so "
                                    "ACE-Step never reads it"))
    views, csv_warnings = song_views(folder, releases) if audio_by_base else ([], [])
    findings.extend(Finding(folder, "problem", f"CSV {warning}") for warning in csv_warnings)
    for view in views:
        findings.extend(Finding(path, level, message) for path, level, message in view_findings(view))
    dataset_file = folder / ACESTEP_DATASET
    if dataset_file.is_file():
        findings.extend(Finding(path, level, message) for path, level, message in dataset_json_checks(dataset_file))
    return findings, views


def _read_sidecar(path: Path) -> tuple[dict | None, str]:
    try:
        data = json.loads(read_text(path))
    except TooLargeError as exc:
        return None, f"{exc} (a sidecar holds a few KB)"
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except ValueError as exc:
        return None, f"not valid JSON ({exc})"
    except RecursionError:
        return None, f"nested deeper than JSON can be read here (over {sys.getrecursionlimit()} levels)"
    except OSError as exc:
        return None, f"not readable ({exc.strerror})"
    if not isinstance(data, dict):
        return None, f"a JSON {type(data).__name__}, not an object"
    return data, ""


def _checked_sample(audio: Path) -> list[Finding]:
    """check_sample, with what no folder should make it do (a value nested too deeply to print, an unreadable
    file) reported against this sample; the other samples are still checked."""
    try:
        return check_sample(audio)
    except RecursionError:
        return [Finding(audio, "problem", "a file of this sample nests values too deeply to be read; ACE-Step "
                        "cannot read it either")]
    except OSError as exc:
        return [Finding(Path(exc.filename or audio), "problem", f"not readable ({exc.strerror})")]


def check_sample(audio: Path) -> list[Finding]:
    """Findings for one audio file and the files ACE-Step reads next to it."""
    out: list[Finding] = []
    base = _base(audio)
    sidecar_path = base.with_name(base.name + ".json")
    caption_txt = base.with_name(base.name + ".caption.txt")
    has_caption_txt = caption_txt.is_file() and _text(caption_txt)
    sidecar: dict = {}
    if sidecar_path.is_file():
        data, error = _read_sidecar(sidecar_path)
        if data is None:
            out.append(Finding(sidecar_path, "problem", f"{error}; ACE-Step cannot read it"))
        else:
            sidecar = data
    elif not has_caption_txt:
        out.append(Finding(audio, "problem", f"unlabeled: no {sidecar_path.name} or {caption_txt.name}; the sample "
                           "is skipped at preprocessing"))
    if sidecar:
        out.extend(check_sidecar(sidecar_path, sidecar, bool(has_caption_txt)))
    out.extend(check_lyrics(audio, base, sidecar))
    return out


def check_sidecar(path: Path, data: dict, has_caption_txt: bool = False) -> list[Finding]:
    """What ACE-Step does with each key it reads from ``song.json`` (values read only when truthy)."""
    # keyscale, time signature and vocals: acestep_check (ACE-Step's own vocabulary, per release)
    checks = (_check_caption(data.get("caption"), has_caption_txt), _check_bpm(data.get("bpm")),
              _check_language(data.get("language"), data.get("vocal_language")))
    return [Finding(path, level, message) for found in checks for level, message in found]


# Each check returns (level, message) pairs for one key: "problem" for what ACE-Step ignores or misreads, "note"
# for a default it applies.

def _check_caption(caption: object, has_caption_txt: bool) -> list[tuple[str, str]]:
    if not caption:
        if has_caption_txt:
            return []
        return [("problem", "no caption (empty or missing): the sample is unlabeled and skipped at preprocessing")]
    if not isinstance(caption, str):
        return [("problem", f"caption is a {type(caption).__name__}; write a string")]
    return []


def _check_bpm(bpm: object) -> list[tuple[str, str]]:
    if not bpm:
        return [("note", "no bpm: shown as N/A" + (" (0 counts as missing)" if bpm == 0 else ""))]
    if isinstance(bpm, bool) or not isinstance(bpm, int):
        return [("problem", f"bpm {bpm!r} is a {type(bpm).__name__}; ACE-Step expects an int "
                            f"(e.g. {_int_hint(bpm)})")]
    if not BPM_MIN <= bpm <= BPM_MAX:
        return [("problem", f"bpm {bpm} is outside the model's range {BPM_MIN}-{BPM_MAX}")]
    return []


def _check_language(language: object, vocal_language: object) -> list[tuple[str, str]]:
    if not language:
        if vocal_language and vocal_language not in ("unknown", "instrumental"):
            return [("problem", f"no \"language\": ACE-Step does not read \"vocal_language\" "
                                f"({vocal_language!r}), so the sample gets \"unknown\"")]
        return [("note", "no language: read as \"unknown\"")]
    if isinstance(language, str) and language in LANGUAGES:
        return []
    code = normalize_language(language) if isinstance(language, str) else None
    if isinstance(language, str) and _CODE.match(language) and code is None:
        return [("note", f"language {language!r} is not a code this tool knows; check it against ACE-Step's list")]
    return [("problem", f"language {language!r} is not a language code" + (f"; write {code!r}" if code else ""))]


def _int_hint(value: object) -> str:
    try:
        return str(int(round(float(str(value).split()[0]))))
    except (ValueError, IndexError, OverflowError):  # OverflowError: "inf", 1e999 (JSON's Infinity)
        return "120"


def check_lyrics(audio: Path, base: Path, sidecar: dict) -> list[Finding]:
    """The lyrics file the current release reads (``song.lyrics.txt``, else ``song.txt``; an empty file counts as
    missing): LRC time stamps are read as words. Lyrics against vocals: acestep_check.lyrics_checks."""
    out: list[Finding] = []
    candidates = [base.with_name(base.name + ".lyrics.txt"), base.with_name(base.name + ".txt")]
    texts = {p: _text(p) for p in candidates if p.is_file()}
    found = next((p for p, words in texts.items() if words), None)
    text = texts[found] if found else ""
    if found is None:
        for empty in (p for p in candidates if p.is_file()):
            out.append(Finding(empty, "note", f"{empty.name} is empty: ACE-Step counts it as missing"))
        return out
    if _LRC_STAMP.search(text):
        out.append(Finding(found, "problem", "lyrics hold LRC timestamps like [01:23.45]; ACE-Step reads them as "
                           "words: strip them"))
    return out
