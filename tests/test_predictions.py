"""SongAnnotation -> Label Studio results, for the shipped config, a partial one and broken ones. The output is
checked against label-studio-sdk's own prediction validator (LabelInterface.validate_prediction)."""

from __future__ import annotations

import pytest
from label_studio_sdk.label_interface import LabelInterface

from label_config import Region, SongAnnotation, names as n, render_config, shipped_config
from ml_backend.prediction.predictions import (
    ConfigError, audio_reference, empty_prediction, failed_version, make_prediction, parse_config, to_results,
)


def a_song(**overrides) -> SongAnnotation:
    fields = dict(
        caption="Upbeat synth-pop with bright pads and a driving beat.", genres=["synth-pop", "dance"],
        instruments=["synthesizer", "drum machine"], effects=["reverb"], vocal_characteristics=["airy female"],
        mix_notes=["wide pads"], bpm=120, keyscale="A minor", timesignature="4", language="en", duration=20.0,
        regions=[
            Region(0.0, 8.0, "verse 2", "soft pads", "words here", id="r1"),
            Region(8.0, 16.0, "Refrain", "big drums"),
            Region(16.0, 25.0, "Gibberish", "tail"),  # end past the duration; label not in any set
            Region(30.0, 40.0, "Outro", "beyond the end"),  # entirely past the end: dropped
        ],
    )
    fields.update(overrides)
    return SongAnnotation(**fields)


def by_name(results: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in results:
        out.setdefault(r["from_name"], []).append(r)
    return out


def test_shipped_config_targets():
    t = parse_config(shipped_config())
    assert (t.audio_name, t.audio_key, t.section) == (n.AUDIO, "audio", n.SECTION)
    assert "Chorus" in t.section_labels
    assert t.region_texts == n.PER_REGION_TEXTS
    assert t.song_texts == n.SONG_TEXTS
    assert t.bpm_range == (30.0, 300.0)
    assert set(t.choices) == set(n.SONG_CHOICES)


def test_regions_share_ids_and_stay_inside_the_song():
    results = to_results(a_song(), parse_config(shipped_config()))
    regions = [r for r in results if "start" in r["value"]]
    ids = {r["id"] for r in regions}
    assert len(ids) == 3  # the region past the end is dropped
    for rid in ids:
        kinds = {r["from_name"] for r in regions if r["id"] == rid}
        assert n.SEGMENT_NOTES in kinds
        spans = {(r["value"]["start"], r["value"]["end"]) for r in regions if r["id"] == rid}
        assert len(spans) == 1  # every result of a region repeats its start/end
    for r in regions:
        assert 0.0 <= r["value"]["start"] < r["value"]["end"] <= 20.0
        assert r["value"]["channel"] == 0 and r["to_name"] == n.AUDIO
    labels = [r["value"]["labels"] for r in regions if r["type"] == "labels"]
    assert labels == [["Verse"], ["Chorus"]]  # "verse 2" and "Refrain" mapped; "Gibberish" left unlabelled
    lyrics = by_name(results)[n.SEGMENT_LYRICS]
    assert [r["value"]["text"] for r in lyrics] == [["words here"]] and lyrics[0]["id"] == "r1"


def test_song_level_fields_and_validator():
    prediction = make_prediction(a_song(), parse_config(shipped_config()), 1.7, "dsp-abc")
    assert prediction["score"] == 1.0 and prediction["model_version"] == "dsp-abc"
    got = by_name(prediction["result"])
    assert got[n.GENRE][0]["value"] == {"text": ["synth-pop", "dance"]}
    assert got[n.CAPTION][0]["value"]["text"] == ["Upbeat synth-pop with bright pads and a driving beat."]
    assert got[n.BPM][0]["value"] == {"number": 120}
    assert got[n.KEYSCALE][0]["value"] == {"choices": ["A minor"]}
    assert got[n.TIMESIGNATURE][0]["value"] == {"choices": ["4"]}
    assert got[n.VOCAL_LANGUAGE][0]["value"] == {"choices": ["en"]}
    assert n.LYRICS not in got  # no song-level lyrics: no empty TextArea result
    assert LabelInterface(shipped_config()).validate_prediction(prediction)


def test_partial_config_gets_what_it_can_hold():
    config = render_config(section_labels=("Verse", "Chorus"), minimal=True)
    prediction = make_prediction(a_song(), parse_config(config), 0.5, "v")
    got = by_name(prediction["result"])
    for missing in n.OPTIONAL_CONTROLS:
        assert missing not in got
    assert {n.SECTION, n.SEGMENT_NOTES, n.CAPTION, n.GENRE, n.BPM, n.KEYSCALE} <= set(got)
    assert LabelInterface(config).validate_prediction(prediction)


def test_choices_match_the_configs_spelling_and_range():
    config = """<View><Audio name="song" value="$track"/>
      <Labels name="section" toName="song"><Label value="Verse"/></Labels>
      <Number name="bpm" toName="song" min="60" max="100"/>
      <Choices name="keyscale" toName="song"><Choice value="Am"/><Choice value="C"/></Choices>
      <Choices name="timesignature" toName="song"><Choice value="3/4"/><Choice value="4/4"/></Choices>
      <Choices name="vocal_language" toName="song"><Choice value="German"/></Choices>
      <TextArea name="caption" toName="song"/>
      <TextArea name="segment_notes" toName="song"/>
    </View>"""
    t = parse_config(config)
    assert (t.audio_name, t.audio_key) == ("song", "track")
    assert t.region_texts == ()  # segment_notes without perRegion is not a region text
    got = by_name(to_results(a_song(), t))
    assert got[n.KEYSCALE][0]["value"] == {"choices": ["Am"]}
    assert got[n.TIMESIGNATURE][0]["value"] == {"choices": ["4/4"]}
    assert n.VOCAL_LANGUAGE not in got  # "en" is not offered
    assert n.BPM not in got  # 120 is outside 60..100
    assert all(r["to_name"] == "song" for r in to_results(a_song(), t))
    assert n.SEGMENT_NOTES not in got


@pytest.mark.parametrize("config, words", [
    ('<View><Text name="t" value="$text"/><Choices name="c" toName="t"><Choice value="x"/></Choices></View>',
     "<Audio>"),
    ("<View><Audio name='a' value='$a'", "not valid XML"),
    ("", "no label_config"),
])
def test_unusable_configs_raise_a_clear_error(config, words):
    with pytest.raises(ConfigError, match=words):
        parse_config(config)


def test_audio_reference_falls_back_to_undefined_key():
    t = parse_config(shipped_config())
    assert audio_reference({"id": 1, "data": {"audio": "/data/upload/1/a.mp3"}}, t) == "/data/upload/1/a.mp3"
    assert audio_reference({"id": 2, "data": {"$undefined$": "/data/upload/1/b.mp3"}}, t) == "/data/upload/1/b.mp3"
    assert audio_reference({"id": 3, "data": {"text": "x"}}, t) == ""
    assert audio_reference({"id": 4}, t) == ""


def test_empty_prediction_shape():
    assert empty_prediction("v") == {"result": [], "score": 0.0, "model_version": "v-failed"}
    assert failed_version("v") == "v-failed"
