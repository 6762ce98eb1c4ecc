"""Atomic file writes, shared by the converter (sidecars, lyrics, reports) and ``ls-acestep up`` (its state)."""

from __future__ import annotations

import os

DEFAULT_MODE = 0o666  # before the umask, as open() does


def atomic_write(path, data: bytes, mode: int = DEFAULT_MODE) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and a rename: readers see the old or the new
    file, never half of one. ``mode`` is the new file's permission bits (e.g. 0o600 for secrets). (The temp name
    is fixed per process: one writer per folder at a time, and it is much cheaper than mkstemp's exclusive
    create on some file systems.)"""
    folder, name = os.path.split(os.fspath(path))
    tmp = os.path.join(folder, f".{name[:60]}.{os.getpid()}.tmp")
    try:
        # os.open/os.write, not open(): a buffered file object costs a few more system calls (fstat, ioctl,
        # lseek) and tens of microseconds per file, which adds up over two files per task.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            if mode != DEFAULT_MODE:  # a leftover temp file keeps its old bits: set them explicitly
                os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
