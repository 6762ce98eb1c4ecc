"""What the report measures in each song's audio: integrated loudness (ITU-R BS.1770-4, pyloudnorm), true peak
(4x oversampling, as BS.1770-4 Annex 2 does it, with scipy's polyphase resampler), full-scale clipping, and a
chroma fingerprint (librosa) for finding near-duplicate songs.

One song is decoded at a time, with all its channels (loudness sums the channels' power, so a mono mixdown would
measure another number); memory is bounded by MAX_SECONDS of audio. Every failure becomes a message naming the
file, never an exception out of ``measure``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_SECONDS = 600.0  # ACE-Step's own upper duration (constants.DURATION_MAX): longer songs are measured this far
FFMPEG_MAX_SECONDS = 1800.0  # files only ffmpeg decodes are decoded whole: longer ones are reported, not read
OVERSAMPLE = 4  # BS.1770-4 Annex 2: 4x for 48 kHz material (an under-read of at most about 0.5 dB)
PEAK_BLOCK = 1 << 18  # samples per oversampled block: bounds the 4x copy to a few MB
PEAK_MARGIN = 64  # input samples of overlap per side, more than the resampler filter's half-length
CLIP_LEVEL = 0.999  # |sample| at or above this is full scale (a float file may hold 1.0 exactly)
CLIP_RUN = 3  # consecutive full-scale samples that make a clip; one full-scale sample is a normalised peak
FINGERPRINT_SR = 11025  # Hz: chroma needs the pitch range, not the air band; 4x less work than 44.1 kHz
FINGERPRINT_BINS = 64  # time bins over the whole song: the fingerprint is 12 x 64 values whatever the length
FINGERPRINT_HOP = 1024  # samples at FINGERPRINT_SR (about 93 ms)


def _read(path: Path) -> tuple[np.ndarray, int, bool, bool]:
    """(frames x channels float32, sample rate, cut at MAX_SECONDS, mixed down) through soundfile, else ffmpeg,
    which gives a mono mixdown: its loudness is not the channels' sum, so it is marked."""
    import soundfile

    try:
        with soundfile.SoundFile(str(path)) as handle:
            rate = handle.samplerate
            limit = int(MAX_SECONDS * rate)
            data = handle.read(frames=min(handle.frames, limit) if handle.frames > 0 else limit, dtype="float32",
                               always_2d=True)
            return data, rate, handle.frames > limit, False
    except Exception:  # libsndfile reports unknown formats through several exception types
        pass
    from ml_backend.analysis.audio import AudioError, load_audio

    rate = 48000  # ffmpeg decodes the rest (m4a, opus in odd containers) to mono at this rate
    try:  # it cannot stop part-way: longer files are refused (30 min of 48 kHz mono is 345 MB)
        mono = load_audio(path, sr=rate, max_seconds=FFMPEG_MAX_SECONDS)
    except AudioError as exc:
        raise ValueError(str(exc)) from None
    limit = int(MAX_SECONDS * rate)
    return mono[:limit, None], rate, len(mono) > limit, True


def true_peak_dbtp(data: np.ndarray) -> float:
    """The true peak in dBTP: the largest absolute value of any channel after OVERSAMPLE x oversampling, computed
    block by block with overlap so the oversampled copy stays small."""
    from scipy.signal import resample_poly

    peak = 0.0
    frames = data.shape[0]
    for channel in range(data.shape[1]):
        x = data[:, channel]
        for start in range(0, frames, PEAK_BLOCK):
            lo, hi = max(0, start - PEAK_MARGIN), min(frames, start + PEAK_BLOCK + PEAK_MARGIN)
            up = resample_poly(x[lo:hi], OVERSAMPLE, 1)
            keep = up[(start - lo) * OVERSAMPLE: (min(frames, start + PEAK_BLOCK) - lo) * OVERSAMPLE]
            if keep.size:
                peak = max(peak, float(np.max(np.abs(keep))))
    return 20 * np.log10(peak) if peak > 0 else float("-inf")


def clipped_runs(data: np.ndarray) -> int:
    """How many runs of at least CLIP_RUN consecutive full-scale samples the channels hold."""
    runs = 0
    for channel in range(data.shape[1]):
        hot = np.abs(data[:, channel]) >= CLIP_LEVEL
        if not hot.any():
            continue
        edges = np.diff(np.concatenate(([0], hot.astype(np.int8), [0])))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        runs += int(np.sum(ends - starts >= CLIP_RUN))
    return runs


def fingerprint(mono: np.ndarray, rate: int) -> np.ndarray | None:
    """A unit vector of 12 x FINGERPRINT_BINS: librosa's chroma, averaged into equal time bins over the song,
    each bin normalised (so loudness does not matter), then centred. Two encodings of one song land close to
    1.0 in cosine similarity; None for silence or a song too short for the bins."""
    import librosa
    import soxr

    y = soxr.resample(mono, rate, FINGERPRINT_SR) if rate != FINGERPRINT_SR else mono
    if y.size < FINGERPRINT_HOP * FINGERPRINT_BINS or not np.any(y):
        return None
    chroma = librosa.feature.chroma_stft(y=y, sr=FINGERPRINT_SR, n_fft=2 * FINGERPRINT_HOP,
                                         hop_length=FINGERPRINT_HOP)
    bins = np.array_split(np.arange(chroma.shape[1]), FINGERPRINT_BINS)
    pooled = np.stack([chroma[:, b].mean(axis=1) for b in bins], axis=1)
    pooled /= np.linalg.norm(pooled, axis=0, keepdims=True) + 1e-9
    vector = pooled.ravel() - pooled.mean()
    norm = np.linalg.norm(vector)
    return (vector / norm).astype(np.float32) if norm > 0 else None


def measure(path: Path) -> dict:
    """Loudness, peaks, clipping, length and fingerprint of one song: ``{"lufs", "true_peak", "sample_peak",
    "clipped_runs", "seconds", "channels", "rate", "cut", "mixdown", "fingerprint" (list or None), "error"}``; on
    failure only ``error`` (a message naming the file) is set."""
    import pyloudnorm

    try:
        data, rate, cut, mixdown = _read(Path(path))
    except Exception as exc:
        return {"error": f"{Path(path).name}: cannot decode ({exc})"}
    if data.shape[0] == 0:
        return {"error": f"{Path(path).name}: no audio"}
    meter = pyloudnorm.Meter(rate)
    try:
        lufs = float(meter.integrated_loudness(data if data.shape[1] > 1 else data[:, 0]))
    except ValueError:  # shorter than one 400 ms gating block
        lufs = float("-inf")
    sample_peak = float(np.max(np.abs(data)))
    vector = fingerprint(data.mean(axis=1), rate)
    return {
        "lufs": lufs if np.isfinite(lufs) else None,
        "true_peak": true_peak_dbtp(data) if sample_peak > 0 else None,
        "sample_peak": 20 * np.log10(sample_peak) if sample_peak > 0 else None,
        "clipped_runs": clipped_runs(data),
        "seconds": data.shape[0] / rate,
        "channels": int(data.shape[1]),
        "rate": int(rate),
        "cut": bool(cut),
        "mixdown": bool(mixdown),
        "fingerprint": vector.tolist() if vector is not None else None,
        "error": "",
    }


MAX_PAIRS = 5000  # pairs kept: a folder of many copies of few songs would otherwise list n^2 pairs


def near_duplicates(vectors: dict[str, np.ndarray], threshold: float, block: int = 1024,
                    limit: int = MAX_PAIRS) -> list[tuple]:
    """(name a, name b, cosine similarity) for the pairs of fingerprints at or above ``threshold``, most similar
    first, at most ``limit`` of them. The similarity matrix is computed ``block`` rows at a time (5,000 songs: 5
    blocks of 1024 x 5000 float32, 20 MB each)."""
    names = list(vectors)
    if len(names) < 2:
        return []
    matrix = np.stack([vectors[n] for n in names]).astype(np.float32)
    pairs = []
    for start in range(0, len(names), block):
        sims = matrix[start:start + block] @ matrix.T
        rows, cols = np.nonzero(sims >= threshold)
        for r, c in zip(rows, cols):
            i = start + int(r)
            if int(c) > i:
                pairs.append((names[i], names[int(c)], float(sims[r, c])))
        if len(pairs) > 2 * limit:  # keep memory bounded while scanning
            pairs = sorted(pairs, key=lambda p: -p[2])[:limit]
    return sorted(pairs, key=lambda p: -p[2])[:limit]
