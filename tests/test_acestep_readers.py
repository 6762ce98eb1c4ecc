"""The reading rules of each ACE-Step 1.5 release (converters/acestep_readers.py) on hand-made folders: which file
each release reads, which source wins, how the instrumental flag is decided, the CSV format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from converters.acestep_readers import (
    ACESTEP_KEYSCALES, CURRENT, EARLY, INSTRUMENTAL, audio_seconds, differences, intended, load_csv_metadata,
    read_pipeline, scan_folder, vocal_status,
)


def _wav(path: Path, seconds: float = 1.0, rate: int = 8000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), np.zeros(int(seconds * rate), dtype="float32"), rate)
    return path


def _scan(folder: Path, release):
    songs, warnings = scan_folder(folder, release)
    return {p.name: h for p, h in songs.items()}, warnings


def test_keyscale_vocabulary_has_acesteps_70_spellings():
    assert len(ACESTEP_KEYSCALES) == 70
    assert {"C major", "F# minor", "Bb major", "B♭ major", "C♯ minor"} <= ACESTEP_KEYSCALES
    assert "Am" not in ACESTEP_KEYSCALES and "a minor" not in ACESTEP_KEYSCALES


def test_early_release_reads_only_txt_and_csv(tmp_path):
    _wav(tmp_path / "song.wav", 2.5)
    (tmp_path / "song.json").write_text(json.dumps({"caption": "warm piano", "bpm": 90, "keyscale": "C major",
                                                    "timesignature": "3", "language": "en"}))
    (tmp_path / "song.lyrics.txt").write_text("[Verse]\nhello\n")
    (tmp_path / "song.caption.txt").write_text("a caption file\n")
    early, _ = _scan(tmp_path, EARLY)
    held = early["song.wav"]
    assert (held.caption, held.bpm, held.keyscale, held.timesignature, held.language) == ("", None, "", "",
                                                                                          "unknown")
    assert held.lyrics == INSTRUMENTAL and held.is_instrumental is True and held.labeled is False
    assert held.duration == 2  # whole seconds, truncated

    (tmp_path / "song.txt").write_text("[Verse]\nfrom the txt\n")
    (tmp_path / "meta.csv").write_text("File,BPM,Key,Caption\nsong.wav,90.7,C major,warm piano\n")
    held = _scan(tmp_path, EARLY)[0]["song.wav"]
    assert (held.caption, held.bpm, held.keyscale, held.labeled) == ("warm piano", 90, "C major", True)
    assert held.lyrics == "[Verse]\nfrom the txt" and held.is_instrumental is False
    assert held.sources == {"lyrics": "song.txt", "is_instrumental": "song.txt", "caption": "CSV", "bpm": "CSV",
                            "keyscale": "CSV"}


def test_current_release_lyrics_file_order_and_instrumental_flag(tmp_path):
    _wav(tmp_path / "a.wav")
    (tmp_path / "a.lyrics.txt").write_text("[Instrumental]\n")  # the measured bug: this makes the song vocal
    _wav(tmp_path / "b.wav")
    (tmp_path / "b.lyrics.txt").write_text("  \n")  # empty counts as missing
    (tmp_path / "b.txt").write_text("from txt\n")
    _wav(tmp_path / "c.wav")
    (tmp_path / "c.lyrics.txt").write_text("from lyrics.txt\n")
    (tmp_path / "c.txt").write_text("from txt\n")
    _wav(tmp_path / "d.wav")  # nothing at all
    songs, _ = _scan(tmp_path, CURRENT)
    assert songs["a.wav"].is_instrumental is False and songs["a.wav"].lyrics == INSTRUMENTAL
    assert songs["b.wav"].lyrics == "from txt"
    assert songs["c.wav"].lyrics == "from lyrics.txt"
    assert songs["d.wav"].is_instrumental is True and songs["d.wav"].lyrics == INSTRUMENTAL
    assert _scan(tmp_path, EARLY)[0]["c.wav"].lyrics == "from txt"


@pytest.mark.parametrize("language,flag,held_language", [
    (None, True, "unknown"), ("instrumental", True, "instrumental"), ("unknown", False, "unknown"),
    ("en", False, "en"), ("", True, "unknown")])
def test_current_release_json_language_can_only_clear_the_flag(tmp_path, language, flag, held_language):
    _wav(tmp_path / "s.flac")
    data = {"caption": "x"}
    if language is not None:
        data["language"] = language
    (tmp_path / "s.json").write_text(json.dumps(data))
    held = _scan(tmp_path, CURRENT)[0]["s.flac"]
    assert held.is_instrumental is flag and held.language == held_language


def test_current_release_source_order_caption_file_json_csv(tmp_path):
    _wav(tmp_path / "s.wav")
    (tmp_path / "s.caption.txt").write_text("from caption file")
    (tmp_path / "s.json").write_text(json.dumps({"caption": "from json", "bpm": 0, "keyscale": "A minor",
                                                 "genre": "rock", "is_instrumental": False}))
    held = _scan(tmp_path, CURRENT)[0]["s.wav"]
    assert held.caption == "from json" and held.bpm is None  # 0 counts as missing
    assert held.is_instrumental is True  # is_instrumental in the JSON is not read
    (tmp_path / "x.csv").write_text("file;bpm;key;caption\ns.wav;128;E minor;from csv\n")
    held = _scan(tmp_path, CURRENT)[0]["s.wav"]
    assert (held.caption, held.bpm, held.keyscale) == ("from csv", 128, "E minor")  # the CSV is applied last


def test_json_caption_of_a_caption_file_and_unlabeled(tmp_path):
    _wav(tmp_path / "u.wav")
    (tmp_path / "u.json").write_text(json.dumps({"caption": "", "bpm": 100}))
    held = _scan(tmp_path, CURRENT)[0]["u.wav"]
    assert held.labeled is False and held.bpm == 100
    (tmp_path / "u.json").write_text("[1, 2]")  # not an object: ignored
    assert _scan(tmp_path, CURRENT)[0]["u.wav"].bpm is None


def test_csv_rules_bom_sniffing_and_failure(tmp_path):
    _wav(tmp_path / "s.wav")
    _wav(tmp_path / "sub" / "t.wav")
    (tmp_path / "b.csv").write_text("\ufeffFile,BPM\ns.wav,120\n", encoding="utf-8")
    assert load_csv_metadata(tmp_path, EARLY)[0] == {}  # the BOM hides the File column in the early release
    assert load_csv_metadata(tmp_path, CURRENT)[0] == {"s.wav": {"bpm": 120}}
    (tmp_path / "b.csv").write_text("File\tCaption\nt.wav\t\"soft, warm; \"\"airy\"\"\nsecond line\"\n")
    meta, _ = load_csv_metadata(tmp_path, EARLY)
    assert meta == {"t.wav": {"caption": 'soft, warm; "airy"\nsecond line'}}
    held = _scan(tmp_path, EARLY)[0]["t.wav"]  # matched by file name, even in a subfolder
    assert held.caption.startswith("soft, warm")
    (tmp_path / "sub" / "deep.csv").write_text("File,BPM\nt.wav,99\n")  # only the top folder's CSVs count
    assert "bpm" not in load_csv_metadata(tmp_path, EARLY)[0]["t.wav"]
    (tmp_path / "b.csv").write_text("File,BPM\ns.wav,100\nt.wav,inf\nu.wav,90\n")
    meta, warnings = load_csv_metadata(tmp_path, EARLY)
    assert meta == {"s.wav": {"bpm": 100}} and "not read" in warnings[0]  # inf ends the file
    (tmp_path / "b.csv").write_text("Name,BPM\ns.wav,100\n")
    meta, warnings = load_csv_metadata(tmp_path, EARLY)
    assert meta == {} and "no File column" in warnings[0]


def test_audio_seconds_and_unreadable(tmp_path):
    assert audio_seconds(_wav(tmp_path / "a.wav", 3.9)) == 3
    (tmp_path / "b.wav").write_bytes(b"not audio")
    assert audio_seconds(tmp_path / "b.wav") == 0


def test_pipeline_trainer_keys(tmp_path):
    audio = _wav(tmp_path / "s.wav")
    assert read_pipeline(audio) is None
    (tmp_path / "s.json").write_text(json.dumps({"caption": "c", "lyrics": "la"}))
    assert read_pipeline(audio) == {"caption": "c", "lyrics": "la", "bpm": None, "keyscale": "",
                                    "timesignature": "4/4", "vocal_language": "en"}


def test_intended_values_of_another_tools_sidecar_and_differences(tmp_path):
    seed = {"caption": "dark synth", "lyrics": "[Verse]\nwords", "bpm": 120.4, "keyscale": "Am",
            "timesignature": "4/4", "vocal_language": "English", "duration": 184.7}
    want = intended(seed)
    assert want == {"caption": "dark synth", "bpm": 120, "keyscale": "A minor", "timesignature": "4",
                    "language": "en", "lyrics": "[Verse]\nwords", "is_instrumental": False, "duration": 184}
    _wav(tmp_path / "s.wav")
    (tmp_path / "s.json").write_text(json.dumps(seed))
    held = _scan(tmp_path, CURRENT)[0]["s.wav"]
    held.duration = 185
    diffs = {name: (h, w) for name, h, w in differences(held, want)}
    assert diffs == {"bpm": (120.4, 120), "keyscale": ("Am", "A minor"), "timesignature": ("4/4", "4"),
                     "language": ("unknown", "en"), "lyrics": (INSTRUMENTAL, "[Verse]\nwords"),
                     "is_instrumental": (True, False)}


def test_enharmonic_and_unicode_keys_are_the_same_key():
    from converters.acestep_readers import same

    assert same("keyscale", "A# major", "Bb major") and same("keyscale", "B♭ major", "Bb major")
    assert not same("keyscale", "Am", "A minor") and not same("keyscale", "a minor", "A minor")
    assert same("language", "instrumental", "unknown") and not same("bpm", "120", 120)


@pytest.mark.parametrize("sidecar,status", [
    ({"is_instrumental": True, "lyrics": "la"}, True), ({"lyrics": "[Instrumental]"}, None),
    ({"lyrics": "words"}, False), ({"vocal_language": "instrumental"}, True), ({"language": "de"}, False),
    ({"language": "unknown"}, None), ({"is_instrumental": None, "vocal_language": "unknown"}, None)])
def test_vocal_status(sidecar, status):
    assert vocal_status(sidecar) is status
