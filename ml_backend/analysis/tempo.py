"""Tempo and beats from an onset envelope, decided from evidence that holds on real recordings.

A song has a pulse when three things agree: the onset envelope repeats at the beat period (its windowed,
mean-removed autocorrelation at that lag), it does so all through the song (the share of windows whose own
strongest period is the same pulse or a simple multiple of it), and the beat tracker, asked for that tempo,
follows it with steady beat periods. A held chord (no onsets), noise and speech (no repeating period) fail.
The tempo level is chosen from the autocorrelation, read between frames (oversampled), with a broad preference
for what a musician would tap (around TAP_BPM); levels whose evidence is nearly tied are decided by a rule that
does not depend on the absolute tempo (the fastest of them), so a small stretch moves the tempo by the stretch
factor rather than to another level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ACF_WINDOW = 384  # onset frames per autocorrelation window (8.9 s at 43 frames/s: two bars at 54 bpm)
ACF_HOP = 192  # frames between windows (half overlap)
MIN_BPM, MAX_BPM = 40.0, 240.0  # the range of periods looked at
TAP_BPM = 115.0  # centre of the preference for the tapped level (rendered songs at 70-160 bpm are tapped there)
TAP_OCTAVES = 1.2  # width (standard deviation in octaves) of that preference: broad, so the ACF decides; a
# 0.92 stretch then moves the preference between two levels an octave apart by only 6 %
LEVEL_TIE = 0.15  # levels scoring within this share of the best are tied: a stretch could swap their order
ACF_OVERSAMPLE = 4  # autocorrelation lags per frame: a beat period falls between frames (a 130 bpm beat is 19.9
# frames), and the peak height read at whole frames drops by up to a fifth, enough to swap two levels
MIN_PULSE_STRENGTH = 0.2  # mean autocorrelation at the beat period; noise ~0.06, speech ~0.09, rubato ~0.10
MIN_STABILITY = 0.5  # share of windows whose own period is the pulse's (or 2x, 3x, 1/2x, ...)
MAX_BEAT_CV = 0.12  # beat-period variation (std / mean of inter-beat intervals) of a steady pulse
MIN_ONSET_DB = 0.05  # mean onset strength (dB rise per mel band and frame) below this: nothing happens
MIN_ONSET_CONTRAST = 1.5  # 95th percentile over median of the onsets: a held tone's ripple is flat (~1.2)
MIN_TEMPO_BEATS = 8  # fewer beats than this give no tempo (a one-second clip has no meaningful bpm)
WINDOW_AGREEMENT = 0.6  # a window agrees when its autocorrelation at the pulse is this share of its own peak
RELATED = (1 / 4, 1 / 3, 1 / 2, 2 / 3, 1.0, 3 / 2, 2.0, 3.0, 4.0)  # period ratios that are the same pulse
RELATED_TOLERANCE = 0.05  # relative


@dataclass
class Pulse:
    """The pulse of a song: `bpm` (None without a pulse), `beats` in seconds, `confidence` in [0, 1], and the
    evidence: `strength` (autocorrelation at the beat period), `stability` (share of windows agreeing),
    `beat_cv` (variation of the tracked beat periods); `triple_feel`: autocorrelation at a third of the beat
    minus that at a half (positive when the beat divides in three, as in 6/8)."""

    bpm: float | None
    beats: np.ndarray
    confidence: float
    strength: float
    stability: float
    beat_cv: float
    triple_feel: float = 0.0


def window_acf(onset: np.ndarray, oversample: int = 1) -> np.ndarray:
    """Autocorrelation of the mean-removed onset envelope in windows of ACF_WINDOW frames every ACF_HOP frames,
    each normalised by its lag-0 value: shape (windows, ACF_WINDOW * oversample), lag in frames / `oversample`
    (band-limited interpolation between whole-frame lags, which it passes through exactly). A song shorter than
    one window is one window."""
    onset = np.asarray(onset, dtype=np.float64)
    win = min(ACF_WINDOW, len(onset))
    starts = range(0, max(1, len(onset) - win + 1), ACF_HOP)
    frames = np.stack([onset[k: k + win] for k in starts])
    frames = frames - frames.mean(axis=1, keepdims=True)
    spectrum = np.fft.rfft(frames, 2 * win, axis=1)
    acf = np.fft.irfft(np.abs(spectrum) ** 2, 2 * win * oversample, axis=1)[:, :win * oversample]
    acf /= np.maximum(acf[:, :1], 1e-12)  # a window without any change (silence) stays all zero
    out = np.zeros((len(frames), ACF_WINDOW * oversample))
    out[:, :win * oversample] = acf
    return out


def _at(curve: np.ndarray, lag: float) -> float:
    """`curve` linearly interpolated at a fractional lag."""
    if lag >= len(curve) - 1:
        return 0.0
    i = int(lag)
    return float(curve[i] + (lag - i) * (curve[i + 1] - curve[i]))


def acf_peaks(fine_acf: np.ndarray, fps: float, oversample: int) -> list[tuple[float, float]]:
    """(lag in frames, height) of the local maxima of an oversampled mean autocorrelation between MIN_BPM and
    MAX_BPM, each refined by a parabola through its neighbours (position and height)."""
    lo = max(1, int(fps * 60 / MAX_BPM * oversample))
    hi = min(len(fine_acf) - 2, int(np.ceil(fps * 60 / MIN_BPM * oversample)))
    peaks = []
    for i in range(lo, hi + 1):
        a, b, c = fine_acf[i - 1], fine_acf[i], fine_acf[i + 1]
        if not (b >= a and b >= c and b > 0):
            continue
        curve = a - 2 * b + c
        shift = float(np.clip(0.5 * (a - c) / curve, -0.5, 0.5)) if curve < 0 else 0.0
        peaks.append(((i + shift) / oversample, float(b - 0.25 * (a - c) * shift)))
    return peaks


def tap_preference(bpm: float) -> float:
    """How readily a musician taps `bpm` (in (0, 1]): log-normal around TAP_BPM, TAP_OCTAVES wide."""
    return float(np.exp(-0.5 * (np.log2(bpm / TAP_BPM) / TAP_OCTAVES) ** 2))


def choose_period(fine_acf: np.ndarray, fps: float, oversample: int = ACF_OVERSAMPLE) -> float:
    """The beat period in frames. Each autocorrelation peak (a metrical level) scores its height times the
    tapping preference; the levels within LEVEL_TIE of the best are the candidates, and of those the fastest
    (shortest period) is the beat, since it is evident enough to be tapped and the slower ones are its bars or
    half bars. Only ratios of heights and the order of periods decide among near ties, and a time stretch
    changes neither, so a small stretch cannot swap two nearly tied levels the way a tempo preference would.
    MIN_BPM (as a period) when there is no peak at all."""
    peaks = acf_peaks(fine_acf, fps, oversample)
    if not peaks:
        return fps * 60 / MIN_BPM
    scores = [height * tap_preference(60.0 * fps / lag) for lag, height in peaks]
    best = max(scores)
    return min(lag for (lag, _), score in zip(peaks, scores) if score >= (1.0 - LEVEL_TIE) * best)


def stability(acfs: np.ndarray, period: float, fps: float) -> float:
    """Share of windows whose own strongest period (MIN_BPM..MAX_BPM) is `period` or a RELATED multiple."""
    lo, hi = int(fps * 60 / MAX_BPM), min(acfs.shape[1] - 1, int(np.ceil(fps * 60 / MIN_BPM)))
    if hi <= lo or period <= 0:
        return 0.0
    peak = acfs[:, lo: hi + 1].max(axis=1)
    at = np.max([[_at(w, period * k) for k in (0.5, 1.0, 2.0)] for w in acfs], axis=1)
    return float(np.mean(at >= WINDOW_AGREEMENT * np.maximum(peak, 1e-9)))


def track(onset: np.ndarray, fps: float, sr: int, hop: int) -> Pulse:
    """The pulse of an onset envelope sampled at `fps` frames per second (`sr` / `hop`). See the module text."""
    import librosa

    onset = np.asarray(onset, dtype=np.float32)
    none = Pulse(None, np.zeros(0), 0.0, 0.0, 0.0, 0.0)
    if len(onset) < 4 or onset.mean() < MIN_ONSET_DB:
        return none
    contrast = np.percentile(onset, 95) / max(float(np.median(onset)), 1e-6)
    fine = window_acf(onset, ACF_OVERSAMPLE)
    fine = fine[fine[:, 0] > 0.5] if np.any(fine[:, 0] > 0.5) else fine  # windows of silence say nothing
    acfs = fine[:, ::ACF_OVERSAMPLE]  # the whole-frame lags, exactly as without oversampling
    mean_acf = acfs.mean(axis=0)
    period = choose_period(fine.mean(axis=0), fps)
    strength = _at(mean_acf, period)
    steady = stability(acfs, period, fps)
    bpm_guess = 60.0 * fps / period
    _, frames = librosa.beat.beat_track(onset_envelope=onset, sr=sr, hop_length=hop, trim=False,
                                        bpm=bpm_guess, tightness=400)
    frames = trim_beats(np.asarray(frames), onset, fps)
    times = np.asarray(frames, dtype=np.float64) / fps
    ibi = np.diff(times)
    cv = float(ibi.std() / ibi.mean()) if len(ibi) > 1 else 1.0
    triple = (np.mean([_at(mean_acf, period * k) for k in (1 / 3, 2 / 3)])
              - np.mean([_at(mean_acf, period * k) for k in (1 / 4, 1 / 2, 3 / 4)]))
    evidence = Pulse(None, times, 0.0, round(strength, 3), round(steady, 3), round(cv, 3), round(triple, 3))
    if contrast < MIN_ONSET_CONTRAST or strength < MIN_PULSE_STRENGTH or steady < MIN_STABILITY:
        evidence.beats = np.zeros(0)
        return evidence
    if len(times) < MIN_TEMPO_BEATS or cv > MAX_BEAT_CV:
        return evidence
    slope = float(np.polyfit(np.arange(len(times)), times, 1)[0])
    # the tracker's own period must be the one asked for: it follows the pulse rather than a stray grid
    if slope <= 0 or abs(slope * fps / period - 1.0) > RELATED_TOLERANCE:
        return evidence
    # the bpm is the autocorrelation's period, read between frames over the whole song: the tracker's beats
    # sit on whole frames and drift by a few percent where it skips or adds one
    evidence.bpm = round(60.0 * fps / period, 1)
    margin = min(strength / MIN_PULSE_STRENGTH, steady / MIN_STABILITY, MAX_BEAT_CV / max(cv, 1e-3)) - 1.0
    evidence.confidence = round(float(np.clip(0.5 + margin, 0.0, 1.0)), 3)
    return evidence


def trim_beats(frames: np.ndarray, onset: np.ndarray, fps: float) -> np.ndarray:
    """Drop beats (frame indices) before the first and after the last second with real onset activity
    (a one-second mean above a quarter of the song's median), e.g. in a silent lead-in or a reverb tail."""
    if len(frames) == 0:
        return frames
    second = max(1, int(round(fps)))
    activity = np.convolve(onset, np.ones(second) / second, mode="same")
    if not np.any(activity > 0):
        return frames[:0]
    active = np.flatnonzero(activity > 0.25 * np.median(activity[activity > 0]))
    lo, hi = active[0] - second // 2, active[-1] + second // 2
    return frames[(frames >= lo) & (frames <= hi)]
