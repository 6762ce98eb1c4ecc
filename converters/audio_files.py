"""A task's audio file: its length, and putting it into the dataset folder (copy, move, symlink)."""

from __future__ import annotations

import contextlib
import filecmp
import os
import secrets
import shutil
import stat
import subprocess
from pathlib import Path

from ls_acestep.files import create_temp

FFPROBE_TIMEOUT_S = 60  # a header probe takes well under a second; a hung ffprobe must not stall the run
_COPY_CHUNK_BYTES = 1 << 20  # songs are tens of MB: large reads, few system calls


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
            capture_output=True, text=True, timeout=FFPROBE_TIMEOUT_S, check=False)
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
        return _link(src, dest)
    if dest.exists() and not dest.is_symlink() and filecmp.cmp(src, dest, shallow=True):
        if move:
            os.unlink(src)
        return "same"
    if move:  # a download: rename it into place (shutil.move copies across file systems)
        shutil.move(str(src), str(dest))
        return "copy"
    _copy(src, dest)
    return "copy"


def _link(src: Path, dest: Path) -> str:
    target = str(Path(src).resolve())
    if dest.is_symlink() and os.readlink(dest) == target:
        return "same"
    for _ in range(16):  # a random name: symlink() never replaces, so a planted file there is only skipped
        tmp = dest.with_name(f".{dest.name[:60]}.{secrets.token_hex(6)}.link")
        try:
            os.symlink(target, tmp)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"no free temp name for {dest.name} in {dest.parent}")
    try:
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return "link"


def _copy(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest`` through a temp file created exclusively (see ls_acestep.files), keeping the
    source's permission bits and times as ``cp -p`` does."""
    fd, tmp = create_temp(str(dest.parent), dest.name)
    try:
        with open(src, "rb") as source, os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(source, out, _COPY_CHUNK_BYTES)
            info = os.fstat(source.fileno())
            os.fchmod(out.fileno(), stat.S_IMODE(info.st_mode))
            out.flush()
            os.utime(out.fileno(), ns=(info.st_atime_ns, info.st_mtime_ns))
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
