"""Lists of rows too long to hold in memory (one row per task): spooled to disk while a run goes on, then
streamed into the run-level JSON files."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from ls_acestep.files import atomic_text

from .json_text import compact_json, pretty_json


class Spool:
    """A list of JSON rows kept on disk while a run goes on (memory stays flat), read back as lines at the end."""

    def __init__(self, folder: Path, name: str):
        folder.mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".jsonl")
        self.path = Path(path)
        self._out = os.fdopen(fd, "w", encoding="utf-8")
        self.count = 0

    def add(self, row: dict) -> None:
        self._out.write(compact_json(row) + "\n")
        self.count += 1

    def lines(self):
        self._out.flush()
        fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)  # ours, never a planted symlink
        with open(fd, encoding="utf-8") as handle:
            yield from handle

    def discard(self) -> None:
        """Close and remove the spool; safe after a failed write (a full disk fails the close's flush too)."""
        with contextlib.suppress(OSError):
            self._out.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def write_json_with_lists(path: Path, head: dict, lists: dict) -> None:
    """Write ``{**head, name: [rows...], ...}`` atomically without holding the rows in memory: ``lists`` maps
    each key to an iterable of rows, written one row per line."""
    with atomic_text(path) as out:
        out.write(pretty_json(head, width=0)[:-1].rstrip())
        for number, (key, rows) in enumerate(lists.items()):
            out.write(("," if head or number else "") + f"\n  {json.dumps(key)}: [")
            n = 0
            for n, row in enumerate(rows, 1):  # a row is a dict, or already one line of compact JSON
                text = row.rstrip("\n") if isinstance(row, str) else compact_json(row)
                out.write(("," if n > 1 else "") + "\n    " + text)
            out.write("\n  ]" if n else "]")
        out.write("\n}\n")


def write_lines(path: Path, lines) -> None:
    """Write an iterable of text lines to ``path`` atomically (temp file in the same folder, then a rename)."""
    with atomic_text(path) as out:
        for line in lines:
            out.write(line)
