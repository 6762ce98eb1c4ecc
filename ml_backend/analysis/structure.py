"""Sections: boundaries from checkerboard novelty on beat-synchronous features (snapped to bar lines where the
meter is sure), repetition letters by clustering, and silent stretches carved out as Silence sections."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ml_backend.analysis.frames import ANALYSIS_SR, HOP, SILENCE_DB, level

SILENCE = "Silence"  # the one section label the analysis is sure of
MIN_SILENCE_SECONDS = 2.0  # a silent stretch at least this long becomes a Silence section
MIN_SECTION_SECONDS = 6.0  # boundaries closer than this are not both kept
NOVELTY_SECONDS = 8.0  # half-width of the checkerboard kernel
CHROMA_SMOOTH_BEATS = 4  # chroma is averaged over a bar so chord changes inside a section are not boundaries
NOVELTY_THRESHOLD = 0.2  # a peak must rise this fraction of the way from the median to the maximum novelty
MIN_NOVELTY = 0.1  # and reach this much in absolute terms (steady noise peaks at 0.08, section changes 0.13+)
REPEAT_DISTANCE = 0.55  # clustering threshold on standardised section-feature distance (per dimension)
MIN_INTRO_SECONDS = 4.0  # a shorter head before the first repeated material is a pickup, not an intro
MAX_INTRO_SECONDS = 30.0  # labels.INTRO_MAX_SECONDS: a longer head is a part of the song, not an intro
INTRO_CONTRAST = 2.0  # the head is this many times farther from the repeat than the rest of the first section


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


def find_sections(chroma_b: np.ndarray, mfcc_b: np.ndarray, rms_b: np.ndarray, beat_frames: np.ndarray,
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
        return [Section(0.0, round(duration, 3), "A", "", level(rms_db))]
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
    letters = _letters([feats[:, lo:hi] for lo, hi in zip(edges[:-1], edges[1:])])
    intro = _intro_cut(feats, edges, letters, times, bar_starts)
    if intro is not None:
        edges = sorted(set(edges) | {intro})
        letters = _letters([feats[:, lo:hi] for lo, hi in zip(edges[:-1], edges[1:])])
        if letters[0] == letters[1]:  # the cut was made because the head is not the material that follows it
            letters = _in_order(["intro"] + letters[1:])
    sections = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        start = 0.0 if lo == 0 else float(times[lo])
        end = duration if hi == n else float(times[hi])
        f0 = int(start * ANALYSIS_SR / HOP)
        loudness = level(rms_db[f0: max(int(end * ANALYSIS_SR / HOP), f0 + 1)])
        sections.append(Section(round(start, 3), round(end, 3), "", "", loudness))
    for section, letter in zip(sections, letters):
        section.letter = letter
    return sections


def _intro_cut(feats: np.ndarray, edges: list[int], letters: list[str], times: np.ndarray,
               bar_starts: np.ndarray | None) -> int | None:
    """The beat column where a short intro ends inside the first section, or None. An intro often sounds close
    enough to what follows that novelty misses its end (a quiet arrangement of the same chords); repetition
    shows it: when the first section's letter returns later, the first section is that material with
    something before it, as long as the difference. The head is cut off only when it is MIN_INTRO_SECONDS to
    MAX_INTRO_SECONDS long, the rest of the first section still matches the repeat (within REPEAT_DISTANCE)
    and the head clearly does not (INTRO_CONTRAST times farther, and at least half that distance: other music,
    not the same material played longer). On a bar line where the bars are known."""
    repeats = [(lo, hi) for (lo, hi), letter in zip(zip(edges[1:-1], edges[2:]), letters[1:]) if letter == letters[0]]
    if not repeats:
        return None
    length = int(np.median([hi - lo for lo, hi in repeats]))
    cut = edges[1] - length
    if bar_starts is not None and len(bar_starts):
        cut = int(bar_starts[np.argmin(np.abs(bar_starts - cut))])
    if cut <= 0 or cut >= edges[1]:
        return None
    head = float(times[cut] - times[0])
    if not MIN_INTRO_SECONDS <= head <= MAX_INTRO_SECONDS or times[edges[1]] - times[cut] < MIN_SECTION_SECONDS:
        return None
    repeat = np.mean([feats[:, lo:hi].mean(axis=1) for lo, hi in repeats], axis=0)
    limit = REPEAT_DISTANCE * np.sqrt(feats.shape[0])
    rest_distance = float(np.linalg.norm(feats[:, cut:edges[1]].mean(axis=1) - repeat))
    head_distance = float(np.linalg.norm(feats[:, :cut].mean(axis=1) - repeat))
    return cut if rest_distance <= limit and head_distance > max(INTRO_CONTRAST * rest_distance, 0.5 * limit) else None


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


def music_span(rms_db: np.ndarray, duration: float) -> tuple[float, float]:
    """(start, end) seconds of the song without a leading and a trailing silent run (see _silent_runs)."""
    start, end = 0.0, duration
    for lo, hi in _silent_runs(rms_db, duration):
        if lo <= 0.0:
            start = hi
        elif hi >= duration - 1e-3:
            end = lo
    return (start, end) if end > start else (0.0, duration)


def carve_silence(sections: list[Section], rms_db: np.ndarray, duration: float) -> list[Section]:
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
    return _in_order(list(fcluster(dist, t=REPEAT_DISTANCE * np.sqrt(means.shape[1]), criterion="distance")))


def _in_order(groups: list) -> list[str]:
    """Letters A, B, C, ... for group ids, given in order of first appearance (Z for the 26th group on)."""
    names: dict = {}
    out = []
    for group in groups:
        if group not in names:
            names[group] = chr(ord("A") + min(len(names), 25))
        out.append(names[group])
    return out
