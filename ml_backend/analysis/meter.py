"""Meter and downbeats from beat-synchronous features: beats per bar (2, 3 or 4, or 6 for 6/8), the first
downbeat, a confidence, and whether the answer is sure enough to predict."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METERS = (2, 3, 4)  # beats per bar looked for (2 through the half-bar test); 6/8 is 2 beats of three pulses
MIN_METER_CONTRAST = 0.5  # downbeat contrast (standardised evidence) the winning bar length must reach
MIN_METER_MARGIN = 0.13  # and its lead over the runner-up, as a share of its own contrast
MIN_METER_BARS = 4  # fewer bars than this give no meter
METER_WEIGHTS = (1.0, 0.3)  # harmony change, accent: on the rendered songs chords mark bars best (11/12 vs 10/12)
MIN_HALF_BAR_BEATS = 64  # beats (16 four-beat bars) before "2" rather than "4" is said with confidence
HALF_BAR_DOWNBEAT = 0.4  # rendered 2/4 (and 6/8) songs 0.46-0.51, 4/4 songs -0.5..0.34 (one at 72 bpm: 0.64)
TRIPLE_FEEL = 0.2  # rendered 6/8 songs 0.48-0.57, simple meters -0.08..0.00; a shuffle (tomatoes) 0.64


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


def find_meter(chroma_b: np.ndarray, onset_b: np.ndarray, triple_feel: float) -> Meter:
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
