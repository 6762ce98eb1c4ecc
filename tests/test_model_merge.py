"""Window descriptions merged back into regions and song fields (ml_backend.prediction.merge), with the engines' real
WindowDescription and the analysis' real MusicAnalysis/Section."""

from __future__ import annotations

from ml_backend.describe.types import WindowDescription
from ml_backend.prediction.merge import (
    RegionPlan, build_song, majority_language, region_label, region_notes, song_score, window_ok_rate,
)

LABELS = ("Intro", "Verse", "Chorus", "Outro")


def described(**fields) -> WindowDescription:
    return WindowDescription(**fields)


def failed() -> WindowDescription:
    return WindowDescription.failed("out of memory (lower BATCH_SIZE or MAX_NEW_TOKENS)")


def test_split_region_texts_join_in_order_and_failures_drop_out():
    parts = [
        described(summary="Soft piano opens.", notable_moments=[(31.4, "strings enter.")]),
        failed(),
        described(summary="Drums join and build.", notable_moments=[(65.0, "a snare fill")]),
    ]
    text = region_notes(parts)
    assert text.splitlines() == ["Soft piano opens. Drums join and build.", "At 0:31: strings enter.",
                                 "At 1:05: a snare fill."]
    assert region_notes([failed(), failed()]) == ""


def test_region_label_is_the_majority_mapped_onto_the_label_set():
    parts = [described(section_label="chorus"), described(section_label="Verse"),
             described(section_label="Refrain"), failed()]
    assert region_label(parts, LABELS) == "Chorus"
    assert region_label([described(section_label="Drop")], LABELS) == ""  # not in this config's set
    assert region_label([failed()], LABELS) == ""


def test_language_majority_prefers_a_known_language():
    assert majority_language([described(vocal_language="en"), described(vocal_language="unknown"),
                              described(vocal_language="unknown"), described(vocal_language="es"),
                              described(vocal_language="en")]) == "en"
    assert majority_language([described(vocal_language="unknown")]) == "unknown"
    assert majority_language([described(), failed()]) == ""


def test_ok_rate():
    assert window_ok_rate([described(), failed(), described(), described()]) == 0.75
    assert window_ok_rate([]) == 1.0


def an_analysis(**overrides):
    from ml_backend.analysis.music import MusicAnalysis, Section

    fields = dict(duration=60.0, bpm=119.6, beats=[0.5, 1.0], keyscale="A minor", key_confidence=0.8,
                  timesignature="4", timesignature_confident=True,
                  sections=[Section(0.0, 20.0, "A"), Section(20.0, 40.0, "B"), Section(40.0, 60.0, "", "Silence")])
    fields.update(overrides)
    return MusicAnalysis(**fields)


def test_build_song_regions_and_song_fields():
    analysis = an_analysis()
    plans = [
        RegionPlan(0.0, 20.0, "A", [described(section_label="Verse", summary="Quiet verse.", genres=["folk"],
                                              instruments=["guitar"], vocal_language="English"),
                                    described(section_label="verse", summary="Still quiet.", genres=["Folk", "pop"],
                                              instruments=["Guitar", "voice"], vocal_language="en")]),
        RegionPlan(20.0, 40.0, "B", [failed()]),  # the model failed: the letter-based label, no text
        RegionPlan(40.0, 60.0, "", [described(section_label="Chorus", summary="Hm.")], sure_label="Silence"),
    ]
    song = build_song(analysis, plans, ["Verse", "Chorus", "Silence"], LABELS + ("Silence",), " A folk song. ")
    assert [(r.start_sec, r.end_sec, r.section_label) for r in song.regions] == [
        (0.0, 20.0, "Verse"), (20.0, 40.0, "Chorus"), (40.0, 60.0, "Silence")]
    assert song.regions[0].notes == "Quiet verse. Still quiet."
    assert song.regions[1].notes == ""
    assert len({r.id for r in song.regions}) == 3
    assert song.genres == ["folk", "pop"] and song.instruments == ["guitar", "voice"]
    assert (song.bpm, song.keyscale, song.timesignature, song.language) == (120, "A minor", "4", "en")
    assert song.caption == "A folk song." and song.duration == 60.0


def test_score_falls_with_failed_windows_and_uncertain_analysis():
    sure = an_analysis()
    unsure = an_analysis(key_confidence=0.2, timesignature_confident=False, bpm=None)
    all_ok = [described(), described()]
    half = [described(), failed()]
    assert 0 < song_score(all_ok, unsure) < song_score(all_ok, sure) <= 1
    assert song_score(half, sure) == round(song_score(all_ok, sure) / 2, 4)


def test_score_is_lowest_where_fields_are_least_sure():
    """Per-field confidences: the analysis' (tempo, key, meter) and the model's (labels named, languages agreeing)."""
    from ml_backend.prediction.merge import field_confidences

    sure = an_analysis()
    agreeing = [described(section_label="Verse", vocal_language="en"),
                described(section_label="Chorus", vocal_language="en")]
    torn = [described(section_label="Verse", vocal_language="en"), described(vocal_language="es")]
    confidences = field_confidences(torn, sure)
    assert confidences["section"] == 0.5 and confidences["vocal_language"] == 0.5
    assert field_confidences(agreeing, sure)["vocal_language"] == 1.0
    assert field_confidences([failed()], sure)["section"] == 0.0  # nothing described: nothing is sure
    no_tempo = an_analysis(bpm=None)
    order = sorted([("agreeing", song_score(agreeing, sure)), ("torn", song_score(torn, sure)),
                    ("torn, no tempo", song_score(torn, no_tempo)), ("failed", song_score([failed()], sure))],
                   key=lambda item: item[1])
    assert [name for name, _ in order] == ["failed", "torn, no tempo", "torn", "agreeing"]


def test_repeated_regions_share_the_label_most_of_their_windows_gave():
    """The label rule: Silence from the analysis wins; regions sharing a letter get their windows' majority label
    (an Intro or Outro of the model's stays where it was heard); a letter the model gave no label keeps the
    analysis' label."""
    analysis = an_analysis(sections=[])
    plans = [
        RegionPlan(0.0, 10.0, "A", [described(section_label="Verse")]),
        RegionPlan(10.0, 20.0, "B", [described(section_label="Chorus"), described(section_label="Chorus")]),
        RegionPlan(20.0, 30.0, "A", [described(section_label="Verse"), described(section_label="Bridge")]),
        RegionPlan(30.0, 40.0, "B", [described(section_label="Verse")]),  # outvoted by its letter's windows
        RegionPlan(40.0, 50.0, "C", [failed()]),
        RegionPlan(50.0, 55.0, "A", [described(section_label="Chorus")], sure_label="Silence"),
        RegionPlan(55.0, 65.0, "A", [described(section_label="Outro")]),  # the opening music closes the song
    ]
    song = build_song(analysis, plans, ["Intro", "Verse", "Verse", "Chorus", "Outro", "Silence", "Outro"],
                      LABELS + ("Silence",), "")
    assert [r.section_label for r in song.regions] == [
        "Verse", "Chorus", "Verse", "Chorus", "Outro", "Silence", "Outro"]


def test_an_unsure_time_signature_is_left_empty():
    assert build_song(an_analysis(timesignature_confident=False), [], [], LABELS, "").timesignature == ""
    assert build_song(an_analysis(timesignature="6"), [], [], LABELS, "").timesignature == "6"


def test_long_parts_without_vocals_in_vocal_music_are_instrumental():
    """The model's hearing of vocals per region (vocal_language) feeds the analysis' labels."""
    from ml_backend.analysis.music import Section, letters_to_labels
    from ml_backend.prediction.merge import region_vocals

    sections = [Section(0.0, 20.0, "A", "", -28.0), Section(20.0, 40.0, "B", "", -20.0),
                Section(40.0, 60.0, "C", "", -24.0), Section(60.0, 65.0, "D", "", -24.0),
                Section(65.0, 85.0, "B", "", -20.0)]
    plans = [RegionPlan(s.start, s.end, s.letter, [described(vocal_language=lang)])
             for s, lang in zip(sections, ["en", "en", "instrumental", "instrumental", "unknown"])]
    vocals = region_vocals(plans)
    assert vocals == [True, True, False, False, None]
    assert letters_to_labels(sections, vocals=vocals) == ["Intro", "Chorus", "Instrumental", "Bridge", "Chorus"]
    assert letters_to_labels(sections, vocals=[False] * 5)[2] == "Bridge"  # no vocals anywhere: not vocal music
