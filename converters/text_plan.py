"""Whether a sidecar or lyrics file may be (over)written: a file changed since the last run wrote it was edited by
a person and is kept unless ``--force``."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ls_acestep.files import read_inside


def content_hash(data: bytes) -> str:
    """A short content hash (16 hex digits of SHA-256) for change detection."""
    return hashlib.sha256(data).hexdigest()[:16]


@dataclass
class TextPlan:
    """What to do with one text output: "new", "update", "same" (already identical) or "kept" (edited by hand)."""

    path: Path
    data: bytes
    action: str
    current: bytes | None = None  # what the file held when planned (read once: a kept file is not read again)

    @property
    def new_hash(self) -> str:
        return content_hash(self.data)


def plan_text(path: Path, data: bytes, recorded_hash: str, force: bool, known_absent: bool = False,
              root: Path | None = None) -> TextPlan:
    """Decide whether ``path`` may get ``data``: it may when absent, when it still holds what we last wrote
    (``recorded_hash``) or with ``force``; a file changed since then (or never written by us) is kept.
    ``known_absent`` skips the look-up (the folder was empty when the run began). A symlink that leads out of
    ``root`` (the output folder; default the file's folder) raises OutsideFolderError: it is not read."""
    if known_absent:
        return TextPlan(path, data, "new")
    try:
        current = read_inside(path, root if root is not None else path.parent)
    except FileNotFoundError:
        return TextPlan(path, data, "new")
    if current == data:
        return TextPlan(path, data, "same", current)
    if force or (recorded_hash and content_hash(current) == recorded_hash):
        return TextPlan(path, data, "update", current)
    return TextPlan(path, data, "kept", current)


def recorded_hash(plan: TextPlan, previous_hash: str) -> str:
    """The hash to remember for a text file: what we wrote, or for a kept file the hash of what we last wrote
    (empty when we never wrote it), so that it stays protected on the next run."""
    return previous_hash if plan.action == "kept" else plan.new_hash
