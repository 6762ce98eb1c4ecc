"""The frame grid every analysis step shares, and level helpers: sample rate, hop sizes, dBFS."""

from __future__ import annotations

import numpy as np

ANALYSIS_SR = 11025  # Hz: enough for onsets, chroma and timbre; a quarter of the work of 44.1 kHz
HOP = 256  # samples per onset/timbre frame at ANALYSIS_SR (23 ms)
CHROMA_FFT = 4096  # samples: 2.7 Hz bins resolve semitones down to the bass register
CHROMA_HOP = 1024  # samples per chroma frame (93 ms), a multiple of HOP
SILENCE_DB = -60.0  # dBFS: RMS below this is silence


def db(rms: float | np.ndarray) -> float | np.ndarray:
    """RMS amplitude to dBFS, floored at -100 dB."""
    return 20.0 * np.log10(np.maximum(rms, 1e-5))


def level(frames_db: np.ndarray) -> float:
    """Level in dBFS of the mean power of per-frame levels (so a quiet tail does not drag a loud section down)."""
    if len(frames_db) == 0:
        return SILENCE_DB
    return round(float(db(np.sqrt(np.mean(10.0 ** (np.asarray(frames_db) / 10.0))))), 1)
