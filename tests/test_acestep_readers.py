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


def test_intended_states_no_duration_or_bpm_for_nan_and_infinity():
    for value in (float("nan"), float("inf"), float("-inf")):
        want = intended({"caption": "c", "duration": value, "bpm": value})
        assert "duration" not in want and want["bpm"] is value  # kept as written, so it differs from any bpm
    assert intended({"duration": 10 ** 400, "bpm": 10 ** 400})["duration"] == 10 ** 400  # no OverflowError


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


# --- a converted folder, read by both releases -------------------------------------------------------------------

from tests.test_convert import annotation, choice, number, region, task, text, write_export  # noqa: E402

from converters.acestep_outputs import csv_text  # noqa: E402
from converters.acestep_readers import FIELDS, read_sample  # noqa: E402
from converters.convert import Options, convert  # noqa: E402
from ls_acestep.media import MediaSource  # noqa: E402

NASTY_CAPTION = 'Dreamy "lo-fi", soft; warm\tpads, it\'s late — 夜の街\nsecond line, with commas'
SONGS = {  # name -> (result, is_instrumental in the sidecar)
    "vocal": ([*region("a", 0.0, 1.0, "Verse", lyrics="hello there"), *region("b", 1.0, 2.0, "Chorus",
                                                                             lyrics="sing it loud"),
               text("caption", NASTY_CAPTION), number("bpm", 96), choice("keyscale", "F# minor"),
               choice("timesignature", "3"), choice("vocal_language", "en")], False),
    "inst": ([text("caption", "ambient drones"), number("bpm", 70), choice("vocal_language", "instrumental")],
             True),
    "sung": ([text("caption", "j-pop"), text("lyrics", "[Verse]\nこんにちは\n\n[Chorus]\nさようなら"),
              choice("vocal_language", "ja")], False),
    "blank": ([text("caption", "just a caption, nothing else")], None),
    "keyonly": ([text("caption", "'quoted' start"), choice("keyscale", "Bb major"),
                 choice("vocal_language", "instrumental")], True),
}


@pytest.fixture()
def converted(tmp_path):
    """A real convert run over a Label Studio export of five songs (copied audio, 12.5 s each)."""
    folder = tmp_path / "media" / "upload" / "1"
    tasks = []
    for n, (name, (result, _)) in enumerate(SONGS.items(), 1):
        _wav(folder / f"{n:08x}-{name}.wav", 12.5)
        tasks.append(task(n, f"/data/upload/1/{n:08x}-{name}.wav", [annotation(n, result)]))
    export = write_export(tmp_path / "export.json", tasks)
    summary = convert(Options(export, tmp_path / "out", MediaSource(media_root=tmp_path / "media")),
                      say=lambda _: None)
    assert summary.exit_code == 0 and summary.converted == len(SONGS)
    return tmp_path / "out" / "dataset"


def test_both_releases_read_a_converted_folder_as_the_sidecars_say(converted):
    sidecars = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in converted.glob("*.json")}
    assert set(sidecars) == set(SONGS)
    for name, (_, flag) in SONGS.items():
        assert sidecars[name]["is_instrumental"] is flag, name
    for release in (CURRENT, EARLY):
        songs, warnings = scan_folder(converted, release)
        assert warnings == [] and len(songs) == len(SONGS)
        for audio, held in songs.items():
            side = sidecars[audio.stem]
            want = intended(side)
            assert set(want) >= {"caption", "lyrics", "duration"}
            diffs = differences(held, want)
            # the only differences: what this release has no file for (the early one reads no JSON)
            assert all(name not in release.readable for name, _, _ in diffs), (release.name, audio.name, diffs)
            if release is CURRENT:
                assert diffs == [], (audio.name, diffs)
            # field by field, spelled out
            assert held.caption == side["caption"] and held.labeled
            assert held.bpm == side.get("bpm") and held.keyscale == side.get("keyscale", "")
            assert held.lyrics == side["lyrics"].strip() and held.duration == 12
            assert held.is_instrumental is (SONGS[audio.stem][1] is not False), (release.name, audio.name)
    # the early release holds no time signature or language: the only fields it cannot get
    early, _ = scan_folder(converted, EARLY)
    vocal = next(h for a, h in early.items() if a.stem == "vocal")
    assert vocal.timesignature == "" and vocal.language == "unknown" and vocal.sources["caption"] == "CSV"


def test_the_csv_changes_nothing_the_current_release_reads(converted):
    csv_file = converted / "acestep_metadata.csv"
    with_csv, _ = scan_folder(converted, CURRENT)
    csv_file.rename(converted.parent / "moved.csv")
    without_csv, _ = scan_folder(converted, CURRENT)
    assert {a: h.values() for a, h in with_csv.items()} == {a: h.values() for a, h in without_csv.items()}


def test_the_captioning_pipelines_trainer_reads_its_keys_right(converted):
    for audio in converted.glob("*.wav"):
        side = json.loads(audio.with_suffix(".json").read_text(encoding="utf-8"))
        seen = read_pipeline(audio)
        assert seen["caption"] == side["caption"] and seen["lyrics"] == side["lyrics"]
        want_language = {"vocal": "en", "sung": "ja", "inst": "instrumental", "keyonly": "instrumental",
                         "blank": "unknown"}[audio.stem]
        assert seen["vocal_language"] == want_language  # never its default "en" by omission


def test_csv_survives_sniffing_on_many_nasty_captions(tmp_path):
    """More than the 4 KB ACE-Step sniffs, captions full of delimiters and quotes: both releases read every row
    back exactly."""
    import random

    rng = random.Random(7)
    alphabet = list("abc xyz,;\t\"'|:-—é夜\n") + ["\\", "\r"]
    rows = []
    for n in range(120):
        caption = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60))).strip() or "x"
        rows.append([f"s{n}.wav", str(rng.randint(30, 300)), rng.choice(["C major", "F# minor", ""]), caption])
    (tmp_path / "acestep_metadata.csv").write_text(csv_text(rows), encoding="utf-8")
    assert len(csv_text(rows).encode()) > 4096
    for release in (EARLY, CURRENT):
        meta, warnings = load_csv_metadata(tmp_path, release)
        assert warnings == []
        for name, bpm, key, caption in rows:
            want = {"bpm": int(bpm), "caption": caption.strip()} | ({"key": key} if key else {})
            assert meta[name] == want, (release.name, name)


def test_rerun_removes_our_old_lyrics_txt_and_keeps_a_hand_edited_one(tmp_path, converted):
    out = converted.parent
    state = out / ".ls-acestep" / "state.jsonl"
    lines = [json.loads(line) for line in state.read_text().splitlines()]
    # as an earlier version of convert left it: lyrics in <stem>.lyrics.txt (hash recorded), none in <stem>.txt
    vocal = next(r for r in lines if r["stem"] == "vocal")
    (converted / "vocal.txt").rename(converted / "vocal.lyrics.txt")
    (converted / "inst.lyrics.txt").write_text("[Instrumental]\n")  # written by hand: not ours
    assert vocal["lyrics"]
    summary = convert(Options(tmp_path / "export.json", out, MediaSource(media_root=tmp_path / "media")),
                      say=lambda _: None)
    assert not (converted / "vocal.lyrics.txt").exists() and (converted / "vocal.txt").is_file()
    assert (converted / "inst.lyrics.txt").read_text() == "[Instrumental]\n" and summary.kept == 1
    report = json.loads((out / "conversion_report.json").read_text())
    assert any("inst.lyrics.txt" in p["reason"] for p in report["problems"])
    held = read_sample(converted / "inst.wav", CURRENT)
    assert held.is_instrumental is False  # which is why it is reported: validate says so too
    summary = convert(Options(tmp_path / "export.json", out, MediaSource(media_root=tmp_path / "media"),
                              force=True), say=lambda _: None)
    assert summary.kept == 0 and not (converted / "inst.lyrics.txt").exists()


def test_acestep_dir_writes_paths_relative_to_it_and_refuses_an_out_outside(tmp_path):
    folder = tmp_path / "media" / "upload" / "1"
    _wav(folder / "0000000a-one.wav", 11)
    export = write_export(tmp_path / "e.json", [task(1, "/data/upload/1/0000000a-one.wav",
                                                     [annotation(1, [text("caption", "c")])])])
    acestep = tmp_path / "ACE-Step-1.5"
    acestep.mkdir()
    source = MediaSource(media_root=tmp_path / "media")
    summary = convert(Options(export, acestep / "data" / "mine", source, acestep_dir=acestep), say=lambda _: None)
    assert summary.exit_code == 0
    dataset = json.loads((acestep / "data" / "mine" / "acestep_dataset.json").read_text())
    assert dataset["samples"][0]["audio_path"] == "data/mine/dataset/one.wav"
    report = json.loads((acestep / "data" / "mine" / "conversion_report.json").read_text())
    assert report["acestep"]["dataset_paths"] == "relative"
    outside = convert(Options(export, tmp_path / "elsewhere", source, acestep_dir=acestep), say=lambda _: None)
    assert outside.exit_code == 2 and "--acestep-dir" in outside.fatal and not (tmp_path / "elsewhere").exists()


def test_report_says_durations_and_genre_per_song(tmp_path):
    folder = tmp_path / "media" / "upload" / "1"
    lengths = {"short": 5.0, "long": 250.0}
    tasks = []
    for n, (name, seconds) in enumerate(lengths.items(), 1):
        _wav(folder / f"{n:08x}-{name}.wav", seconds, rate=1000)
        tasks.append(task(n, f"/data/upload/1/{n:08x}-{name}.wav",
                          [annotation(n, [text("caption", "c"), text("genre", "rock"),
                                          choice("vocal_language", "instrumental")])]))
    convert(Options(write_export(tmp_path / "e.json", tasks), tmp_path / "out",
                    MediaSource(media_root=tmp_path / "media")), say=lambda _: None)
    report = json.loads((tmp_path / "out" / "conversion_report.json").read_text())
    warnings = {w["task_id"]: " ".join(w["warnings"]) for w in report["warnings"]}
    assert "outside the 10-600 s" in warnings[1] and "cuts it at 240 s" in warnings[2]
    assert report["acestep"]["songs_with_genre"] == 2
    assert any("genre" in note and "folder scan drops it" in note for note in report["acestep"]["notes"])


def test_fields_are_the_acestep_sample_fields():
    assert FIELDS == ("caption", "bpm", "keyscale", "timesignature", "language", "lyrics", "is_instrumental",
                      "duration")


# --- validate: the reader's truth ---------------------------------------------------------------------------------

def _validate(folder: Path, *args: str) -> tuple[int, str]:
    from click.testing import CliRunner

    from ls_acestep.cli import main

    result = CliRunner().invoke(main, ["validate", str(folder), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def test_validate_prints_what_each_release_holds_and_a_converted_folder_is_clean(converted):
    code, output = _validate(converted)
    assert code == 0, output
    assert "vocal.wav:\n  holds (current release): caption 'Dreamy \"lo-fi\"" in output
    assert "bpm 96; keyscale F# minor; timesignature 3; language en; lyrics '[Verse]'; vocal; 12 s" in output
    assert "holds (early release): timesignature (none); language unknown" in output
    assert "inst.wav:\n  holds (current release)" in output and "; instrumental; 12 s" in output
    assert "blank.json: note: vocals unknown" in output
    assert "the early release reads no timesignature, language from a folder" in output  # a note, not a problem


def test_validate_finds_a_stale_csv_and_misleading_lyrics_files(converted):
    side = json.loads((converted / "vocal.json").read_text(encoding="utf-8"))
    side["caption"] = "edited by hand after the last convert"
    (converted / "vocal.json").write_text(json.dumps(side), encoding="utf-8")
    (converted / "inst.txt").write_text("[Instrumental]\n")
    (converted / "sung.lyrics.txt").write_text("[Verse]\nother words\n")
    code, output = _validate(converted)
    assert code == 1
    lines = output.splitlines()

    def has(prefix, *words):
        return any(line.startswith(prefix) and all(w in line for w in words) for line in lines)

    # the CSV (applied last) still holds the old caption: both releases train on it
    assert has("vocal.wav: problem", "the current release holds caption 'Dreamy", "edited by hand")
    assert has("inst.txt: problem", "only [Instrumental]", "vocal")
    assert has("inst.wav: problem", "current release holds", "is_instrumental False where the sidecar means True")
    assert has("sung.lyrics.txt: problem", "both sung.lyrics.txt and sung.txt", "differ")

    code, document = _validate(converted, "--json", "--release", "current")
    data = json.loads(document)
    assert code == 1 and data["releases"] == ["current"] and data["problems"] >= 4
    vocal = next(s for s in data["songs"] if s["audio"] == "vocal.wav")
    assert vocal["holds"]["current"]["caption"].startswith("Dreamy") and "early" not in vocal["holds"]
    assert vocal["differs"]["current"] == [{"field": "caption", "holds": vocal["holds"]["current"]["caption"],
                                            "sidecar": "edited by hand after the last convert"}]


def test_validate_durations_other_tools_spellings_and_genre(tmp_path):
    _wav(tmp_path / "short.wav", 4.0)
    (tmp_path / "short.json").write_text(json.dumps({"caption": "c", "language": "en", "genre": "rock",
                                                     "keyscale": "B♭ minor", "timesignature": 4}))
    (tmp_path / "short.txt").write_text("la la\n")
    _wav(tmp_path / "long.wav", 250.0, rate=1000)
    (tmp_path / "long.json").write_text(json.dumps({"caption": "c", "keyscale": "Am", "timesignature": "4/4",
                                                    "language": "instrumental", "duration": 250.0}))
    code, output = _validate(tmp_path, "--release", "current")
    assert code == 1
    assert "short.wav: problem: duration 4 s is outside the 10-600 s" in output
    assert "long.wav: note: duration 250 s: preprocessing cuts it at 240 s" in output
    assert "long.json: problem: keyscale 'Am' is misread" in output and "'A minor' is meant?" in output
    assert "long.json: problem: timesignature '4/4'" in output and "(write '4')" in output
    assert "long.json: note: language 'instrumental' is not in ACE-Step's language list" in output
    assert "short.json: note: genre is set but a folder scan never reads it" in output
    assert "short.json: problem: keyscale" not in output  # B♭ minor is one of ACE-Step's spellings
    assert "holds (early release)" not in output


def test_a_song_that_lost_its_words_loses_our_lyrics_file_but_not_a_hand_edited_one(tmp_path):
    folder = tmp_path / "media" / "upload" / "1"
    _wav(folder / "0000000a-one.wav", 11)
    _wav(folder / "0000000b-two.wav", 12)
    source = MediaSource(media_root=tmp_path / "media")

    def export(results):
        return write_export(tmp_path / "e.json", [task(n, f"/data/upload/1/{n:08x}-{name}.wav", [annotation(n, r)])
                                                  for n, (name, r) in enumerate(results.items(), 10)])  # 0xa, 0xb

    sung = [text("caption", "c"), text("lyrics", "[Verse]\nwords"), choice("vocal_language", "en")]
    assert convert(Options(export({"one": sung, "two": sung}), tmp_path / "out", source),
                   say=lambda _: None).exit_code == 0
    ds = tmp_path / "out" / "dataset"
    assert (ds / "one.txt").is_file() and (ds / "two.txt").is_file()
    (ds / "two.txt").write_text("[Verse]\nwords, fixed by hand\n")
    now_instrumental = [text("caption", "c"), choice("vocal_language", "instrumental")]
    summary = convert(Options(export({"one": now_instrumental, "two": now_instrumental}), tmp_path / "out",
                              source), say=lambda _: None)
    assert not (ds / "one.txt").exists()  # ours: removed, the song is instrumental again for ACE-Step
    assert (ds / "two.txt").read_text() == "[Verse]\nwords, fixed by hand\n" and summary.kept == 1
    assert read_sample(ds / "one.wav", CURRENT).is_instrumental is True


def test_validate_checks_the_dataset_json_audio_and_names_the_working_directory_rule(converted):
    out = converted.parent
    code, output = _validate(out)
    assert code == 0, output
    assert "acestep_dataset.json: note: ACE-Step loads this file only when it and every audio path" in output
    (converted / "inst.wav").unlink()
    (converted / "inst.json").unlink()
    code, output = _validate(out)
    assert code == 1 and "acestep_dataset.json: problem: sample #2: audio" in output and "does not exist" in output


def test_a_prediction_without_lyrics_is_vocals_unknown_not_instrumental(tmp_path):
    from tests.test_convert import prediction

    _wav(tmp_path / "media" / "upload" / "1" / "0000000a-song.wav", 11)
    predicted = [text("caption", "model caption"), number("bpm", 100),
                 *region("r1", 0.0, 11.0, "Verse", notes="a voice sings over guitar")]
    export = write_export(tmp_path / "e.json", [task(1, "/data/upload/1/0000000a-song.wav",
                                                     predictions=[prediction(5, predicted)])])
    summary = convert(Options(export, tmp_path / "out", MediaSource(media_root=tmp_path / "media"),
                              use_predictions=True), say=lambda _: None)
    assert summary.from_predictions == 1
    side = json.loads((tmp_path / "out" / "dataset" / "song.json").read_text())
    assert side["is_instrumental"] is None and side["vocal_language"] == "unknown" and "language" not in side
    report = json.loads((tmp_path / "out" / "conversion_report.json").read_text())
    assert "vocals unknown" in " ".join(report["warnings"][0]["warnings"])
