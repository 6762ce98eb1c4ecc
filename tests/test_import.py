"""`ls-acestep import`, the reading side (converters/import_sources.py): every kind of source becomes songs, values
normalised as convert does, what cannot be normalised left empty and reported, bad files reported and skipped.
The Label Studio side runs against the real server in tests/e2e/test_import_roundtrip.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from converters.import_sources import (
    ACESTEP_DATASET, OWN_SIDECARS, SIDECARS, TEXT_FILES, SourceError, read_source, strict_keyscale,
)
from label_config import shipped_config
from ml_backend.prediction.predictions import make_prediction, parse_config


def _wav(path: Path, seconds: float = 12.0, rate: int = 8000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), np.zeros(int(seconds * rate), dtype="float32"), rate)
    return path


def _items(source: Path) -> dict:
    total, items, _notes = read_source(source)
    found = {Path(i.label).name if "sample" not in i.label else i.label: i for i in items}
    assert len(found) == total
    return found


SEED_SIDECAR = {
    "caption": "moody synthwave with a gated snare", "lyrics": "[Verse 1]\nneon rain\n\n[Chorus]\ndrive all night",
    "bpm": 118.6, "keyscale": "Am", "timesignature": "4/4", "vocal_language": "English", "duration": 12.0,
    "music_analysis": {
        "timeline": [
            {"segment_index": 0, "start_sec": 0.0, "end_sec": 4.0, "section_label": "intro",
             "segment_summary": "pads swell", "instruments": ["synth pad"], "effects": [],
             "vocal_characteristics": [], "mix_notes": ["wide"], "notable_moments": []},
            {"segment_index": 1, "start_sec": 4.0, "end_sec": 8.0, "section_label": "Verse 2",
             "segment_summary": "vocal enters", "instruments": ["drums", "bass"]},
            {"segment_index": 2, "start_sec": 8.0, "end_sec": 12.0, "section_label": "the weird bit",
             "segment_summary": "noise"},
            {"segment_index": 3, "start_sec": "x", "end_sec": 13.0, "section_label": "Outro"},
        ],
        "genres": ["synthwave", "retro"], "instruments": ["synth", "drums"], "effects": ["gated reverb"],
        "vocal_characteristics": ["male baritone"], "mix_notes": [],
    },
    "analysis_model": "some-model",
}


def test_captioning_pipeline_sidecars_become_regions_and_normalised_fields(tmp_path):
    _wav(tmp_path / "night.wav")
    (tmp_path / "night.json").write_text(json.dumps(SEED_SIDECAR))
    item = _items(tmp_path)["night.wav"]
    assert item.error == "" and item.model_version == SIDECARS
    song = item.song
    assert (song.bpm, song.keyscale, song.timesignature, song.language) == (119, "A minor", "4", "en")
    assert song.genres == ["synthwave", "retro"] and song.effects == ["gated reverb"]
    assert song.vocal_characteristics == ["male baritone"]
    assert song.lyrics == SEED_SIDECAR["lyrics"]  # tagged lyrics without times: the song-level lyrics
    assert [(r.start_sec, r.end_sec, r.section_label) for r in song.regions] == [
        (0.0, 4.0, "Intro"), (4.0, 8.0, "Verse"), (8.0, 12.0, "")]
    assert song.regions[0].notes == "pads swell\nInstruments: synth pad\nMix: wide"
    report = " | ".join(item.warnings)
    assert "'Am' imported as 'A minor'" in report and "'4/4' imported as '4'" in report
    assert "'the weird bit'" in report and "left unlabelled" in report
    assert "timeline entry #4" in report  # no usable times: left out, said so


def test_infinite_and_huge_numbers_are_no_times(tmp_path):
    """Python's JSON reader takes Infinity and 400-digit integers: neither becomes a region time (an infinite
    end was posted to Label Studio), nor an OverflowError."""
    _wav(tmp_path / "a.wav")
    timeline = [{"start_sec": 0.0, "end_sec": 4.0, "section_label": "Intro"},
                {"start_sec": 4.0, "end_sec": "INF", "section_label": "Verse"},
                {"start_sec": 4.0, "end_sec": "HUGE", "section_label": "Chorus"}]
    text = json.dumps({"caption": "c", "bpm": "HUGE", "music_analysis": {"timeline": timeline}})
    (tmp_path / "a.json").write_text(text.replace('"INF"', "Infinity").replace('"HUGE"', "1" + "0" * 400))
    item = _items(tmp_path)["a.wav"]
    assert item.error == "", item.error
    assert [(r.start_sec, r.end_sec) for r in item.song.regions] == [(0.0, 4.0)] and item.song.bpm is None
    assert "timeline entry #2" in " | ".join(item.warnings) and "timeline entry #3" in " | ".join(item.warnings)


def test_an_ambiguous_key_is_left_empty_and_reported(tmp_path):
    _wav(tmp_path / "a.wav")
    (tmp_path / "a.json").write_text(json.dumps({"caption": "c", "keyscale": "AM", "timesignature": "7/8",
                                                 "bpm": 900, "vocal_language": "Klingon"}))
    item = _items(tmp_path)["a.wav"]
    song = item.song
    assert (song.keyscale, song.timesignature, song.bpm, song.language) == ("", "", None, "")
    report = " | ".join(item.warnings)
    for value in ("'AM'", "'7/8'", "900", "'Klingon'"):
        assert f"{value} cannot be normalised; left empty" in report
    assert strict_keyscale("Am") == "A minor" and strict_keyscale("C#M") is None and strict_keyscale("Bb") == \
        "Bb major"


def test_text_file_folders_lyrics_caption_and_csv(tmp_path):
    for name in ("a", "b", "c", "d"):
        _wav(tmp_path / f"{name}.flac")
    (tmp_path / "a.lyrics.txt").write_text("[Verse]\nfrom lyrics.txt\n")
    (tmp_path / "a.txt").write_text("ignored: .lyrics.txt comes first\n")
    (tmp_path / "b.txt").write_text("[Chorus]\nfrom txt\n")
    (tmp_path / "c.caption.txt").write_text("caption from file\n")
    (tmp_path / "d.txt").write_text("[Instrumental]\n")
    (tmp_path / "meta.csv").write_text("File,BPM,Key,Caption\nb.flac,100,E minor,from csv\nc.flac,,Gm,\n")
    items = _items(tmp_path)
    assert {i.model_version for i in items.values()} == {TEXT_FILES}
    assert items["a.flac"].song.lyrics == "[Verse]\nfrom lyrics.txt"
    b = items["b.flac"].song
    assert (b.lyrics, b.caption, b.bpm, b.keyscale) == ("[Chorus]\nfrom txt", "from csv", 100, "E minor")
    c = items["c.flac"].song
    assert (c.caption, c.keyscale) == ("caption from file", "G minor")
    d = items["d.flac"].song
    assert d.lyrics == "" and d.language == ""  # "[Instrumental]" is no lyrics, and says nothing about vocals


def test_our_own_converted_folder_keeps_region_lyrics_without_a_second_copy(tmp_path):
    from tests.test_convert import annotation, choice, number, region, task, text, write_export

    from converters.convert import Options, convert
    from ls_acestep.media import MediaSource

    _wav(tmp_path / "media" / "upload" / "1" / "0000000a-song.wav", 12.0)
    result = [*region("r1", 0.0, 6.0, "Verse", notes="piano", lyrics="hello"),
              *region("r2", 6.0, 12.0, "Chorus", notes="drums", lyrics="goodbye"),
              text("caption", "pop"), number("bpm", 120), choice("keyscale", "G major"),
              choice("vocal_language", "en"), text("genre", "pop\nindie")]
    export = write_export(tmp_path / "e.json", [task(1, "/data/upload/1/0000000a-song.wav", [annotation(1, result)])])
    convert(Options(export, tmp_path / "out", MediaSource(media_root=tmp_path / "media")), say=lambda _: None)
    item = _items(tmp_path / "out" / "dataset")["song.wav"]
    assert item.model_version == OWN_SIDECARS and item.warnings == []
    song = item.song
    assert song.lyrics == ""  # the regions carry exactly the lyrics file's words
    assert [(r.section_label, r.notes, r.lyrics) for r in song.regions] == [("Verse", "piano", "hello"),
                                                                          ("Chorus", "drums", "goodbye")]
    assert (song.caption, song.bpm, song.keyscale, song.language, song.genres) == ("pop", 120, "G major", "en",
                                                                                  ["pop", "indie"])
    prediction = make_prediction(song, parse_config(shipped_config()), 1.0, item.model_version)
    assert prediction["model_version"] == "import-ls-acestep"
    labels = [r for r in prediction["result"] if r["type"] == "labels"]
    assert [r["value"]["labels"] for r in labels] == [["Verse"], ["Chorus"]]
    texts = {(r["from_name"], r["id"]): r["value"]["text"] for r in prediction["result"] if r["type"] == "textarea"}
    assert texts[("segment_lyrics", labels[1]["id"])] == ["goodbye"]
    assert ("lyrics", "song-lyrics") not in texts


def test_acestep_dataset_json_samples(tmp_path):
    _wav(tmp_path / "audio" / "one.wav")
    _wav(tmp_path / "two.wav")
    dataset = {"metadata": {"name": "x"}, "samples": [
        {"id": "ab12cd34", "audio_path": str(tmp_path / "audio" / "one.wav"), "filename": "one.wav",
         "caption": "warm folk", "genre": "folk, acoustic", "lyrics": "[Instrumental]", "bpm": 90,
         "keyscale": "D major", "timesignature": "3", "language": "unknown", "is_instrumental": True},
        {"audio_path": "two.wav", "caption": "rap", "lyrics": "[Verse]\nyo", "bpm": "95", "keyscale": "F♯ minor",
         "language": "en", "is_instrumental": False},
        {"audio_path": "gone.wav", "caption": "missing"},
        "not a sample",
    ]}
    (tmp_path / "ds.json").write_text(json.dumps(dataset))
    total, items, _ = read_source(tmp_path / "ds.json")
    items = list(items)
    assert total == 4 and [i.model_version for i in items[:2]] == [ACESTEP_DATASET] * 2
    one, two, gone, bad = items
    assert (one.song.language, one.song.lyrics, one.song.genres) == ("instrumental", "", ["folk", "acoustic"])
    assert (two.song.bpm, two.song.keyscale, two.song.language, two.song.lyrics) == (95, "F# minor", "en",
                                                                                    "[Verse]\nyo")
    assert two.audio == tmp_path / "two.wav"  # relative: from the dataset file's folder
    assert "not found" in gone.error and "not a JSON object" in bad.error


def test_bad_files_are_reported_and_skipped(tmp_path):
    _wav(tmp_path / "good.wav")
    _wav(tmp_path / "broken.wav")
    _wav(tmp_path / "list.wav")
    (tmp_path / "broken.json").write_text("{nope")
    (tmp_path / "list.json").write_text("[1]")
    items = _items(tmp_path)
    assert items["good.wav"].error == ""
    assert "broken.json cannot be read" in items["broken.wav"].error
    assert "not an object" in items["list.wav"].error


def test_unusable_sources(tmp_path):
    with pytest.raises(SourceError, match="no audio"):
        read_source(tmp_path)
    (tmp_path / "x.json").write_text(json.dumps({"not": "a dataset"}))
    with pytest.raises(SourceError, match="samples"):
        read_source(tmp_path / "x.json")
    (tmp_path / "y.txt").write_text("hi")
    with pytest.raises(SourceError, match="neither a folder"):
        read_source(tmp_path / "y.txt")
