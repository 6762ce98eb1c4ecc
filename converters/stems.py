"""File names for a task's outputs: the stem of its audio reference, made safe and distinct within a folder."""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import PurePosixPath
from urllib.parse import parse_qs, unquote, urlsplit

_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-(?=.)")  # Label Studio's upload prefix: 8 hex characters and a dash
_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
_MAX_STEM_BYTES = 180  # leaves room for "-<task id>.lyrics.txt" (an old lyrics file) under the 255-byte name limit


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
    if len(stem.encode()) > _MAX_STEM_BYTES:  # cut once at a character boundary (not a char at a time: quadratic)
        stem = stem.encode()[:_MAX_STEM_BYTES].decode("utf-8", "ignore").strip(" .")
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
