"""The state that makes re-runs idempotent and protects files edited by hand.

State lives in ``DIR/.ls-acestep/state.jsonl``: one line per written task (its stem, audio reference and a hash
of each text file as we wrote it), appended as tasks are written so that an interrupted run loses nothing, and
compacted at the end of a run. A sidecar or lyrics file whose content no longer matches the recorded hash was
edited by someone else and is only overwritten with ``--force``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ls_acestep.files import OutsideFolderError, atomic_write

from .json_text import compact_json
from .outputs import STATE_DIR

STATE_FILE = "state.jsonl"


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
        """Read the journal (last line per task wins); returns warnings for unreadable lines. Raises
        OutsideFolderError when the journal is a symlink: it is never read or appended through one."""
        warnings = []
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return warnings
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _link_refused(self.path) from None
            raise
        with open(fd, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                try:
                    row = json.loads(line)
                    self.tasks[int(row["task"])] = TaskState(row["stem"], row.get("ref", ""),
                                                             row.get("sidecar", ""), row.get("lyrics", ""),
                                                             row.get("audio", ""))
                except (ValueError, KeyError, TypeError, RecursionError):
                    warnings.append(f"{self.path}:{number}: unreadable state line ignored")
        return warnings

    def record(self, task_id: int, entry: TaskState) -> None:
        """Remember a written task and append it to the journal at once (one unbuffered write, so a crash keeps
        it). A failed write (a full disk) is cut back off, so the journal never ends in half a line."""
        self.tasks[task_id] = entry
        if self._journal is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._journal = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                                        | os.O_CLOEXEC, 0o666)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise _link_refused(self.path) from None
                raise
            self._size = os.fstat(self._journal).st_size
        data = _state_line(task_id, entry).encode()
        try:
            if os.write(self._journal, data) != len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        except OSError:  # the task's files are on disk: it stays in self.tasks for compact()
            with contextlib.suppress(OSError):
                os.ftruncate(self._journal, self._size)
            raise
        self._size += len(data)

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
            with contextlib.suppress(OSError):
                os.close(self._journal)
            self._journal = None


def _link_refused(path: Path) -> OutsideFolderError:
    return OutsideFolderError(errno.ELOOP, f"{path} is a symbolic link (to {os.path.realpath(path)}); the state "
                              "journal is never read or written through a link: remove it and run again")


def _state_line(task_id: int, e: TaskState) -> str:
    return compact_json({"task": task_id, "stem": e.stem, "ref": e.ref, "sidecar": e.sidecar_hash,
                         "lyrics": e.lyrics_hash, "audio": e.audio_name}) + "\n"
