"""Analysis accuracy against ground truth, as rates per recording set, with thresholds that fail on regression.

- Rendered set: seventeen songs rendered from MIDI with known tempo, key, meter, section boundaries and labels
  (tests/music.py): 2/4, 3/4, 4/4 and 6/8, a tempo change, a sung lead. Tempo within 4 %, key exact, meter
  (the answer, and how often a confident answer is wrong), boundary F-measure at 0.5 s and 3 s (mir_eval),
  repetition F (pairwise frame clustering of the letters) and frame-level label agreement (letters_to_labels
  against the part names an annotator gives).
- Real set: the four Muldjord songs of Debian's fretsonfire-songs-muldjord, whose charts (notes.mid) carry the
  tempo the band played to: tempo within 4 % of it, or of half or double it (the octave a listener may tap).

The thresholds sit below what the method reaches here (printed with -s; docs/analysis.md) so that they catch a
regression, not noise; a song that fails one fact does not fail the test by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ml_backend.analysis.audio import MODEL_SR, load_audio
from ml_backend.analysis.music import MusicAnalysis, analyze, letters_to_labels
from tests import music

MIN_TEMPO_RATE = 0.9  # measured 17/17
MIN_KEY_RATE = 0.8  # measured 17/17
MIN_METER_RATE = 0.75  # measured 15/17
MAX_CONFIDENT_WRONG_METER = 0.1  # share of songs with a confident wrong meter, measured 1/17
MIN_BOUNDARY_F3 = 0.9  # mean F-measure at 3 s, measured 0.99 (0.96 before intros were cut by repetition)
MIN_BOUNDARY_F05 = 0.9  # mean F-measure at 0.5 s, measured 0.99 (0.96 before)
MIN_REPETITION_F = 0.8  # mean pairwise frame-clustering F of the letters, measured 0.99
MIN_LABEL_AGREEMENT = 0.8  # mean share of 0.1 s frames whose label matches the reference, measured 0.94
MIN_REAL_TEMPO_RATE = 0.75  # Muldjord songs within 4 % of the charted tempo or its octave, measured 4/4

MULDJORD = Path("/usr/share/games/fretsonfire/data/songs/muldjord")
LABEL_FRAME = 0.1  # seconds per frame of the label agreement


@dataclass
class Scored:
    spec: music.SongSpec
    analysis: MusicAnalysis
    tempo_ok: bool
    key_ok: bool
    meter_ok: bool
    boundary_f3: float
    boundary_f05: float
    repetition_f: float
    label_agreement: float


def _frame_labels(starts: list[float], labels: list[str], times: np.ndarray) -> list[str]:
    """The label in force at each time, given section start times (seconds) and their labels."""
    return [labels[max(0, int(np.searchsorted(starts, t, side="right")) - 1)] for t in times]


def _score(spec: music.SongSpec, a: MusicAnalysis) -> Scored:
    import mir_eval

    reference = spec.intervals()
    reference[-1, 1] = a.duration  # the file holds a short release after the last bar
    estimate = np.array([[s.start, s.end] for s in a.sections])
    estimate[-1, 1] = a.duration
    f3 = mir_eval.segment.detection(reference, estimate, window=3.0, trim=True)[2]
    f05 = mir_eval.segment.detection(reference, estimate, window=0.5, trim=True)[2]
    _, _, repetition_f = mir_eval.segment.pairwise(reference, spec.letters(), estimate,
                                                   [s.letter or "-" for s in a.sections])
    times = np.arange(0.0, spec.duration, LABEL_FRAME)
    ref = _frame_labels(spec.boundaries()[:-1], spec.labels(), times)
    est = _frame_labels([s.start for s in a.sections], letters_to_labels(a.sections), times)
    return Scored(spec=spec, analysis=a,
                  tempo_ok=a.bpm is not None and abs(a.bpm - spec.tempo) <= 0.04 * spec.tempo,
                  key_ok=a.keyscale == spec.keyscale, meter_ok=a.timesignature == str(spec.meter),
                  boundary_f3=float(f3), boundary_f05=float(f05), repetition_f=float(repetition_f),
                  label_agreement=float(np.mean([r == e for r, e in zip(ref, est)])))


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> list[Scored]:
    specs = music.accuracy_songs()
    # 22.05 kHz renders twice as fast as 44.1 kHz; the analysis works at 11.025 kHz anyway
    paths = music.render_songs(tmp_path_factory.mktemp("accuracy"), specs, sr=22050)
    return [_score(spec, analyze(load_audio(path), MODEL_SR)) for spec, path in zip(specs, paths)]


def test_the_song_set_is_varied_enough():
    specs = music.accuracy_songs()
    assert len(specs) >= 17
    assert min(s.tempo for s in specs) <= 75 and max(s.tempo for s in specs) >= 155
    assert {s.mode for s in specs} == {"major", "minor"} and {s.meter for s in specs} == {2, 3, 4, 6}
    assert any(p.tempo for s in specs for p in s.parts) and any(s.voice for s in specs)
    assert {"Intro", "Verse", "Chorus", "Bridge", "Outro"} <= {name for s in specs for name in s.labels()}
    assert len({"".join(s.letters()) for s in specs}) >= 5
    assert all(30 <= s.duration <= 80 for s in specs)


def test_accuracy_rates(scored):
    n = len(scored)
    rates = {
        "tempo within 4%": sum(s.tempo_ok for s in scored) / n,
        "key exact": sum(s.key_ok for s in scored) / n,
        "meter": sum(s.meter_ok for s in scored) / n,
        "confident wrong meter": sum(s.analysis.timesignature_confident and not s.meter_ok for s in scored) / n,
        "boundary F (0.5 s)": float(np.mean([s.boundary_f05 for s in scored])),
        "boundary F (3 s)": float(np.mean([s.boundary_f3 for s in scored])),
        "repetition F": float(np.mean([s.repetition_f for s in scored])),
        "label agreement": float(np.mean([s.label_agreement for s in scored])),
    }
    for s in scored:
        a = s.analysis
        print(f"{s.spec.tempo:5.0f} bpm -> {a.bpm}  {s.spec.keyscale:>9} -> {a.keyscale}  "
              f"{s.spec.meter} -> {a.timesignature}{'' if a.timesignature_confident else '?'}  "
              f"F.5={s.boundary_f05:.2f} F3={s.boundary_f3:.2f}  "
              f"{''.join(s.spec.letters())} -> {''.join(x.letter or '-' for x in a.sections)}  "
              f"labels {s.label_agreement:.2f}")
    print("rendered set,", n, "songs:", ", ".join(f"{k} {v:.2f}" for k, v in rates.items()))
    assert rates["tempo within 4%"] >= MIN_TEMPO_RATE
    assert rates["key exact"] >= MIN_KEY_RATE
    assert rates["meter"] >= MIN_METER_RATE
    assert rates["confident wrong meter"] <= MAX_CONFIDENT_WRONG_METER
    assert rates["boundary F (0.5 s)"] >= MIN_BOUNDARY_F05
    assert rates["boundary F (3 s)"] >= MIN_BOUNDARY_F3
    assert rates["repetition F"] >= MIN_REPETITION_F
    assert rates["label agreement"] >= MIN_LABEL_AGREEMENT


def test_sections_tile_each_song_and_fall_on_bar_lines(scored):
    for s in scored:
        a = s.analysis
        assert a.sections[0].start == 0.0 and a.sections[-1].end == pytest.approx(a.duration, abs=1e-3)
        assert all(x.end == y.start for x, y in zip(a.sections, a.sections[1:]))
        grid = np.array(a.downbeats if a.timesignature_confident else a.beats)
        for inner in a.sections[1:]:
            assert np.min(np.abs(grid - inner.start)) < 0.03  # a boundary is a bar line (beat when unsure)


def test_no_label_takes_over_a_song(scored):
    for s in scored:
        labels = letters_to_labels(s.analysis.sections)
        if len(labels) >= 5:
            assert max(labels.count(x) for x in set(labels)) <= 0.6 * len(labels), labels


def test_an_intro_before_repeated_material_is_cut_and_named(scored):
    """Every song that opens with an intro (D) followed by material that returns later: a boundary within 0.5 s
    of the intro's end, and the opening region labelled Intro. Novelty alone missed three of these intros (the
    intro's arrangement is close to the verse's); repetition finds them."""
    tried = 0
    for s in scored:
        letters = s.spec.letters()
        if letters[0] != "D" or letters[1] not in letters[2:]:
            continue
        tried += 1
        end = s.spec.boundaries()[1]
        starts = np.array([x.start for x in s.analysis.sections[1:]])
        assert len(starts) and np.min(np.abs(starts - end)) <= 0.5, (s.spec.tempo, end, starts)
        assert letters_to_labels(s.analysis.sections)[0] == "Intro", (s.spec.tempo, s.analysis.sections[:2])
    assert tried >= 4


def test_tempo_and_meter_of_real_songs_against_their_charts():
    """The Muldjord songs' charts (notes.mid, a constant tempo each) give the tempo the band played to, and three
    of them the time signature (4/4): a meter the analysis predicts (is sure of) must match it."""
    import pretty_midi

    songs = sorted(MULDJORD.glob("*/song.ogg"))
    if not songs:
        pytest.skip("fretsonfire-songs-muldjord is not installed (see .ci/run)")
    ok, meters, wrong = 0, 0, 0
    for path in songs:
        chart = pretty_midi.PrettyMIDI(str(path.with_name("notes.mid")))
        _, tempi = chart.get_tempo_changes()
        a = analyze(load_audio(path), MODEL_SR)
        hit = a.bpm is not None and any(abs(a.bpm - t * k) <= 0.04 * t * k for t in tempi for k in (0.5, 1, 2))
        ok += hit
        charted = {str(ts.numerator) for ts in chart.time_signature_changes}
        if charted:
            meters += 1
            wrong += a.timesignature_confident and a.timesignature not in charted
        print(f"{path.parent.name}: charted {[round(t, 1) for t in tempi]} bpm, meter {sorted(charted)} -> "
              f"{a.bpm} bpm, meter {a.timesignature}{'' if a.timesignature_confident else '? (not predicted)'}")
    print(f"real set (Muldjord), {len(songs)} songs: tempo within 4% (octave allowed) {ok}/{len(songs)}, "
          f"confident wrong meter {wrong}/{meters}")
    assert ok / len(songs) >= MIN_REAL_TEMPO_RATE
    assert wrong == 0
