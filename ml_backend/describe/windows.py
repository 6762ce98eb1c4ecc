"""From the analysis to model windows: which regions a song gets (SEGMENTATION=structure: the analysed sections;
fixed: windows of SEGMENT_SECONDS overlapping by OVERLAP_SECONDS, as the original captioning pipeline cut songs),
and the windows of at most 30 s the model hears. Neighbouring regions are packed into one window and the model is
asked about each of them inside it (a window's ``parts``), so a song of short sections costs about as many windows
as 30 s windows would. A region longer than the model's window is split over several windows, whose texts are
joined back into that one region.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ml_backend.analysis.music import SILENCE, MusicAnalysis, Section

SEGMENTATIONS = ("structure", "fixed")  # SEGMENTATION: one region per section, or fixed-length windows
MAX_WINDOW_SECONDS = 30.0  # Qwen2-Audio's audio encoder sees at most 30 s


# Packing (plan_windows with pack=True). Cuts are allowed at region boundaries and, on a grid, inside regions; the
# plan with the fewest windows wins, where cutting a region that fits a window counts as SPLIT_COST of a window.
MIN_PART_SECONDS = 5.0  # a cut inside a region leaves pieces of at least this: a 2 s piece says little on its own
SPLIT_COST = 0.4  # one window saved is worth up to two cuts inside short regions (each still gets its own notes)
CUT_STEP_SECONDS = 0.5  # grid of cut points inside regions: finer changes nothing measurable, costs time
_BALANCE = 1e-3  # among equal plans, prefer windows of even length (a long region is split into equal pieces)


@dataclass(frozen=True)
class WindowPart:
    """One region's share of a window: song seconds [start, end) of region ``region`` (an index into the list
    plan_regions returned)."""

    region: int
    start: float
    end: float


@dataclass
class Window:
    """What the model hears: song seconds [start, end), at most MAX_WINDOW_SECONDS long, and the parts of regions
    it holds, in time order (one part: the whole window belongs to one region)."""

    start: float
    end: float
    parts: tuple[WindowPart, ...]

    @property
    def region(self) -> int:
        """The region of the window's first part (the only one when the window is not packed)."""
        return self.parts[0].region


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


def plan_windows(regions: list[Section], max_seconds: float = MAX_WINDOW_SECONDS, pack: bool = True) -> list[Window]:
    """Model windows for the regions, in time order. Regions the analysis is sure are silent get no window (there
    is nothing to describe), and neither do empty ones.

    ``pack=False``: one region per window; a region up to `max_seconds` is one window, a longer one is cut into the
    fewest equal windows of at most `max_seconds`. ``pack=True``: each run of touching regions (no silence, gap or
    overlap between them; fixed regions overlap, so they stay one per window) is cut into windows of at most
    `max_seconds` by ``pack_run``: several regions share a window, and a region may be cut between two windows."""
    if max_seconds <= 0:
        raise ValueError(f"max_seconds={max_seconds}: must be positive")
    windows: list[Window] = []
    for run in _runs(regions):
        if pack:
            windows += pack_run(regions, run, max_seconds)
        else:
            windows += [w for index in run for w in _split_region(regions[index], index, max_seconds)]
    return windows


def _runs(regions: list[Section]) -> list[list[int]]:
    """Indices of describable regions (not silent, not empty) grouped into runs of regions that touch."""
    runs: list[list[int]] = []
    previous = None
    for index, region in enumerate(regions):
        if region.end - region.start <= 0 or region.label == SILENCE:
            previous = None
            continue
        if previous is not None and abs(region.start - previous.end) < 1e-6:
            runs[-1].append(index)
        else:
            runs.append([index])
        previous = region
    return runs


def _split_region(region: Section, index: int, max_seconds: float) -> list[Window]:
    """One region alone, cut into the fewest equal windows of at most ``max_seconds``."""
    length = region.end - region.start
    pieces = max(1, math.ceil(length / max_seconds - 1e-9))
    size = length / pieces
    out = []
    for k in range(pieces):
        start = round(region.start + k * size, 3)
        end = round(region.end if k == pieces - 1 else region.start + (k + 1) * size, 3)
        out.append(Window(start, end, (WindowPart(index, start, end),)))
    return out


def pack_run(regions: list[Section], run: list[int], max_seconds: float = MAX_WINDOW_SECONDS) -> list[Window]:
    """Windows over one run of touching regions (``run``: their indices in ``regions``).

    Cut points are the region boundaries and, every CUT_STEP_SECONDS, points inside a region at least
    MIN_PART_SECONDS from its ends. A shortest-path search over the cut points picks the plan with the least
    cost: one per window, SPLIT_COST per cut inside a region, and a tiny term that evens out window lengths.
    Every part of every window is then one region's share of it."""
    bounds = [regions[run[0]].start] + [regions[i].end for i in run]
    points = set(round(b, 3) for b in bounds)
    for i in run:
        region = regions[i]
        t = region.start + MIN_PART_SECONDS
        while t <= region.end - MIN_PART_SECONDS + 1e-9:
            points.add(round(t, 3))
            t += CUT_STEP_SECONDS
    points_sorted = sorted(points)
    boundary = {round(b, 3) for b in bounds}
    cost = [math.inf] * len(points_sorted)
    back = [0] * len(points_sorted)
    cost[0] = 0.0
    for j in range(1, len(points_sorted)):
        end = points_sorted[j]
        step = 0.0 if end in boundary else SPLIT_COST
        for i in range(j - 1, -1, -1):
            length = end - points_sorted[i]
            if length > max_seconds + 1e-9:
                break
            candidate = cost[i] + 1.0 + step + _BALANCE * ((max_seconds - length) / max_seconds) ** 2
            if candidate < cost[j]:
                cost[j], back[j] = candidate, i
    cuts = [len(points_sorted) - 1]
    while cuts[-1] != 0:
        cuts.append(back[cuts[-1]])
    cuts.reverse()
    windows = []
    for a, b in zip(cuts, cuts[1:]):
        start, end = points_sorted[a], points_sorted[b]
        parts = tuple(WindowPart(i, round(max(regions[i].start, start), 3), round(min(regions[i].end, end), 3))
                      for i in run if regions[i].start < end - 1e-6 and regions[i].end > start + 1e-6)
        windows.append(Window(start, end, parts))
    return windows
