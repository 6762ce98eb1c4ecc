"""From the analysis to model windows: which regions a song gets (SEGMENTATION=structure: the analysed sections;
fixed: windows of SEGMENT_SECONDS overlapping by OVERLAP_SECONDS, as the original captioning pipeline cut songs),
and the windows of at most 30 s the model hears for each region. A region longer than the model's window is split
into equal windows whose texts are joined back into that one region.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ml_backend.analysis.music import SILENCE, MusicAnalysis, Section

SEGMENTATIONS = ("structure", "fixed")  # SEGMENTATION: one region per section, or fixed-length windows
MAX_WINDOW_SECONDS = 30.0  # Qwen2-Audio's audio encoder sees at most 30 s


@dataclass
class Window:
    """What the model hears: song seconds [start, end), at most MAX_WINDOW_SECONDS long, and the index of the
    region (in the list plan_regions returned) its text belongs to."""

    start: float
    end: float
    region: int


def plan_regions(analysis: MusicAnalysis, segmentation: str, segment_seconds: float = MAX_WINDOW_SECONDS,
                 overlap_seconds: float = 2.0) -> list[Section]:
    """The regions of one song, in time order, inside [0, duration] seconds.

    "structure": the analysis sections (one region over the whole song when it found none). "fixed": regions of
    `segment_seconds` starting every `segment_seconds - overlap_seconds`; the last one ends at the song's end
    (a remainder shorter than the overlap is absorbed by the region before). A fixed region takes the repetition
    letter, and a sure label such as Silence, of the analysis section under its midpoint."""
    duration = max(0.0, float(analysis.duration))
    if segmentation not in SEGMENTATIONS:
        raise ValueError(f"segmentation {segmentation!r}: use one of {', '.join(SEGMENTATIONS)}")
    if segmentation == "structure":
        sections = [replace(s, start=_clamp(s.start, duration), end=_clamp(s.end, duration))
                    for s in analysis.sections]
        sections = [s for s in sections if s.end > s.start]
        return sections or ([Section(0.0, duration, "A")] if duration > 0 else [])
    if not 0 < segment_seconds <= MAX_WINDOW_SECONDS:
        raise ValueError(f"segment_seconds={segment_seconds}: use more than 0 and at most {MAX_WINDOW_SECONDS:g}")
    if not 0 <= overlap_seconds < segment_seconds / 2:
        raise ValueError(f"overlap_seconds={overlap_seconds}: use 0 to less than half of segment_seconds")
    return [_fixed_region(analysis.sections, start, end) for start, end in
            fixed_spans(duration, segment_seconds, overlap_seconds)]


def fixed_spans(duration: float, segment_seconds: float, overlap_seconds: float) -> list[tuple[float, float]]:
    """(start, end) seconds of fixed windows over [0, duration]: `segment_seconds` long, each starting
    `segment_seconds - overlap_seconds` after the previous one; the last one is moved back to end exactly at
    `duration` (overlapping its neighbour more) so no window is shorter than needed or longer than
    `segment_seconds`. A song shorter than one window is one span."""
    if duration <= 0:
        return []
    step = segment_seconds - overlap_seconds
    spans = []
    start = 0.0
    while start + segment_seconds < duration - 1e-6:
        spans.append((round(start, 3), round(start + segment_seconds, 3)))
        start += step
    spans.append((round(max(0.0, duration - segment_seconds), 3), round(duration, 3)))
    return spans


def _clamp(t: float, duration: float) -> float:
    return round(min(max(float(t), 0.0), duration), 3)


def _fixed_region(sections: list[Section], start: float, end: float) -> Section:
    """A fixed region with the letter and sure label of the analysis section under its midpoint."""
    mid = (start + end) / 2
    under = next((s for s in sections if s.start <= mid < s.end), sections[-1] if sections else None)
    if under is None:
        return Section(start, end, "A")
    return Section(start, end, under.letter, under.label, under.loudness)


def plan_windows(regions: list[Section], max_seconds: float = MAX_WINDOW_SECONDS) -> list[Window]:
    """Model windows for the regions, in order: a region up to `max_seconds` is one window; a longer one is cut
    into the fewest equal windows of at most `max_seconds`. Regions the analysis is sure are silent get no
    window (there is nothing to describe), and neither do empty ones."""
    if max_seconds <= 0:
        raise ValueError(f"max_seconds={max_seconds}: must be positive")
    windows = []
    for index, region in enumerate(regions):
        length = region.end - region.start
        if length <= 0 or region.label == SILENCE:
            continue
        pieces = max(1, math.ceil(length / max_seconds - 1e-9))
        size = length / pieces
        for k in range(pieces):
            start = region.start + k * size
            end = region.end if k == pieces - 1 else region.start + (k + 1) * size
            windows.append(Window(round(start, 3), round(end, 3), index))
    return windows
