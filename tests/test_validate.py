"""`ls-acestep validate`: the converter's own output is clean; a folder made by hand lists each thing ACE-Step 1.5
would ignore or misread."""

from __future__ import annotations

import json
import os

import pytest

from click.testing import CliRunner

from converters.acestep_readers import MAX_TEXT_CHARS
from converters.validate import validate_folder
from ls_acestep.cli import main
from tests.test_convert import FULL_RESULT, annotation, run_cli, task, text, write_export


def run_validate(folder, *args):
    result = CliRunner().invoke(main, ["validate", str(folder), *args])
    return result.exit_code, result.output


def sidecar(folder, stem, **keys):
    (folder / f"{stem}.json").write_text(json.dumps(keys), encoding="utf-8")


def test_converter_output_is_clean(tmp_path, song_files):
    media = tmp_path / "media" / "upload" / "1"
    media.mkdir(parents=True)
    for ext in (".wav", ".flac", ".mp3", ".ogg", ".opus"):
        (media / f"abcdef12-song{ext}").write_bytes(song_files[ext].read_bytes())
    tasks = [task(n, f"/data/upload/1/abcdef12-song{ext}", [annotation(n, FULL_RESULT if n == 1 else
                                                                       [text("caption", "instrumental")])])
             for n, ext in enumerate((".wav", ".flac", ".mp3", ".ogg", ".opus"), 1)]
    export = write_export(tmp_path / "e.json", tasks)
    assert run_cli(export, "--out", tmp_path / "out", "--media-root", tmp_path / "media")[0] == 0
    code, output = run_validate(tmp_path / "out")
    assert code == 0, output
    assert "no problems found" in output


def test_each_misread_is_listed(tmp_path, song_files):
    wav = song_files[".wav"].read_bytes()
    for stem in ("strings", "badkey", "nocaption", "onlyvocal", "lrc", "emptylyrics", "broken", "zero"):
        (tmp_path / f"{stem}.wav").write_bytes(wav)
    sidecar(tmp_path, "strings", caption="c", bpm="120", timesignature="4/4", language="English", keyscale="C major")
    sidecar(tmp_path, "badkey", caption="c", bpm=400, keyscale="Am", language="en")
    sidecar(tmp_path, "nocaption", caption="", bpm=120)
    sidecar(tmp_path, "onlyvocal", caption="c", vocal_language="en")
    sidecar(tmp_path, "lrc", caption="c", language="en")
    (tmp_path / "lrc.lyrics.txt").write_text("[00:12.50] hello\n[00:15.00] world\n")
    sidecar(tmp_path, "emptylyrics", caption="c", language="en", lyrics="[Verse]\nwords", is_instrumental=False)
    (tmp_path / "emptylyrics.lyrics.txt").write_text("  \n")
    (tmp_path / "broken.json").write_text("{not json")
    sidecar(tmp_path, "zero", caption="c", bpm=0, language="en")
    sidecar(tmp_path, "orphan", caption="no audio")
    (tmp_path / "alone.lyrics.txt").write_text("[Verse]\nla\n")
    (tmp_path / "phone.m4a").write_bytes(song_files[".m4a"].read_bytes())
    (tmp_path / "other.aiff").write_bytes(b"FORM")
    (tmp_path / "unlabeled.flac").write_bytes(song_files[".flac"].read_bytes())

    code, output = run_validate(tmp_path)
    assert code == 1
    lines = output.splitlines()

    def has(prefix, *words):
        return any(line.startswith(prefix) and all(w in line for w in words) for line in lines)

    assert has("strings.json: problem", "bpm '120'", "int")
    assert has("strings.json: problem", "timesignature '4/4'", "'4'")
    assert has("strings.json: problem", "language 'English'", "'en'")
    assert has("badkey.json: problem", "bpm 400", "30-300")
    assert has("badkey.json: problem", "keyscale 'Am'", "'A minor'")
    assert has("nocaption.json: problem", "no caption", "skipped")
    assert has("onlyvocal.json: problem", "vocal_language", "unknown")
    assert has("lrc.lyrics.txt: problem", "timestamps")
    assert has("emptylyrics.lyrics.txt: note", "empty", "missing")
    assert has("emptylyrics.wav: problem", "no lyrics file", "[Instrumental]", "sidecar has lyrics")
    assert has("broken.json: problem", "not valid JSON")
    assert has("zero.json: note", "no bpm", "0 counts as missing")
    assert has("orphan.json: problem", "orphan")
    assert has("alone.lyrics.txt: problem", "orphan")
    assert has("phone.m4a: problem", ".m4a")
    assert has("other.aiff: problem", ".aiff")
    assert has("unlabeled.flac: problem", "unlabeled")
    # a clean sample in the same folder gets no problem line
    assert not has("zero.json: problem")

    code, quiet = run_validate(tmp_path, "--quiet")
    assert code == 1 and ": note:" not in quiet


def test_caption_file_labels_a_sample_and_song_txt_is_the_lyrics_fallback(tmp_path, song_files):
    (tmp_path / "a.mp3").write_bytes(song_files[".mp3"].read_bytes())
    (tmp_path / "a.caption.txt").write_text("guitar ballad")
    (tmp_path / "a.txt").write_text("[Verse]\nhello\n")
    findings = validate_folder(tmp_path)
    assert [f for f in findings if f.level == "problem"] == []
    assert run_validate(tmp_path)[0] == 0


def test_empty_folder_is_a_problem(tmp_path):
    code, output = run_validate(tmp_path)
    assert code == 1 and "no audio files" in output


def test_infinite_or_nan_bpm_is_a_problem_not_a_traceback(tmp_path, song_files):
    wav = song_files[".wav"].read_bytes()
    for stem, bpm in (("inf", "Infinity"), ("big", "1e999"), ("nan", "NaN"), ("text", '"inf"')):
        (tmp_path / f"{stem}.wav").write_bytes(wav)
        (tmp_path / f"{stem}.json").write_text(f'{{"caption": "c", "language": "en", "bpm": {bpm}}}')
    code, output = run_validate(tmp_path)
    assert code == 1, output
    for stem in ("inf", "big", "nan", "text"):
        assert any(line.startswith(f"{stem}.json: problem") and "bpm" in line and "int" in line
                   for line in output.splitlines()), output


@pytest.mark.timeout(120)
def test_endless_sidecar_and_lyrics_files_are_not_read_into_memory(tmp_path, song_files):
    """A link to /dev/zero stands for any file too large to be a sidecar or lyrics: read up to a bound, then
    reported, never read whole (before, validate read until memory ran out); a FIFO is not opened."""
    for stem in ("a", "b", "c"):
        (tmp_path / f"{stem}.wav").write_bytes(song_files[".wav"].read_bytes())
    os.mkfifo(tmp_path / "c.json")  # a FIFO: opening it would wait for a writer for ever
    os.mkfifo(tmp_path / "c.txt")
    os.mkfifo(tmp_path / "meta.csv")
    (tmp_path / "a.json").symlink_to("/dev/zero")
    (tmp_path / "a.lyrics.txt").symlink_to("/dev/zero")
    (tmp_path / "acestep_dataset.json").symlink_to("/dev/zero")
    (tmp_path / "b.json").write_text('{"caption": "' + "x" * (MAX_TEXT_CHARS + 1) + '"}')
    code, output = run_validate(tmp_path)
    assert code == 1, output
    assert any(line.startswith("b.json: problem") and "more than" in line for line in output.splitlines()), output
