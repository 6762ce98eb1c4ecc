"""Analysis accuracy on twelve songs rendered from MIDI with known tempo, key, meter and section boundaries
(tests/music.py): tempo within 4 %, key exact, boundaries within 3 s (mir_eval), as rates over all songs.

The thresholds sit below what the method reaches here (printed with -s) so that they catch a regression, not
noise; a song that fails one fact does not fail the test by itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from ml_backend.analysis.music import MusicAnalysis, analyze
from ml_backend.analysis.audio import MODEL_SR, load_audio
from tests import music

MIN_TEMPO_RATE = 0.9  # measured 12/12
MIN_KEY_RATE = 0.8  # measured 12/12
MIN_BOUNDARY_F = 0.8  # mean F-measure, measured 0.96
MIN_METER_RATE = 0.75  # measured 12/12
MIN_REPETITION_F = 0.75  # mean pairwise frame-clustering F of the letters, measured 0.94


@dataclass
class Scored:
    spec: music.SongSpec
    analysis: MusicAnalysis
    tempo_ok: bool
    key_ok: bool
    meter_ok: bool
    boundary_f: float
    repetition_f: float


def _score(spec: music.SongSpec, a: MusicAnalysis) -> Scored:
    import mir_eval

    reference = spec.intervals()
    reference[-1, 1] = a.duration  # the file holds a short release after the last bar
    estimate = np.array([[s.start, s.end] for s in a.sections])
    estimate[-1, 1] = a.duration
    _, _, boundary_f = mir_eval.segment.detection(reference, estimate, window=3.0, trim=True)
    _, _, repetition_f = mir_eval.segment.pairwise(reference, spec.letters(), estimate,
                                                   [s.letter or "-" for s in a.sections])
    return Scored(spec=spec, analysis=a,
                  tempo_ok=a.bpm is not None and abs(a.bpm - spec.tempo) <= 0.04 * spec.tempo,
                  key_ok=a.keyscale == spec.keyscale, meter_ok=a.timesignature == str(spec.meter),
                  boundary_f=float(boundary_f), repetition_f=float(repetition_f))


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> list[Scored]:
    specs = music.accuracy_songs()
    # 22.05 kHz renders twice as fast as 44.1 kHz; the analysis works at 11.025 kHz anyway
    paths = music.render_songs(tmp_path_factory.mktemp("accuracy"), specs, sr=22050)
    return [_score(spec, analyze(load_audio(path), MODEL_SR)) for spec, path in zip(specs, paths)]


def test_the_song_set_is_varied_enough():
    specs = music.accuracy_songs()
    assert len(specs) >= 12
    assert min(s.tempo for s in specs) <= 75 and max(s.tempo for s in specs) >= 155
    assert {s.mode for s in specs} == {"major", "minor"} and {s.meter for s in specs} == {3, 4}
    assert len({"".join(s.letters()) for s in specs}) >= 5
    assert all(40 <= s.duration <= 70 for s in specs)


def test_accuracy_rates(scored):
    n = len(scored)
    rates = {
        "tempo within 4%": sum(s.tempo_ok for s in scored) / n,
        "key exact": sum(s.key_ok for s in scored) / n,
        "meter": sum(s.meter_ok for s in scored) / n,
        "boundary F (3 s)": float(np.mean([s.boundary_f for s in scored])),
        "repetition F": float(np.mean([s.repetition_f for s in scored])),
    }
    for s in scored:
        a = s.analysis
        print(f"{s.spec.tempo:5.0f} bpm -> {a.bpm}  {s.spec.keyscale:>9} -> {a.keyscale}  "
              f"{s.spec.meter} -> {a.timesignature}  F={s.boundary_f:.2f}  "
              f"{''.join(s.spec.letters())} -> {''.join(x.letter or '-' for x in a.sections)}")
    print("rates over", n, "songs:", ", ".join(f"{k} {v:.2f}" for k, v in rates.items()))
    assert rates["tempo within 4%"] >= MIN_TEMPO_RATE
    assert rates["key exact"] >= MIN_KEY_RATE
    assert rates["boundary F (3 s)"] >= MIN_BOUNDARY_F
    assert rates["meter"] >= MIN_METER_RATE
    assert rates["repetition F"] >= MIN_REPETITION_F


def test_sections_tile_each_song_and_snap_to_beats(scored):
    for s in scored:
        a = s.analysis
        assert a.sections[0].start == 0.0 and a.sections[-1].end == pytest.approx(a.duration, abs=1e-3)
        assert all(x.end == y.start for x, y in zip(a.sections, a.sections[1:]))
        beats = np.array(a.beats)
        for inner in a.sections[1:]:
            assert np.min(np.abs(beats - inner.start)) < 0.03  # a boundary is a beat time (frame rounding)
