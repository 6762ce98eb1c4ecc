"""Atomic file writes, shared by the converter (sidecars, lyrics, reports), ``ls-acestep up`` (its state) and
the review pages, and the one rule for files read back from an output folder: no symlink out of it.

An output folder may hold anything (a person, or another user of the machine, can plant files there), so a temp
file is never opened by a predictable name: it is created exclusively (``O_EXCL``), never through a symlink
(``O_NOFOLLOW``), under a random name, in the target's folder; the rename then replaces whatever sits at the
target (a symlink included) without writing through it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat

DEFAULT_MODE = 0o666  # before the umask, as open() does
_EXCLUSIVE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_NAME_TRIES = 16  # random 48-bit names: a clash at all is a planted file; sixteen in a row is an attack


class OutsideFolderError(OSError):
    """A path in an output folder is a symlink that leads out of it; it is neither read nor written through."""


def create_temp(folder: str, name: str, mode: int = DEFAULT_MODE) -> tuple[int, str]:
    """A new temp file for ``name`` in ``folder``, created exclusively under a random name: (fd, path). ``mode``
    goes through the umask like open()'s."""
    for _ in range(_NAME_TRIES):
        tmp = os.path.join(folder, f".{name[:60]}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, _EXCLUSIVE, mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temp name for {name} in {folder}")


def atomic_write(path, data: bytes, mode: int = DEFAULT_MODE) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and a rename: readers see the old or the new
    file, never half of one. ``mode`` is the new file's permission bits (e.g. 0o600 for secrets); the default
    0o666 is reduced by the umask, as for any new file."""
    folder, name = os.path.split(os.fspath(path))
    # os.open/os.write, not open(): a buffered file object costs a few more system calls (fstat, ioctl,
    # lseek) and tens of microseconds per file, which adds up over two files per task.
    fd, tmp = create_temp(folder or ".", name, mode)
    try:
        try:
            if mode != DEFAULT_MODE:  # exactly these bits, whatever the umask allows
                os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_text(path, mode: int = DEFAULT_MODE):
    """``with atomic_text(path) as out: out.write(...)``: a text file (UTF-8) written to a temp file and renamed
    to ``path`` when the block ends without an error; on an error the temp file is removed and ``path`` is left
    as it was."""
    folder, name = os.path.split(os.fspath(path))
    fd, tmp = create_temp(folder or ".", name, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            yield out
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def leaves_folder(path, root) -> bool:
    """Whether ``path`` (inside ``root``) resolves, through symlinks and "..", to somewhere outside ``root``."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep)


_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK  # O_NONBLOCK: opening a planted FIFO does not hang


def read_inside(path, root) -> bytes:
    """The bytes of ``path``, a file in the folder ``root``: a symlink is followed only when it stays inside
    ``root``, else OutsideFolderError. FileNotFoundError when there is no file; OSError (EINVAL) for a FIFO,
    device or folder, which is not read. One open() for a plain file."""
    try:
        fd = os.open(path, _READ_FLAGS | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno != errno.ELOOP:  # ELOOP: the last component is a symlink
            raise
        if leaves_folder(path, root):
            raise OutsideFolderError(errno.EPERM, f"a symbolic link to {os.path.realpath(path)}, outside "
                                     f"{root}", os.fspath(path)) from None
        fd = os.open(path, _READ_FLAGS)
    with open(fd, "rb", closefd=True) as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # /dev/zero would never end, a FIFO never start
            raise OSError(errno.EINVAL, "not a regular file; not read", os.fspath(path))
        return handle.read()
