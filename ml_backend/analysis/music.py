"""Music facts without a model: duration, tempo and beat grid, key, a time-signature guess, and section boundaries
with repetition letters (A, B, C: sections that sound alike share a letter).

The path of one song: `analyze(y, sr)` resamples to ANALYSIS_SR, computes two spectrograms (a short one for
onsets and timbre, a long one for pitch), tracks beats on the onset envelope, averages the features per beat, and
from those beat-synchronous features finds the key (chroma against key profiles), the meter (how strongly harmony
and accents recur every 3 or 4 beats) and the structure (checkerboard novelty on a beat-lag similarity band, then
repeated sections clustered by their mean features). Every step works on arrays that grow linearly with the
song's length, so an hour-long file does not need an hour-squared similarity matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from label_config.vocabulary import KEYSCALES, SECTION_LABELS
from ml_backend.analysis.tempo import MIN_TEMPO_BEATS, track

ANALYSIS_SR = 11025  # Hz: enough for onsets, chroma and timbre; a quarter of the work of 44.1 kHz
HOP = 256  # samples per onset/timbre frame at ANALYSIS_SR (23 ms)
CHROMA_FFT = 4096  # samples: 2.7 Hz bins resolve semitones down to the bass register
CHROMA_HOP = 1024  # samples per chroma frame (93 ms), a multiple of HOP
FEATURE_CHUNK_FRAMES = 4096  # HOP frames per feature chunk (95 s), a multiple of CHROMA_HOP // HOP
SILENCE = "Silence"  # the one section label the analysis is sure of
SILENCE_DB = -60.0  # dBFS: RMS below this is silence
MIN_ANALYSIS_SECONDS = 0.25  # shorter audio gets no tempo, key or structure
KEY_SURE_SECONDS = 15.0  # key confidence is scaled down for clips shorter than this
METERS = (2, 3, 4)  # beats per bar looked for (2 through the half-bar test on the four-beat grid); compound duple (6/8) is 2 beats of three pulses each
MIN_METER_CONTRAST = 0.5  # downbeat contrast (standardised evidence) the winning bar length must reach
MIN_METER_MARGIN = 0.13  # and its lead over the runner-up, as a share of its own contrast
MIN_METER_BARS = 4  # fewer bars than this give no meter
METER_WEIGHTS = (1.0, 0.3)  # harmony change, accent: on the rendered songs chords mark bars best (11/12 vs 10/12)
MIN_HALF_BAR_BEATS = 64  # beats (16 four-beat bars) before "2" rather than "4" is said with confidence
HALF_BAR_DOWNBEAT = 0.4  # rendered 2/4 songs 0.49, 4/4 songs -0.15..0.13 (one 4/4 song at 72 bpm: 0.84)
TRIPLE_FEEL = 0.2  # rendered 6/8 songs 0.48-0.57, simple meters -0.08..0.00; a shuffle (tomatoes) 0.64
MIN_SILENCE_SECONDS = 2.0  # a silent stretch at least this long becomes a Silence section
MIN_SECTION_SECONDS = 6.0  # boundaries closer than this are not both kept
NOVELTY_SECONDS = 8.0  # half-width of the checkerboard kernel
CHROMA_SMOOTH_BEATS = 4  # chroma is averaged over a bar so chord changes inside a section are not boundaries
NOVELTY_THRESHOLD = 0.2  # a peak must rise this fraction of the way from the median to the maximum novelty
MIN_NOVELTY = 0.1  # and reach this much in absolute terms (steady noise peaks at 0.08, section changes 0.13+)
REPEAT_DISTANCE = 0.55  # clustering threshold on standardised section-feature distance (per dimension)

# Key profiles of Albrecht & Shanahan (2013), pitch-class distributions of major and minor pieces, tonic first.
# On our rendered songs they separate a major key from its relative minor better than Krumhansl-Kessler's.
_MAJOR_PROFILE = np.array([0.238, 0.006, 0.111, 0.006, 0.137, 0.094, 0.016, 0.214, 0.009, 0.080, 0.008, 0.081])
_MINOR_PROFILE = np.array([0.220, 0.006, 0.104, 0.123, 0.019, 0.103, 0.012, 0.214, 0.062, 0.022, 0.061, 0.052])


@dataclass
class Section:
    """A stretch of the song in seconds. `letter` is shared by sections that repeat (A, B, C, ...; "" for
    silence); `label` is set only where the DSP is sure ("Silence"); `loudness` is the level of the section's
    mean power in dBFS."""

    start: float
    end: float
    letter: str
    label: str = ""
    loudness: float = SILENCE_DB


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
                                               SILENCE if silent else "", round(float(_db(_rms(y))), 1))])
    feats = _features(y)
    # the pulse and the structure are read between a leading and a trailing silence (the jump out of silence
    # is no onset), so silence added around a song moves every time by its length and changes nothing else
    span = _music_span(feats.rms_db, duration)
    f0, f1 = int(round(span[0] * ANALYSIS_SR / HOP)), int(round(span[1] * ANALYSIS_SR / HOP)) + 1
    onset = feats.onset[f0:f1].copy()
    onset[:1] = 0.0
    pulse = track(onset, ANALYSIS_SR / HOP, ANALYSIS_SR, HOP)
    bpm, beats = pulse.bpm, (pulse.beats + f0 * HOP / ANALYSIS_SR if pulse.bpm else np.zeros(0))
    keyscale, key_conf = _key(feats.chroma)
    key_conf = round(key_conf * min(1.0, duration / KEY_SURE_SECONDS), 3)  # a short clip says little
    beat_frames = _grid_frames(beats, *span)
    chroma_b = _sync(feats.chroma, beat_frames * HOP // CHROMA_HOP)
    mfcc_b = _sync(feats.mfcc, beat_frames)
    onset_b = _sync(feats.onset[None, :], beat_frames)
    rms_b = _sync(feats.rms_db[None, :], beat_frames)
    meter = Meter(4, 0, 0.0, False)
    if bpm is not None:
        meter = _meter(chroma_b, onset_b[0], pulse.triple_feel)
    # an unsure bar grid would move boundaries by a beat or two: they stay on beats then
    bar_starts = np.arange(meter.phase, len(beat_frames), meter.beats_per_bar) if meter.confident else None
    sections = _sections(chroma_b, mfcc_b, rms_b, beat_frames, feats.rms_db, duration, bar_starts)
    sections = _carve_silence(sections, feats.rms_db, duration)
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


def _db(rms: float | np.ndarray) -> float | np.ndarray:
    """RMS amplitude to dBFS, floored at -100 dB."""
    return 20.0 * np.log10(np.maximum(rms, 1e-5))


def _level(frames_db: np.ndarray) -> float:
    """Level in dBFS of the mean power of per-frame levels (so a quiet tail does not drag a loud section down)."""
    if len(frames_db) == 0:
        return SILENCE_DB
    return round(float(_db(np.sqrt(np.mean(10.0 ** (np.asarray(frames_db) / 10.0))))), 1)


def _is_silent(y: np.ndarray) -> bool:
    """True when the whole signal is below SILENCE_DB (or empty)."""
    return len(y) == 0 or _db(_rms(y)) < SILENCE_DB


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
        rms_db.append(_db(np.sqrt(spec.sum(axis=0) * 2 / n_fft ** 2 / 0.375)))  # Hann window energy correction
        j0, j1 = -(-k0 // per_chroma), -(-k1 // per_chroma)  # chroma frames centred inside this chunk
        if j1 > j0:
            cspec = _power_frames(y, CHROMA_FFT, CHROMA_HOP, j0, j1)
            chroma.append(librosa.feature.chroma_stft(S=cspec, sr=sr, n_fft=CHROMA_FFT, tuning=0.0))
    return _Features(onset=np.concatenate(onset).astype(np.float32), mfcc=np.concatenate(mfcc, axis=1),
                     rms_db=np.concatenate(rms_db), chroma=np.concatenate(chroma, axis=1))


def _music_span(rms_db: np.ndarray, duration: float) -> tuple[float, float]:
    """(start, end) seconds of the song without a leading and a trailing silent run (see _silent_runs)."""
    start, end = 0.0, duration
    for lo, hi in _silent_runs(rms_db, duration):
        if lo <= 0.0:
            start = hi
        elif hi >= duration - 1e-3:
            end = lo
    return (start, end) if end > start else (0.0, duration)


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

def _key(chroma: np.ndarray) -> tuple[str | None, float]:
    """Best of the 24 keys by correlation of the song's mean chroma with rotated key profiles. Confidence in
    [0, 1]: the margin of the best correlation over the runner-up, scaled so 0.1 or more counts as sure."""
    profile = chroma.mean(axis=1)
    if not np.any(profile > 0):
        return None, 0.0
    scores = np.empty(24)
    for tonic in range(12):
        for m, template in enumerate((_MAJOR_PROFILE, _MINOR_PROFILE)):
            scores[m * 12 + tonic] = np.corrcoef(profile, np.roll(template, tonic))[0, 1]
    order = np.argsort(scores)[::-1]
    best = int(order[0])
    confidence = float(np.clip((scores[best] - scores[order[1]]) * 10.0, 0.0, 1.0))
    return KEYSCALES[best], round(confidence, 3)


# --- meter -------------------------------------------------------------------------------------------------------

@dataclass
class Meter:
    """Beats per bar (`beats_per_bar`, 2, 3 or 4), the index of the first downbeat among the beats (`phase`),
    the answer in ACE-Step's spelling (`timesignature`: "6" for two beats of three pulses), its `confidence` in
    [0, 1] and whether it is to be predicted (`confident`)."""

    beats_per_bar: int
    phase: int
    confidence: float
    confident: bool
    compound: bool = False

    @property
    def timesignature(self) -> str:
        return "6" if self.compound and self.beats_per_bar == 2 else str(self.beats_per_bar)


def _zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-9)


def _half_bar_like_downbeat(evidence: np.ndarray, phase: int) -> bool:
    """True when, in a four-beat grid starting at `phase`, the third beat carries at least HALF_BAR_DOWNBEAT of
    the first beat's lead over the off-beats: bars of two beats, not four."""
    m = [evidence[phase + k::4].mean() for k in range(4)]
    off = (m[1] + m[3]) / 2
    return bool(m[0] > off and (m[2] - off) >= HALF_BAR_DOWNBEAT * (m[0] - off))


def _meter(chroma_b: np.ndarray, onset_b: np.ndarray, triple_feel: float) -> Meter:
    """The bar from a downbeat estimate: per beat, the evidence that a bar starts there is the harmony change
    (chords change on bar lines) and, weighted less, the accent (METER_WEIGHTS). For each bar
    length in METERS and each phase, the contrast of the evidence at that phase against the other beats; the
    highest contrast wins, and is confident when it reaches MIN_METER_CONTRAST and leads the runner-up by
    MIN_METER_MARGIN. Two beats whose pulses fall in threes (onset autocorrelation at a third of the beat above
    that at a half by TRIPLE_FEEL) are compound duple, 6/8."""
    n = chroma_b.shape[1]
    if n < MIN_METER_BARS * max(METERS):
        return Meter(4, 0, 0.0, False)
    c = chroma_b / (np.linalg.norm(chroma_b, axis=0, keepdims=True) + 1e-9)
    change = np.concatenate([[0.0], 1.0 - np.sum(c[:, 1:] * c[:, :-1], axis=0)])
    w = METER_WEIGHTS
    evidence = w[0] * _zscore(change) + w[1] * _zscore(onset_b)
    scores: dict[int, tuple[float, int]] = {}
    for period in METERS:
        best = (-np.inf, 0)
        for phase in range(period):
            at = np.zeros(n, dtype=bool)
            at[phase::period] = True
            best = max(best, ((evidence[at].mean() - evidence[~at].mean()) / (evidence.std() + 1e-9), phase))
        scores[period] = best
    # two- and four-beat bars nest (every other 2/4 downbeat is a 4/4 one): 4 competes with 3, and the
    # half-bar test alone tells 2 from 4
    ranked = sorted((p for p in scores if p != 2), key=lambda p: -scores[p][0])
    if ranked[0] == 4 and _half_bar_like_downbeat(_zscore(change), scores[4][1]):
        # the four-beat grid's contrast, now read as two bars, against the remaining candidate (3)
        scores[2] = (scores[4][0], scores[4][1] % 2)
        ranked = [2] + [p for p in ranked if p not in (2, 4)]
    top, runner = scores[ranked[0]][0], scores[ranked[1]][0]
    margin = (top - max(runner, 0.0)) / top if top > 0 else 0.0
    confidence = float(np.clip(min(top / MIN_METER_CONTRAST, margin / MIN_METER_MARGIN) / 2.0, 0.0, 1.0))
    confident = bool(top >= MIN_METER_CONTRAST and margin >= MIN_METER_MARGIN)
    if ranked[0] == 2 and n < MIN_HALF_BAR_BEATS:  # 2 against 4 rests on one beat's level in four: needs more bars
        confident, confidence = False, min(confidence, 0.5)
    return Meter(ranked[0], scores[ranked[0]][1], round(confidence, 3), confident, triple_feel >= TRIPLE_FEEL)


# --- structure ---------------------------------------------------------------------------------------------------

def _standardize(x: np.ndarray, floor: float = 1e-9) -> np.ndarray:
    """Zero mean, unit variance per row (dimension), over time. A row that varies less than `floor` (in its own
    units) is scaled by `floor` instead, so that the noise of a feature that does not change is not blown up
    into structure."""
    return (x - x.mean(axis=1, keepdims=True)) / np.maximum(x.std(axis=1, keepdims=True), floor)


def _lag_band(x: np.ndarray, width: int) -> np.ndarray:
    """Similarity of beat i with beat i + lag for lag in [-width, width]: shape (2*width + 1, n), zero outside
    the song. A Gaussian of the Euclidean distance, its scale the median distance within the band, so two
    sections that both differ from the loudest one still look different from each other. Linear in the song's
    length, unlike a full self-similarity matrix."""
    n = x.shape[1]
    dist = np.full((2 * width + 1, n), np.nan)
    for k, lag in enumerate(range(-width, width + 1)):
        if lag >= 0:
            dist[k, : n - lag] = np.sum((x[:, : n - lag] - x[:, lag:]) ** 2, axis=0)
        else:
            dist[k, -lag:] = np.sum((x[:, -lag:] - x[:, : n + lag]) ** 2, axis=0)
    # the floor keeps a song that hardly changes from having its tiny differences stretched into sections
    scale = max(float(np.nanmedian(dist)) if np.any(np.isfinite(dist)) else 0.0, 0.2 * x.shape[0])
    return np.nan_to_num(np.exp(-dist / scale), nan=0.0)


def _novelty(x: np.ndarray, width: int) -> np.ndarray:
    """Foote checkerboard novelty per beat boundary: similarity within the past and within the future minus
    similarity across, with a Gaussian taper; computed from the lag band, O(n * width^2). Near the song's ends
    the kernel is normalised by the part of it that lies inside the song, so a first or last section change is
    not weaker than one in the middle."""
    n = x.shape[1]
    band = _lag_band(x, 2 * width)
    offsets = np.arange(-width, width)  # beats before (<0) and after (>=0) the boundary
    taper = np.exp(-0.5 * ((offsets + 0.5) / (width / 2.0)) ** 2)
    inside = np.pad(np.ones(n), width)
    padded = np.pad(band, ((0, 0), (width, width)))
    sums = {True: np.zeros(n), False: np.zeros(n)}  # weighted similarity: same side of the boundary, across
    mass = {True: np.zeros(n), False: np.zeros(n)}  # kernel weight that lies inside the song
    for a, wa in zip(offsets, taper):
        for b, wb in zip(offsets, taper):
            same = bool((a < 0) == (b < 0))
            # the similarity of beats i+a and i+b sits in the band at row lag = b - a, column i + a
            sums[same] += wa * wb * padded[(b - a) + 2 * width, width + a: width + a + n]
            mass[same] += wa * wb * inside[width + a: width + a + n] * inside[width + b: width + b + n]
    # at most double the weight of a truncated kernel, so a few beats at an end cannot make a boundary
    full = {side: m.max() for side, m in mass.items()}
    within = sums[True] / np.maximum(mass[True], 0.5 * full[True])
    across = sums[False] / np.maximum(mass[False], 0.5 * full[False])
    return np.maximum(within - across, 0.0)


def _peaks(novelty: np.ndarray, min_gap: int) -> list[int]:
    """Local maxima of the novelty at least `min_gap` beats apart, above an adaptive threshold (NOVELTY_THRESHOLD
    of the way from the median to the maximum) and above MIN_NOVELTY; the strongest are chosen first."""
    if len(novelty) < 3 or novelty.max() <= 0:
        return []
    threshold = max(np.median(novelty) + NOVELTY_THRESHOLD * (novelty.max() - np.median(novelty)), MIN_NOVELTY)
    candidates = [i for i in range(1, len(novelty) - 1)
                  if novelty[i] >= novelty[i - 1] and novelty[i] >= novelty[i + 1] and novelty[i] > threshold]
    chosen: list[int] = []
    for i in sorted(candidates, key=lambda j: -novelty[j]):
        if all(abs(i - j) >= min_gap for j in chosen):
            chosen.append(i)
    return sorted(chosen)


def _smooth(x: np.ndarray, beats: int) -> np.ndarray:
    """Moving average over `beats` columns (same length)."""
    if beats <= 1 or x.shape[1] < beats:
        return x
    kernel = np.ones(beats) / beats
    return np.array([np.convolve(row, kernel, mode="same") for row in x])


def _sections(chroma_b: np.ndarray, mfcc_b: np.ndarray, rms_b: np.ndarray, beat_frames: np.ndarray,
              rms_db: np.ndarray, duration: float, bar_starts: np.ndarray | None = None) -> list[Section]:
    """Boundaries from novelty of beat-synchronous harmony (chroma over a bar), timbre (MFCC without the level
    term) and loudness, snapped to beats, and to the nearest bar line where `bar_starts` (grid column indices of
    downbeats) are known; then repetition letters."""
    # floors: a 0.05 change of a chroma bin, 2 units of MFCC, 1.5 dB of level are real changes; less is noise
    feats = np.vstack([_standardize(_smooth(chroma_b, CHROMA_SMOOTH_BEATS), 0.05), _standardize(mfcc_b[1:], 2.0),
                       2.0 * _standardize(rms_b, 1.5)])
    times = beat_frames * HOP / ANALYSIS_SR  # column i spans times[i]..times[i+1]
    n = feats.shape[1]
    if n < 2:
        return [Section(0.0, round(duration, 3), "A", "", _level(rms_db))]
    beat_seconds = float(np.median(np.diff(times)))
    min_gap = max(2, int(round(MIN_SECTION_SECONDS / max(beat_seconds, 1e-3))))
    width = min(max(2, int(round(NOVELTY_SECONDS / max(beat_seconds, 1e-3)))), max(2, n // 4))
    novelty = _novelty(feats, width)
    # no section shorter than min_gap at either end; also keeps the edges' large values out of the threshold
    novelty[:min_gap] = 0.0
    novelty[max(0, n - min_gap + 1):] = 0.0
    cuts = _peaks(novelty, min_gap)
    if bar_starts is not None and len(bar_starts):
        cuts = sorted({int(bar_starts[np.argmin(np.abs(bar_starts - c))]) for c in cuts} - {0, n})
    edges = [0] + cuts + [n]
    sections = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        start = 0.0 if lo == 0 else float(times[lo])
        end = duration if hi == n else float(times[hi])
        f0 = int(start * ANALYSIS_SR / HOP)
        level = _level(rms_db[f0: max(int(end * ANALYSIS_SR / HOP), f0 + 1)])
        sections.append(Section(round(start, 3), round(end, 3), "", "", level))
    letters = _letters([feats[:, lo:hi] for lo, hi in zip(edges[:-1], edges[1:])])
    for section, letter in zip(sections, letters):
        section.letter = letter
    return sections


def _silent_runs(rms_db: np.ndarray, duration: float) -> list[tuple[float, float]]:
    """(start, end) seconds of stretches below SILENCE_DB lasting at least MIN_SILENCE_SECONDS."""
    quiet = np.concatenate([[False], rms_db < SILENCE_DB, [False]])
    edges = np.flatnonzero(np.diff(quiet.astype(int)))
    to_s = HOP / ANALYSIS_SR
    runs = []
    for lo, hi in zip(edges[::2], edges[1::2]):
        start, end = lo * to_s, min(hi * to_s, duration)
        if end - start >= MIN_SILENCE_SECONDS:
            runs.append((round(float(start), 3), round(float(end if hi < len(rms_db) else duration), 3)))
    return runs


def _carve_silence(sections: list[Section], rms_db: np.ndarray, duration: float) -> list[Section]:
    """Cut silent stretches out of the music sections as Silence sections (letter ""); music left shorter than
    half a second beside a silence joins it."""
    runs = _silent_runs(rms_db, duration)
    if not runs:
        return sections
    out: list[Section] = []
    for s in sections:
        pieces = [(s.start, s.end)]
        for lo, hi in runs:
            if lo < s.end and hi > s.start:  # split only the pieces this silence overlaps
                pieces = [p for a, b in pieces for p in ((a, min(b, lo)), (max(a, hi), b)) if p[1] > p[0]]
        out += [Section(a, b, s.letter, s.label, s.loudness) for a, b in pieces if b - a >= 0.5]
    out += [Section(lo, hi, "", SILENCE, SILENCE_DB) for lo, hi in runs]
    out.sort(key=lambda x: x.start)
    # close gaps left by dropped slivers: each section ends where the next begins, the first starts at 0
    for prev, nxt in zip(out, out[1:]):
        prev.end = nxt.start
    out[0].start, out[-1].end = 0.0, round(duration, 3)
    return out


def _letters(parts: list[np.ndarray]) -> list[str]:
    """Repetition letters for consecutive sections from their mean features: average-linkage clustering at
    REPEAT_DISTANCE; letters given in order of first appearance (A, B, C, ...)."""
    if not parts:
        return []
    means = np.array([p.mean(axis=1) for p in parts])
    if len(parts) == 1:
        return ["A"]
    from scipy.cluster.hierarchy import fcluster, linkage

    dist = linkage(means, method="average", metric="euclidean")
    labels = fcluster(dist, t=REPEAT_DISTANCE * np.sqrt(means.shape[1]), criterion="distance")
    names: dict[int, str] = {}
    out = []
    for label in labels:
        if label not in names:
            names[label] = chr(ord("A") + min(len(names), 25))
        out.append(names[label])
    return out


from ml_backend.analysis.labels import letters_to_labels  # noqa: E402,F401  (callers import it from here)
