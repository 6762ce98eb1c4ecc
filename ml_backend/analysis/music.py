"""Music facts without a model: duration, tempo and beat grid, key, time signature, and section boundaries
with repetition letters (A, B, C: sections that sound alike share a letter); labels from the form.

The path of one song: `analyze(y, sr)` resamples to ANALYSIS_SR, computes two spectrograms (a short one for
onsets and timbre, a long one for pitch), finds the pulse on the onset envelope (tempo.py), averages the features
per beat, and from those beat-synchronous features finds the key (key.py: chroma against key profiles), the meter
and downbeats (meter.py: where harmony changes and accents fall) and the structure (structure.py: checkerboard
novelty on a beat-lag similarity band, boundaries on bar lines, repeated sections clustered by their mean
features); labels.py names the sections. Every step works on arrays that grow linearly with the song's length,
so an hour-long file does not need an hour-squared similarity matrix."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ml_backend.analysis.frames import ANALYSIS_SR, CHROMA_FFT, CHROMA_HOP, HOP, SILENCE_DB, db
from ml_backend.analysis.key import find_key
from ml_backend.analysis.meter import Meter, find_meter
from ml_backend.analysis.structure import SILENCE, Section, carve_silence, find_sections, music_span
from ml_backend.analysis.tempo import MIN_TEMPO_BEATS, track

__all__ = ["ANALYSIS_SR", "HOP", "SILENCE", "MusicAnalysis", "Section", "analyze", "letters_to_labels", "warm_up"]

FEATURE_CHUNK_FRAMES = 4096  # HOP frames per feature chunk (95 s), a multiple of CHROMA_HOP // HOP
MIN_ANALYSIS_SECONDS = 0.25  # shorter audio gets no tempo, key or structure
KEY_SURE_SECONDS = 15.0  # key confidence is scaled down for clips shorter than this


@dataclass
class MusicAnalysis:
    """What `analyze` finds. Times in seconds, `bpm` in beats per minute, `keyscale` in ACE-Step spelling
    ("F# minor"), `timesignature` the beats per bar as ACE-Step reads it ("2", "3", "4", "6" for 6/8), trusted
    only when `timesignature_confident`. `bpm_confidence` and `meter_confidence` are in [0, 1]; `downbeats` are
    the first beats of the bars (seconds), empty without a pulse."""

    duration: float
    bpm: float | None
    beats: list[float]
    keyscale: str | None
    key_confidence: float
    timesignature: str
    timesignature_confident: bool
    sections: list[Section] = field(default_factory=list)
    bpm_confidence: float = 0.0
    meter_confidence: float = 0.0
    downbeats: list[float] = field(default_factory=list)


@dataclass
class _Features:
    """Frame-level features of one song at ANALYSIS_SR."""

    onset: np.ndarray  # onset strength per HOP frame
    mfcc: np.ndarray  # (13, frames) per HOP frame
    rms_db: np.ndarray  # RMS level in dBFS per HOP frame
    chroma: np.ndarray  # (12, frames) per CHROMA_HOP frame


def analyze(y: np.ndarray, sr: int) -> MusicAnalysis:
    """Analyse a mono signal `y` sampled at `sr` Hz (any rate; resampled to ANALYSIS_SR internally)."""
    from ml_backend.analysis.audio import resample

    y = np.asarray(y, dtype=np.float32)
    duration = len(y) / float(sr)
    y = resample(y, sr, ANALYSIS_SR)
    if _is_silent(y) or len(y) < MIN_ANALYSIS_SECONDS * ANALYSIS_SR:
        silent = _is_silent(y)  # a blip too short to measure is one section, labelled only if it is silent
        return MusicAnalysis(duration=duration, bpm=None, beats=[], keyscale=None, key_confidence=0.0,
                             timesignature="4", timesignature_confident=False,
                             sections=[Section(0.0, round(duration, 3), "" if silent else "A",
                                               SILENCE if silent else "", round(float(db(_rms(y))), 1))])
    feats = _features(y)
    # the pulse and the structure are read between a leading and a trailing silence (the jump out of silence
    # is no onset), so silence added around a song moves every time by its length and changes nothing else
    span = music_span(feats.rms_db, duration)
    f0, f1 = int(round(span[0] * ANALYSIS_SR / HOP)), int(round(span[1] * ANALYSIS_SR / HOP)) + 1
    onset = feats.onset[f0:f1].copy()
    onset[:1] = 0.0
    pulse = track(onset, ANALYSIS_SR / HOP, ANALYSIS_SR, HOP)
    bpm, beats = pulse.bpm, (pulse.beats + f0 * HOP / ANALYSIS_SR if pulse.bpm else np.zeros(0))
    keyscale, key_conf = find_key(feats.chroma)
    key_conf = round(key_conf * min(1.0, duration / KEY_SURE_SECONDS), 3)  # a short clip says little
    beat_frames = _grid_frames(beats, *span)
    chroma_b = _sync(feats.chroma, beat_frames * HOP // CHROMA_HOP)
    mfcc_b = _sync(feats.mfcc, beat_frames)
    onset_b = _sync(feats.onset[None, :], beat_frames)
    rms_b = _sync(feats.rms_db[None, :], beat_frames)
    meter = Meter(4, 0, 0.0, False)
    if bpm is not None:
        meter = find_meter(chroma_b, onset_b[0], pulse.triple_feel)
    # an unsure bar grid would move boundaries by a beat or two: they stay on beats then
    bar_starts = np.arange(meter.phase, len(beat_frames), meter.beats_per_bar) if meter.confident else None
    sections = find_sections(chroma_b, mfcc_b, rms_b, beat_frames, feats.rms_db, duration, bar_starts)
    sections = carve_silence(sections, feats.rms_db, duration)
    downbeats = [round(float(beat_frames[i] * HOP / ANALYSIS_SR), 3) for i in
                 (bar_starts if bar_starts is not None else [])]
    return MusicAnalysis(duration=duration, bpm=bpm, beats=[round(float(b), 3) for b in beats],
                         keyscale=keyscale, key_confidence=key_conf, timesignature=meter.timesignature,
                         timesignature_confident=meter.confident, sections=sections,
                         bpm_confidence=pulse.confidence, meter_confidence=meter.confidence, downbeats=downbeats)


def warm_up() -> None:
    """Run the analysis once on a few seconds of synthetic clicks and chords so librosa's numba functions are
    compiled at start-up rather than during the first request."""
    sr = ANALYSIS_SR
    t = np.arange(int(8 * sr)) / sr
    y = 0.1 * np.sin(2 * np.pi * 220 * t) * (1 + (t * 2 % 1 < 0.05))
    analyze(y.astype(np.float32), sr)


# --- features ----------------------------------------------------------------------------------------------------

def _rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if len(y) else 0.0


def _is_silent(y: np.ndarray) -> bool:
    """True when the whole signal is below SILENCE_DB (or empty)."""
    return len(y) == 0 or db(_rms(y)) < SILENCE_DB


def _power_frames(y: np.ndarray, n_fft: int, hop: int, k0: int, k1: int) -> np.ndarray:
    """Power spectrogram frames k0..k1-1 of `y`, frame k centred on sample k * hop (zeros beyond the ends), the
    same frames a centred librosa.stft of the whole signal gives, computed from a slice."""
    import librosa

    lo, hi = k0 * hop - n_fft // 2, (k1 - 1) * hop + n_fft // 2 + 1
    seg = y[max(lo, 0): min(hi, len(y))]
    if lo < 0 or hi > len(y):
        seg = np.pad(seg, (max(0, -lo), max(0, hi - len(y))))
    power = np.abs(librosa.stft(seg, n_fft=n_fft, hop_length=hop, center=False))
    power **= 2
    return power


def _features(y: np.ndarray) -> _Features:
    """Onset strength, MFCC and RMS from a 1024-sample STFT; chroma from a CHROMA_FFT STFT. Computed in chunks
    of FEATURE_CHUNK_FRAMES so an hour-long file never holds an hour of spectrogram; every feature is per
    frame (levels against a fixed full-scale reference, not the song's maximum), so chunks join seamlessly."""
    import librosa

    sr, n_fft = ANALYSIS_SR, 1024
    n = 1 + len(y) // HOP  # frames of a centred STFT
    per_chroma = CHROMA_HOP // HOP
    mel_basis = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=64, fmax=sr / 2)
    full_scale = (n_fft / 4) ** 2  # power of a full-scale sine's peak bin under a Hann window
    onset, mfcc, rms_db, chroma = [], [], [], []
    previous = None  # the last mel frame of the previous chunk, for the onset difference
    for k0 in range(0, n, FEATURE_CHUNK_FRAMES):
        k1 = min(n, k0 + FEATURE_CHUNK_FRAMES)
        spec = _power_frames(y, n_fft, HOP, k0, k1)
        mel_db = librosa.power_to_db(mel_basis @ spec, ref=full_scale, amin=full_scale * 1e-8, top_db=None)
        # onset strength: mean positive change of the log-mel bands from one frame to the next
        with_prev = mel_db if previous is None else np.concatenate([previous, mel_db], axis=1)
        rise = np.maximum(np.diff(with_prev, axis=1), 0.0).mean(axis=0)
        onset.append(np.concatenate([[0.0], rise]) if previous is None else rise)
        previous = mel_db[:, -1:]
        mfcc.append(librosa.feature.mfcc(S=mel_db, n_mfcc=13))
        rms_db.append(db(np.sqrt(spec.sum(axis=0) * 2 / n_fft ** 2 / 0.375)))  # Hann window energy correction
        j0, j1 = -(-k0 // per_chroma), -(-k1 // per_chroma)  # chroma frames centred inside this chunk
        if j1 > j0:
            cspec = _power_frames(y, CHROMA_FFT, CHROMA_HOP, j0, j1)
            chroma.append(librosa.feature.chroma_stft(S=cspec, sr=sr, n_fft=CHROMA_FFT, tuning=0.0))
    return _Features(onset=np.concatenate(onset).astype(np.float32), mfcc=np.concatenate(mfcc, axis=1),
                     rms_db=np.concatenate(rms_db), chroma=np.concatenate(chroma, axis=1))


def _grid_frames(beats: np.ndarray, start: float, end: float) -> np.ndarray:
    """HOP-frame indices of the grid the structure is computed on, between `start` and `end` seconds: the
    beats, or half-second steps when there are too few beats (music without a pulse). Lead-in and tail before
    the first and after the last beat are not columns of their own; they join the first and last section."""
    if len(beats) < MIN_TEMPO_BEATS:
        beats = np.arange(start, end, 0.5)
    frames = np.round(np.asarray(beats) * ANALYSIS_SR / HOP).astype(int)
    keep = (frames >= int(start * ANALYSIS_SR / HOP)) & (frames <= int(end * ANALYSIS_SR / HOP))
    return np.unique(frames[keep])


def _sync(feature: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Mean of `feature` (dims, frames) between consecutive `bounds` frame indices: (dims, len(bounds) - 1)."""
    n = feature.shape[1]
    bounds = np.clip(bounds, 0, n)
    cums = np.concatenate([np.zeros((feature.shape[0], 1)), np.cumsum(feature, axis=1)], axis=1)
    lo, hi = bounds[:-1], np.maximum(bounds[1:], bounds[:-1] + 1)
    hi = np.minimum(hi, n)
    lo = np.minimum(lo, hi - 1)
    return (cums[:, hi] - cums[:, lo]) / np.maximum(hi - lo, 1)


# --- key ---------------------------------------------------------------------------------------------------------


from ml_backend.analysis.labels import letters_to_labels  # noqa: E402,F401  (callers import it from here)
