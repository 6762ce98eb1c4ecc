"""Decode a song file to mono float32 at the model's sample rate, with memory bounded by the output array.

WAV, FLAC and Ogg Vorbis are read with soundfile block by block and resampled with a streaming soxr resampler;
MP3, M4A/AAC, Opus and anything soundfile cannot read go through an `ffmpeg` subprocess that decodes, mixes down
and resamples (with its soxr resampler) straight to mono float32, streamed into a preallocated array. One hour at
16 kHz is about 230 MB; nothing else of that size is held.

Files are untrusted (8 MB of FLAC can hold 12 hours of silence): the length is read from the header (soundfile) or
the probe (ffprobe) first and anything over `max_seconds` (MAX_AUDIO_SECONDS) is refused before decoding; a file
whose header lies or gives no length is decoded into a buffer that never grows past `max_seconds` and is refused
when the audio goes on beyond it.

Every failure is an AudioError whose message names the file, the cause and what to do.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

MODEL_SR = 16000  # Hz: Qwen2-Audio's feature extractor refuses any other rate
BLOCK_FRAMES = 1 << 16  # input frames per soundfile read (about 1.5 s at 44.1 kHz)
PIPE_BYTES = 1 << 20  # bytes per read from ffmpeg's stdout
DEFAULT_MAX_SECONDS = 3600.0  # MAX_AUDIO_SECONDS' default: an hour is 230 MB decoded at 16 kHz
# libsndfile reports INT64_MAX frames (or 0) for a stream whose header does not say its length.
UNKNOWN_FRAMES = 1 << 62

# Suffixes libsndfile reads natively; everything else is decoded by ffmpeg.
SOUNDFILE_SUFFIXES = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".aifc", ".w64",
                                ".rf64", ".au", ".caf"})
FORMATS_HINT = "convert it to WAV, FLAC, MP3, Ogg, M4A or Opus"


class AudioError(Exception):
    """A file cannot be decoded; the message names the file and what to do."""


def load_audio(path: str | Path, sr: int = MODEL_SR, *,
               max_seconds: float | None = DEFAULT_MAX_SECONDS) -> np.ndarray:
    """Decode `path` to a mono float32 array at `sr` Hz (samples in [-1, 1]).

    `max_seconds` refuses longer files, before decoding them when the header or probe tells the length, else as
    soon as the decoded audio passes it (None: no limit, for trusted files only). Raises AudioError for a
    missing, empty, corrupt, too long or unsupported file, a file without an audio stream, or a missing ffmpeg."""
    path = Path(path)
    if sr <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    _check_file(path)
    if path.suffix.lower() in SOUNDFILE_SUFFIXES:
        try:
            y = _load_soundfile(path, sr, max_seconds)
        except _NotForSoundfile:
            # e.g. a WAV holding a codec libsndfile lacks, or a FLAC cut short by an interrupted upload
            y = _load_ffmpeg(path, sr, max_seconds)
    else:
        y = _load_ffmpeg(path, sr, max_seconds)
    if y.size == 0:
        raise AudioError(f"{path}: the file holds no audio samples; {FORMATS_HINT} from a non-empty source")
    return y


def resample(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample a whole mono signal from `sr_in` to `sr_out` Hz with soxr (float32 out)."""
    if sr_in == sr_out:
        return np.asarray(y, dtype=np.float32)
    import soxr

    return soxr.resample(np.asarray(y, dtype=np.float32), sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"{path}: no such file; check the task's audio reference")
    if not path.is_file():
        raise AudioError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: the file is empty (0 bytes); upload the song again")


def _check_length(path: Path, seconds: float, max_seconds: float | None) -> None:
    if max_seconds is not None and seconds > max_seconds:
        raise AudioError(f"{path}: {seconds / 60:.1f} min long, over the {max_seconds / 60:.1f} min limit "
                         "(MAX_AUDIO_SECONDS); cut the file or raise the limit")


def _too_long(path: Path, max_seconds: float) -> AudioError:
    """The header gave no (or a false) length and the decoded audio passed the limit."""
    return AudioError(f"{path}: longer than the {max_seconds / 60:.1f} min limit (MAX_AUDIO_SECONDS; the header "
                      "did not say so); decoding was stopped there. Cut the file or raise the limit")


def _limit_samples(sr: int, max_seconds: float | None) -> int | None:
    """Output samples the limit allows, plus one spare second for header and resampler rounding."""
    return None if max_seconds is None else int(max_seconds * sr) + sr


class _NotForSoundfile(Exception):
    """libsndfile cannot open or finish the file; ffmpeg gets a try."""


def _out_frames(in_frames: int, sr_in: int, sr_out: int) -> int:
    """Output samples for `in_frames` input samples after resampling (soxr's rounding, plus one spare)."""
    return int(np.ceil(in_frames * sr_out / sr_in)) + 1


def _load_soundfile(path: Path, sr: int, max_seconds: float | None) -> np.ndarray:
    """Block-wise read with soundfile, mono mixdown per block, streaming soxr resampling into one array."""
    import soundfile as sf

    try:
        f = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise _NotForSoundfile(str(exc)) from exc
    with f:
        sr_in, frames = f.samplerate, f.frames
        if sr_in <= 0:
            raise AudioError(f"{path}: the header gives sample rate {sr_in}; the file is corrupt, {FORMATS_HINT}")
        if not 0 < frames < UNKNOWN_FRAMES:
            raise _NotForSoundfile("the header gives no length")  # ffmpeg's bounded, growing buffer takes it
        _check_length(path, frames / sr_in, max_seconds)
        out = np.empty(_out_frames(frames, sr_in, sr), dtype=np.float32)
        stream = None
        if sr_in != sr:
            import soxr

            stream = soxr.ResampleStream(sr_in, sr, 1, dtype="float32", quality="HQ")
        n = 0
        try:
            for block in f.blocks(blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True):
                mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
                chunk = stream.resample_chunk(mono, last=False) if stream else mono
                n = _append(out, n, chunk)
                if n == len(out):  # the header understated the length: never decode past what it declared
                    break
        except (sf.LibsndfileError, RuntimeError) as exc:
            # a damaged or truncated stream: ffmpeg resynchronises and keeps what can be decoded
            raise _NotForSoundfile(f"stopped after {n / sr:.1f} s: {exc}") from exc
        if stream is not None:
            n = _append(out, n, stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    return _trim(out, n)


def _append(out: np.ndarray, n: int, chunk: np.ndarray) -> int:
    """Copy `chunk` into `out` at `n`; returns the new fill level. Samples past the preallocated end (a header that
    understated the length by a few frames) are dropped rather than grown into."""
    k = min(len(chunk), len(out) - n)
    out[n:n + k] = chunk[:k]
    return n + k


def _trim(out: np.ndarray, n: int) -> np.ndarray:
    """Shrink `out` to its first `n` samples in place (realloc, no second copy of the song)."""
    if n < len(out):
        out.resize(n, refcheck=False)
    return out


def _ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise AudioError("ffmpeg is not installed; it decodes MP3, M4A/AAC and Opus files "
                         "(apt-get install ffmpeg, or use the Docker image)")
    return exe


def _probe(path: Path) -> tuple[float | None, int | None]:
    """(duration in seconds, channel count) of the first audio stream from ffprobe; None where unknown."""
    exe = shutil.which("ffprobe")
    if exe is None:
        return None, None
    try:
        proc = subprocess.run([exe, "-v", "error", "-select_streams", "a:0", "-show_entries",
                               "format=duration:stream=duration,channels", "-of", "json", str(path)],
                              capture_output=True, text=True, timeout=60)
        info = json.loads(proc.stdout or "{}")
    except (subprocess.TimeoutExpired, ValueError, OSError):
        return None, None
    streams = info.get("streams") or [{}]
    seconds = None
    for item in (streams[0], info.get("format", {})):
        try:
            value = float(item.get("duration", "nan"))
        except (TypeError, ValueError):
            continue
        if value == value and value > 0:
            seconds = value
            break
    channels = streams[0].get("channels")
    return seconds, channels if isinstance(channels, int) and channels > 0 else None


def _mixdown_filter(channels: int | None) -> str:
    """An ffmpeg filter averaging all channels with equal weight, as the soundfile path does (ffmpeg's own
    `-ac 1` weights stereo by 1/sqrt(2), which would make the two paths differ in level)."""
    if not channels or channels == 1:
        return "aformat=channel_layouts=mono"
    terms = "+".join(f"{1 / channels:.6f}*c{i}" for i in range(channels))
    return f"pan=mono|c0={terms}"


def _load_ffmpeg(path: Path, sr: int, max_seconds: float | None) -> np.ndarray:
    """Decode with an ffmpeg subprocess to mono float32 at `sr`, read straight into a preallocated array that
    grows by a quarter when the probed duration was short."""
    exe = _ffmpeg()
    seconds, channels = _probe(path)
    if seconds is not None:
        _check_length(path, seconds, max_seconds)
    limit = _limit_samples(sr, max_seconds)
    if seconds is not None:
        capacity = int(seconds * sr) + sr
    else:  # no length: the whole allowance, which costs memory only as it fills (untouched pages are not held)
        capacity = limit or int(600.0 * sr)
    if limit is not None:
        capacity = min(capacity, limit)
    out = np.empty(capacity, dtype=np.float32)
    cmd = [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path), "-map", "0:a:0", "-vn",
           "-af", f"{_mixdown_filter(channels)},aresample={sr}:resampler=soxr", "-ac", "1",
           "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"]
    # stderr goes to a file: a damaged file can make ffmpeg log a line per frame, which would fill a pipe and
    # stall it while we only read stdout.
    with tempfile.TemporaryFile() as errlog:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errlog)
        filled = 0  # bytes
        try:
            while True:
                if filled == len(out) * 4:  # full: the probed duration was missing or short
                    if limit is not None and len(out) >= limit:
                        raise _too_long(path, max_seconds)
                    size = len(out) + len(out) // 4 + PIPE_BYTES // 4
                    out = _grow(out, size if limit is None else min(size, limit))
                view = memoryview(out).cast("B")[filled:filled + PIPE_BYTES]
                got = proc.stdout.readinto(view)
                view.release()  # the array must not stay exported, or it cannot be trimmed in place
                if not got:
                    break
                filled += got
            rc = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        errlog.seek(0)
        stderr = errlog.read().decode("utf-8", "replace")
    if rc != 0:
        raise AudioError(_ffmpeg_message(path, stderr, decoded=filled > 0))
    return _trim(out, filled // 4)


def _grow(out: np.ndarray, size: int) -> np.ndarray:
    """A larger copy of `out` (rare: only when ffprobe's duration was missing or short)."""
    bigger = np.empty(size, dtype=np.float32)
    bigger[: len(out)] = out
    return bigger


def _ffmpeg_message(path: Path, stderr: str, decoded: bool) -> str:
    """Turn ffmpeg's stderr into a message that says what is wrong with the file (`decoded`: some audio came out
    before the failure)."""
    text = stderr.strip()
    last = text.splitlines()[-1] if text else "no error text"
    if "matches no streams" in text or "does not contain any stream" in text:
        return f"{path}: the file has no audio stream; {FORMATS_HINT}"
    if not decoded or "Invalid data found" in text or "Unknown format" in text:
        return f"{path}: not a readable audio file (unsupported format or corrupt header: {last}); {FORMATS_HINT}"
    return f"{path}: ffmpeg could not decode the file ({last}); {FORMATS_HINT}"
