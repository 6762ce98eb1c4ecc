"""Regions and model windows: structure sections or fixed overlapping windows, every window at most 30 s."""

from __future__ import annotations

import pytest

from ml_backend.analysis.music import MusicAnalysis, Section
from ml_backend.describe.windows import Window, fixed_spans, plan_regions, plan_windows


def _analysis(duration: float, sections: list[Section]) -> MusicAnalysis:
    return MusicAnalysis(duration=duration, bpm=120.0, beats=[], keyscale="C major", key_confidence=1.0,
                         timesignature="4", timesignature_confident=True, sections=sections)


SONG = _analysis(190.0, [
    Section(0.0, 12.0, "A"), Section(12.0, 75.0, "B"), Section(75.0, 80.0, "", "Silence"),
    Section(80.0, 143.5, "B"), Section(143.5, 190.0, "C"),
])


def _check_windows(windows: list[Window], regions: list[Section], duration: float) -> None:
    for w in windows:
        assert 0.0 <= w.start < w.end <= duration
        assert w.end - w.start <= 30.0 + 1e-9
        assert w.parts[0].start == w.start and w.parts[-1].end == w.end  # the parts tile the window
        assert all(a.end == b.start for a, b in zip(w.parts, w.parts[1:]))
        for part in w.parts:
            region = regions[part.region]
            assert region.start - 1e-9 <= part.start < part.end <= region.end + 1e-9


def test_structure_regions_are_the_sections_and_long_ones_are_split_evenly():
    regions = plan_regions(SONG, "structure", 30.0, 2.0)
    assert [(r.start, r.end, r.letter) for r in regions] == [(s.start, s.end, s.letter) for s in SONG.sections]
    windows = plan_windows(regions, pack=False)
    _check_windows(windows, regions, SONG.duration)
    assert all(len(w.parts) == 1 for w in windows)
    by_region: dict[int, list[Window]] = {}
    for w in windows:
        by_region.setdefault(w.region, []).append(w)
    # 12 s: one window; 63 s: three of 21 s; silence: none; 63.5 s: three; 46.5 s: two of 23.25 s
    assert {i: len(ws) for i, ws in by_region.items()} == {0: 1, 1: 3, 3: 3, 4: 2}
    for i, ws in by_region.items():
        assert ws[0].start == regions[i].start and ws[-1].end == regions[i].end  # the windows tile the region
        assert all(a.end == pytest.approx(b.start) for a, b in zip(ws, ws[1:]))
        assert max(w.end - w.start for w in ws) - min(w.end - w.start for w in ws) < 0.01


def test_structure_regions_are_clamped_into_the_song():
    analysis = _analysis(50.0, [Section(-1.0, 20.0, "A"), Section(20.0, 55.0, "B"), Section(55.0, 60.0, "C")])
    regions = plan_regions(analysis, "structure")
    assert [(r.start, r.end) for r in regions] == [(0.0, 20.0), (20.0, 50.0)]


def test_no_sections_gives_one_region_over_the_song():
    regions = plan_regions(_analysis(42.0, []), "structure")
    assert [(r.start, r.end) for r in regions] == [(0.0, 42.0)]
    assert plan_regions(_analysis(0.0, []), "structure") == []


@pytest.mark.parametrize("duration, segment, overlap", [(190.0, 30.0, 2.0), (61.0, 30.0, 2.0), (20.0, 30.0, 2.0),
                                                        (100.0, 10.0, 0.0), (95.5, 25.0, 5.0)])
def test_fixed_windows_overlap_and_cover_the_song(duration, segment, overlap):
    spans = fixed_spans(duration, segment, overlap)
    assert spans[0][0] == 0.0 and spans[-1][1] == pytest.approx(duration)
    for (a0, a1), (b0, b1) in zip(spans, spans[1:]):
        assert b0 <= a1 - overlap + 1e-6  # consecutive windows overlap by at least `overlap`
        assert b0 > a0
    assert all(0 < b - a <= segment + 1e-9 for a, b in spans)
    assert all(b - a == pytest.approx(min(segment, duration)) for a, b in spans)


def test_fixed_spans_match_the_original_pipeline_stride():
    assert fixed_spans(100.0, 30.0, 2.0) == [(0.0, 30.0), (28.0, 58.0), (56.0, 86.0), (70.0, 100.0)]


def test_fixed_regions_take_letter_and_sure_label_under_their_midpoint():
    regions = plan_regions(SONG, "fixed", 10.0, 0.0)
    windows = plan_windows(regions, pack=False)
    _check_windows(windows, regions, SONG.duration)
    assert regions[0].letter == "A"  # 0-10, midpoint 5
    assert regions[2].letter == "B"  # 20-30
    silent = [r for r in regions if r.label == "Silence"]
    assert [(r.start, r.end) for r in silent] == [(70.0, 80.0)]  # midpoint 75 lies in the silence
    assert all(w.region != regions.index(silent[0]) for w in windows)  # silence is not sent to the model
    assert len(windows) == len(regions) - 1


def test_bad_segmentation_settings_are_refused():
    with pytest.raises(ValueError, match="segmentation"):
        plan_regions(SONG, "bars")
    with pytest.raises(ValueError, match="segment_seconds"):
        plan_regions(SONG, "fixed", 45.0, 2.0)
    with pytest.raises(ValueError, match="overlap_seconds"):
        plan_regions(SONG, "fixed", 30.0, 15.0)


def test_shorter_model_windows():
    regions = plan_regions(SONG, "structure")
    windows = plan_windows(regions, max_seconds=10.0, pack=False)
    assert all(w.end - w.start <= 10.0 + 1e-9 for w in windows)
    assert len([w for w in windows if w.region == 1]) == 7  # 63 s in seven windows of 9 s
