"""``ls-acestep report DIR``: what a dataset folder holds, read the way ACE-Step reads it; loudness, true peak,
clipping and near-duplicates measured on real rendered songs; validate's problems listed; the page is
self-contained."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from review.audio_stats import measure, true_peak_dbtp
from review.cli import report_command
from review.report import run_report
from tests.music import render_song, song


def sidecar(**overrides) -> dict:
    data = {"caption": "A bright pop song.", "bpm": 120, "keyscale": "G major", "timesignature": "4",
            "language": "en", "lyrics": "[Verse]\nla la", "duration": 20.0, "is_instrumental": False,
            "music_analysis": {"timeline": [
                {"start_sec": 0.0, "end_sec": 8.0, "section_label": "Verse", "notes": "piano <b>and</b> voice"},
                {"start_sec": 8.0, "end_sec": 16.0, "section_label": "Chorus", "notes": "drums enter"},
                {"start_sec": 16.0, "end_sec": 20.0, "section_label": "Outro", "notes": ""}]}}
    data.update(overrides)
    return data


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, song_files):
    """A folder of six songs: a song with lyrics, its MP3 (a near-duplicate), a clipped copy, a copy 30 dB quieter
    with a misspelt key, another song (instrumental), a song without a sidecar, and a broken audio file."""
    folder = tmp_path_factory.mktemp("dataset")
    other = render_song(tmp_path_factory.mktemp("other") / "other.wav", song(96, "A minor", "ABAB", bars=4, seed=2))
    data, rate = sf.read(song_files[".wav"], dtype="float32")

    def put(name: str, **overrides) -> None:
        (folder / f"{name}.json").write_text(json.dumps(sidecar(**overrides)))

    shutil.copy(song_files[".wav"], folder / "song.wav")
    put("song")
    (folder / "song.lyrics.txt").write_text("[Verse]\nla la\n")
    shutil.copy(song_files[".mp3"], folder / "song-again.mp3")
    put("song-again")
    (folder / "song-again.lyrics.txt").write_text("[Verse]\nla la\n")
    sf.write(folder / "clipped.flac", np.clip(data * 12, -1, 1), rate)
    put("clipped", language="instrumental", is_instrumental=True, lyrics="[Instrumental]")
    sf.write(folder / "quiet.wav", data * 10 ** (-30 / 20), rate)
    put("quiet", keyscale="Am")  # vocal by its sidecar, but no lyrics file: trains as instrumental
    shutil.copy(other, folder / "other.wav")
    put("other", bpm=96, keyscale="A minor", timesignature="3", language="instrumental", is_instrumental=True,
        lyrics="[Instrumental]", duration=None)
    shutil.copy(other, folder / "nocaption.ogg")
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)
    put("broken")
    return folder


@pytest.fixture(scope="module")
def report(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    doc, json_path, html_path = run_report(dataset, out, jobs=2)
    return doc, json_path, html_path


def by_name(doc: dict) -> dict:
    return {s["name"]: s for s in doc["songs"]}


def test_true_peak_finds_the_peak_between_samples():
    # a sine at a quarter of the rate, 45 degrees off: every sample sits at 0.707, the wave itself reaches 1.0
    n = np.arange(48000)
    x = np.sin(np.pi / 2 * n + np.pi / 4).astype(np.float32)[:, None]
    assert 20 * np.log10(np.max(np.abs(x))) == pytest.approx(-3.01, abs=0.05)
    assert true_peak_dbtp(x) == pytest.approx(0.0, abs=0.6)  # BS.1770's 4x oversampling under-reads by < 0.7 dB


def test_loudness_follows_gain_and_silence_is_reported(song_files, tmp_path):
    data, rate = sf.read(song_files[".wav"], dtype="float32")
    sf.write(tmp_path / "minus6.wav", data * 0.5, rate)
    sf.write(tmp_path / "silence.wav", np.zeros_like(data), rate)
    full, half = measure(song_files[".wav"]), measure(tmp_path / "minus6.wav")
    assert half["lufs"] == pytest.approx(full["lufs"] - 6.02, abs=0.05)
    assert full["true_peak"] >= full["sample_peak"] - 0.01 and full["channels"] == 2
    silent = measure(tmp_path / "silence.wav")
    assert silent["lufs"] is None and silent["true_peak"] is None and silent["fingerprint"] is None
    assert "cannot decode" in measure(tmp_path / "missing.wav")["error"]
    m4a = measure(song_files[".m4a"])  # only ffmpeg reads it: a mono mixdown, marked as such
    assert m4a["mixdown"] and m4a["channels"] == 1 and not full["mixdown"]


def test_counts_follow_what_acestep_reads(report):
    doc, _, _ = report
    c = doc["counts"]
    assert c["songs"] == 7 and c["with_caption"] == 6  # nocaption.ogg has no sidecar
    # ACE-Step's flag: no lyrics file and no JSON language other than "instrumental" (quiet and broken say "en")
    assert c["instrumental"] == 3
    assert c["vocal_by_sidecar"] == 4 and c["lyrics_coverage"] == pytest.approx(0.5)  # song, song-again of 4
    songs = by_name(doc)
    assert songs["quiet.wav"]["keyscale"] == "Am"  # as ACE-Step holds it, misspelt
    assert songs["other.wav"]["duration"] == pytest.approx(40.0, abs=1.5)  # measured: the sidecar has none
    problems = [p for p in doc["problems"] if p["level"] == "problem"]
    assert any(p["path"] == "quiet.json" and "'Am' is misread" in p["message"] for p in problems)
    assert any(p["path"] == "nocaption.ogg" and "unlabeled" in p["message"] for p in problems)


def test_loudness_flags_and_near_duplicates(report):
    doc, _, _ = report
    songs = by_name(doc)
    flags = {name: s["loudness"].get("flags", []) for name, s in songs.items()}
    assert any(f.startswith("clipping") for f in flags["clipped.flac"])
    assert any(f.startswith("true peak") for f in flags["clipped.flac"])
    assert any(f.startswith("quieter than most") for f in flags["quiet.wav"])
    assert not any(f.startswith(("clipping", "quieter", "louder")) for f in flags["song.wav"])
    assert "cannot decode" in songs["broken.wav"]["loudness"]["error"]
    pairs = {frozenset((d["a"], d["b"])) for d in doc["duplicates"]}
    assert frozenset(("song.wav", "song-again.mp3")) in pairs  # an MP3 of the same song
    assert frozenset(("other.wav", "nocaption.ogg")) in pairs
    assert not any({"song.wav", "other.wav"} <= p for p in pairs)  # two different songs


def test_page_is_self_contained_and_escapes_the_notes(report):
    _, json_path, html_path = report
    page = html_path.read_text()
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=\"(?!data:)", page)
    assert page.count("data:image/svg+xml;base64,") >= 5
    assert "piano &lt;b&gt;and&lt;/b&gt; voice" in page  # notes are text, never markup
    assert page.count('class="song"') == 7
    assert json.loads(json_path.read_text())["counts"]["songs"] == 7


def test_cli_without_audio(dataset, tmp_path):
    result = CliRunner().invoke(report_command, [str(dataset), "--no-audio", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert doc["audio_measured"] is False and doc["duplicates"] == [] and doc["counts"]["songs"] == 7
    assert "Loudness" not in (tmp_path / "r" / "report.html").read_text()


def test_a_rerun_measures_only_changed_audio(dataset, report, tmp_path):
    doc, json_path, _ = report
    out = json_path.parent
    said: list[str] = []
    again, _, _ = run_report(dataset, out, jobs=1, say=said.append)
    assert any("6 song(s) unchanged since the last report" in line for line in said)  # broken.wav is re-tried
    assert [s["loudness"] for s in again["songs"]] == [s["loudness"] for s in doc["songs"]]
    assert {frozenset((d["a"], d["b"])) for d in again["duplicates"]} == \
        {frozenset((d["a"], d["b"])) for d in doc["duplicates"]}  # fingerprints kept as float16: same pairs
    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    data, rate = sf.read(copy / "song.wav", dtype="float32")
    sf.write(copy / "song.wav", data * 0.5, rate)  # changed audio: measured again
    (tmp_path / "out").mkdir()
    shutil.copy(out / "audio-cache.jsonl", tmp_path / "out" / "audio-cache.jsonl")
    changed, _, _ = run_report(copy, tmp_path / "out", jobs=1)
    before, after = by_name(doc)["song.wav"]["loudness"]["lufs"], by_name(changed)["song.wav"]["loudness"]["lufs"]
    assert after == pytest.approx(before - 6.02, abs=0.05)


def test_a_damaged_audio_cache_line_is_measured_again(dataset, report, tmp_path):
    _, json_path, _ = report
    out = tmp_path / "out"
    out.mkdir()
    lines = [json.loads(x) for x in (json_path.parent / "audio-cache.jsonl").read_text().splitlines()]
    damaged = {"song.wav": lambda r: r.update(fingerprint="AAAA"),  # a fingerprint of 2 values
               "song-again.mp3": lambda r: r.update(fingerprint="not base64!"),
               "quiet.wav": lambda r: r.update(lufs="loud"), "clipped.flac": lambda r: r.pop("clipped_runs")}
    for line in lines:
        damaged.get(line["name"], lambda r: None)(line["result"])
    (out / "audio-cache.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    said: list[str] = []
    doc, _, _ = run_report(dataset, out, jobs=1, say=said.append)  # before: a traceback in the duplicate search
    assert any(f"{len(lines) - 4} song(s) unchanged" in line for line in said), said
    assert {frozenset((d["a"], d["b"])) for d in doc["duplicates"]} >= {frozenset(("song.wav", "song-again.mp3"))}


def test_default_output_folder_sits_beside_the_dataset(dataset, tmp_path):
    copy = tmp_path / "songs"
    shutil.copytree(dataset, copy)
    result = CliRunner().invoke(report_command, [str(copy), "--no-audio"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "songs-report" / "report.html").is_file() and not (copy / "report").exists()


def test_a_folder_without_songs_gives_a_page_with_the_problem(tmp_path):
    (tmp_path / "notes.json").write_text("{}")
    doc, _, html_path = run_report(tmp_path, tmp_path.with_name(tmp_path.name + "-out"))
    assert doc["counts"]["songs"] == 0
    assert any("no audio files" in p["message"] for p in doc["problems"])
    assert "no audio files" in html_path.read_text()


def test_output_inside_the_folder_is_not_reported_as_orphans(dataset, tmp_path):
    copy = tmp_path / "songs"
    shutil.copytree(dataset, copy)
    for _ in range(2):  # the second run finds the first run's report.json in the folder
        result = CliRunner().invoke(report_command, [str(copy), "--no-audio", "--out", str(copy / "rep")])
        assert result.exit_code == 0, result.output
    doc = json.loads((copy / "rep" / "report.json").read_text())
    assert doc["problems"] and not any(p["path"].startswith("rep") for p in doc["problems"])


def test_nan_infinity_and_huge_numbers_in_sidecars_give_a_page(tmp_path, song_files):
    """Python's JSON reader takes NaN and Infinity: a sidecar holding them (or 1e308) is counted as stating no
    length or tempo, not a traceback, and report.json stays strict JSON."""
    folder = tmp_path / "songs"
    folder.mkdir()
    for name, numbers in (("a", "NaN"), ("b", "Infinity"), ("c", "1e308"), ("d", "1" + "0" * 400)):
        shutil.copy(song_files[".wav"], folder / f"{name}.wav")
        (folder / f"{name}.json").write_text(
            f'{{"caption": "c", "bpm": {numbers}, "duration": {numbers}, "language": "en", "music_analysis": '
            f'{{"timeline": [{{"start_sec": 0, "end_sec": {numbers}, "section_label": "Verse"}}]}}}}')
    doc, json_path, html_path = run_report(folder, tmp_path / "out", with_audio=False)

    def no_constant(name):
        raise AssertionError(f"{name} in report.json")

    strict = json.loads(json_path.read_text(), parse_constant=no_constant)
    assert strict["counts"]["songs"] == 4 and all(s["bpm"] is None for s in strict["songs"])
    assert all(0 < s["duration"] < 60 for s in strict["songs"])  # the measured length of the 20 s test song
    assert not re.search(r"\b(nan|inf)\s*%", html_path.read_text(), re.IGNORECASE)  # timeline strips, cards
