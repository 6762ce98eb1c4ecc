"""Behaviour of the music analysis on real rendered audio and on edge cases (silence, clips, silent gaps), and
the mapping from repetition letters to section labels. Accuracy over many songs: test_analysis_accuracy.py."""

from __future__ import annotations

import numpy as np
import pytest

from ml_backend.analysis.music import Section, analyze, letters_to_labels
from ml_backend.analysis.audio import MODEL_SR, load_audio
from tests import music

SR = MODEL_SR


def _contiguous(sections: list[Section], duration: float) -> bool:
    return (sections[0].start == 0.0 and sections[-1].end == pytest.approx(duration, abs=1e-3)
            and all(a.end == b.start for a, b in zip(sections, sections[1:])))


@pytest.fixture(scope="module")
def song(song_files) -> np.ndarray:
    return load_audio(song_files[".wav"])


@pytest.mark.parametrize("suffix", [".wav", ".mp3", ".m4a", ".opus"])
def test_tempo_key_and_meter_survive_lossy_formats(song_files, suffix):
    spec = music.FORMAT_SET_SPEC
    a = analyze(load_audio(song_files[suffix]), SR)
    assert a.bpm == pytest.approx(spec.tempo, rel=0.02)
    assert a.keyscale == spec.keyscale == "G major"
    # ten bars say little about the bar: a meter is only predicted when sure, and then it must be right
    assert a.timesignature == "4" or not a.timesignature_confident
    assert len(a.beats) >= 30 and all(0 <= b <= a.duration for b in a.beats)
    assert _contiguous(a.sections, a.duration)
    assert a.sections[0].letter == "A"


def test_input_sample_rate_does_not_change_the_facts(song_files, song):
    at_16k = analyze(song, SR)
    at_44k = analyze(load_audio(song_files[".wav"], sr=44100), 44100)
    assert at_44k.duration == pytest.approx(at_16k.duration, abs=1e-3)
    assert at_44k.bpm == pytest.approx(at_16k.bpm, rel=0.01)
    assert at_44k.keyscale == at_16k.keyscale
    assert [round(s.start) for s in at_44k.sections] == [round(s.start) for s in at_16k.sections]


def test_features_computed_in_chunks_equal_one_pass(song, monkeypatch):
    """Long files are analysed chunk by chunk; the chunk size must not change any feature."""
    from ml_backend.analysis import music as analysis

    from ml_backend.analysis.audio import resample

    y = resample(song, SR, analysis.ANALYSIS_SR)
    whole = analysis._features(y)
    monkeypatch.setattr(analysis, "FEATURE_CHUNK_FRAMES", 128)  # 3 s chunks: many seams
    chunked = analysis._features(y)
    for name in ("onset", "mfcc", "rms_db", "chroma"):
        a, b = getattr(whole, name), getattr(chunked, name)
        assert a.shape == b.shape, name
        np.testing.assert_allclose(a, b, atol=1e-3, rtol=1e-3, err_msg=name)


def test_all_silent_audio_is_one_silence_section():
    a = analyze(np.zeros(10 * SR, dtype=np.float32), SR)
    assert a.duration == 10.0 and a.bpm is None and a.keyscale is None and a.beats == []
    assert (a.timesignature, a.timesignature_confident) == ("4", False)
    assert [(s.start, s.end, s.label) for s in a.sections] == [(0.0, 10.0, "Silence")]
    assert letters_to_labels(a.sections) == ["Silence"]


def test_near_silent_noise_counts_as_silence():
    noise = np.random.default_rng(0).normal(0, 1e-4, 5 * SR).astype(np.float32)  # -80 dBFS
    assert analyze(noise, SR).sections[0].label == "Silence"


def test_empty_signal():
    a = analyze(np.zeros(0, dtype=np.float32), SR)
    assert a.duration == 0.0 and a.bpm is None


def test_one_second_clip_has_no_tempo_but_one_section(song):
    a = analyze(song[:SR], SR)
    assert a.duration == pytest.approx(1.0)
    assert a.bpm is None  # four beats are no tempo
    assert [(s.start, s.end) for s in a.sections] == [(0.0, 1.0)]
    assert a.key_confidence < 0.1  # a key from one second is a guess, and says so


def test_a_blip_too_short_to_measure_is_one_unlabelled_section(song):
    a = analyze(song[SR: SR + SR // 10], SR)  # 0.1 s of music
    assert a.bpm is None and a.keyscale is None
    assert [(s.start, s.end, s.letter, s.label) for s in a.sections] == [(0.0, 0.1, "A", "")]


def test_sound_without_a_pulse_or_changes_has_no_tempo_and_one_section():
    t = np.arange(20 * SR) / SR
    chord = (0.1 * sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.18, 329.63))).astype(np.float32)  # A major
    noise = np.random.default_rng(0).normal(0, 0.05, 20 * SR).astype(np.float32)
    for y in (chord, noise):
        a = analyze(y, SR)
        assert a.bpm is None and a.beats == []  # the beat tracker always returns beats; they are not kept
        assert _contiguous(a.sections, a.duration) and all(s.label == "" for s in a.sections)
    held = analyze(chord, SR)
    assert held.keyscale == "A major"
    assert [(s.start, s.end, s.letter) for s in held.sections] == [(0.0, 20.0, "A")]  # nothing changes


def test_silent_stretches_become_silence_sections(song):
    gap = np.zeros(4 * SR, dtype=np.float32)
    y = np.concatenate([gap, song[: 10 * SR], gap, song[10 * SR:], gap[: 3 * SR]])
    a = analyze(y, SR)
    silent = [(s.start, s.end) for s in a.sections if s.label == "Silence"]
    assert len(silent) == 3
    # the song's own half-second fade-out falls below the silence level before the appended gap starts
    expected = [(0.0, 4.0), (14.0, 18.0), (len(y) / SR - 3.6, len(y) / SR)]
    for (start, end), (want_start, want_end) in zip(silent, expected):
        assert start == pytest.approx(want_start, abs=0.4)
        assert end == pytest.approx(want_end, abs=0.3)
    assert _contiguous(a.sections, a.duration)
    assert all(s.letter for s in a.sections if s.label != "Silence")
    labels = letters_to_labels(a.sections)
    assert [lab for lab, s in zip(labels, a.sections) if s.label == "Silence"] == ["Silence"] * 3


# --- letters to labels ------------------------------------------------------------------------------------------

def _sections(spec: str, loud: str = "") -> list[Section]:
    """'ABAB' -> sections 10 s each; `loud` lists the letters that are 8 dB louder."""
    return [Section(10.0 * i, 10.0 * (i + 1), ch if ch != "-" else "", "Silence" if ch == "-" else "",
                    -20.0 if ch in loud else -28.0) for i, ch in enumerate(spec)]


@pytest.mark.parametrize("form, loud, labels", [
    ("ABABCB", "B", ["Verse", "Chorus", "Verse", "Chorus", "Bridge", "Chorus"]),
    ("DABABE", "B", ["Intro", "Verse", "Chorus", "Verse", "Chorus", "Outro"]),
    ("ABABCB", "A", ["Chorus", "Verse", "Chorus", "Verse", "Bridge", "Outro"]),  # ends 8 dB down: an outro
    ("ABCABC", "C", ["Verse", "Pre-Chorus", "Chorus", "Verse", "Pre-Chorus", "Chorus"]),
    ("-ABAB-", "B", ["Silence", "Verse", "Chorus", "Verse", "Chorus", "Silence"]),
    ("ABC", "", ["Intro", "Bridge", "Outro"]),
    ("A", "", ["Verse"]),
])
def test_letters_to_labels(form, loud, labels):
    assert letters_to_labels(_sections(form, loud)) == labels


@pytest.mark.parametrize("form", ["ABCDEFGH", "ABCDEB", "AABBCCDD", "ABCBDBEBFB", "AAAAAA"])
def test_no_label_holds_more_than_60_percent_of_five_or_more_regions(form):
    """Through-composed music (few or no repeats) must not become a row of one label."""
    sections = [Section(10.0 * i, 10.0 * (i + 1), ch, "", -30.0 + 3.0 * ((i * 7) % 5)) for i, ch in enumerate(form)]
    labels = letters_to_labels(sections)
    assert max(labels.count(x) for x in set(labels)) <= 0.6 * len(labels), labels
    assert all(labels[i] == labels[j] for i in range(len(form)) for j in range(len(form))
               if form[i] == form[j] and 0 < i and 0 < j and i < len(form) - 1 and j < len(form) - 1
               and form.count(form[i]) <= 0.6 * len(form))  # a repeated part keeps one label


def test_a_long_opening_is_not_all_intro_and_a_quiet_repeated_ending_is_an_outro():
    starts = [0.0, 5.0, 20.0, 35.0, 50.0, 65.0, 80.0, 95.0]  # a 5 s opening, two 15 s parts, then A B A B
    sections = [Section(a, b, ch, "", -20.0 if ch == "B" else -28.0) for a, b, ch in zip(starts, starts[1:], "CDEABAB")]
    assert letters_to_labels(sections) == ["Intro", "Verse", "Verse", "Verse", "Chorus", "Verse", "Chorus"]
    ending = _sections("ABABAB", "B")
    ending[-1].loudness = -40.0  # the last chorus fades away
    assert letters_to_labels(ending)[-1] == "Outro"


def test_letters_to_labels_stays_inside_the_allowed_labels():
    sections = _sections("DABABCE", "B")
    assert letters_to_labels(sections, ["Verse", "Chorus", "Instrumental"]) == [
        "Instrumental", "Verse", "Chorus", "Verse", "Chorus", "Instrumental", "Instrumental"]
    assert letters_to_labels(sections, ["Part"]) == ["Part"] * 7
    assert letters_to_labels([], ["Verse"]) == []
