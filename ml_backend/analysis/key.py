"""The key: the song's mean chroma against key profiles (24 keys), with a confidence."""

from __future__ import annotations

import numpy as np

from label_config.vocabulary import KEYSCALES

# Key profiles of Albrecht & Shanahan (2013), pitch-class distributions of major and minor pieces, tonic first.
# On our rendered songs they separate a major key from its relative minor better than Krumhansl-Kessler's.
_MAJOR_PROFILE = np.array([0.238, 0.006, 0.111, 0.006, 0.137, 0.094, 0.016, 0.214, 0.009, 0.080, 0.008, 0.081])
_MINOR_PROFILE = np.array([0.220, 0.006, 0.104, 0.123, 0.019, 0.103, 0.012, 0.214, 0.062, 0.022, 0.061, 0.052])


def find_key(chroma: np.ndarray) -> tuple[str | None, float]:
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
