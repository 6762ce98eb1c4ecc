"""One ``convert`` at a time per output folder: two runs into one folder would delete each other's spools and
interleave the state journal. The lock is an advisory ``flock`` on ``DIR/.ls-acestep/lock``, released by the
kernel when the process ends, however it ends (so a crashed run never leaves the folder locked)."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

LOCK_FILE = "lock"


class FolderBusy(Exception):
    """Another process holds the output folder's lock."""


def lock_folder(state_dir: Path) -> int:
    """Take the lock in ``state_dir`` (created if missing) without waiting; returns the file descriptor that
    holds it (close it to release). Raises FolderBusy when another process holds it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise FolderBusy(str(path)) from None
        raise
    return fd


def unlock_folder(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the only descriptor releases the flock
