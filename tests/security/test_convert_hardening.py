"""`ls-acestep convert` and `validate` against hostile input (issue 14, items 4-6): planted symlinks in the output
folder, a second run into the same folder, JSON nested 100,000 levels deep, a full disk, a cut-off export, and
data quirks. Each test feeds the input and checks the outcome: a clear message naming the task or file, no
traceback, nothing written outside the output folder, the other tasks still converted."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ls_acestep.cli import main
from tests.test_convert import annotation, read_json, region, run_cli, task, text, write_export

ROOT = Path(__file__).resolve().parents[2]
DEEP = 100_000  # levels of nesting in the "bomb" inputs


def simple_task(tid: int, name: str, caption: str = "c", extra: list = ()) -> dict:
    """A task with a caption, words and one region; its audio reference names ``name`` (no audio is read with
    --audio none)."""
    return task(tid, f"/data/upload/1/abcdef12-{name}.wav",
                [annotation(tid, [text("caption", caption), text("lyrics", "[Verse]\nla la la"),
                                  *region(f"r{tid}", 0.0, 5.0, "Verse"), *extra])])


def lyrics_file(dataset: Path, stem: str) -> Path:
    """The lyrics file convert wrote for ``stem`` (``<stem>.txt`` or the older ``<stem>.lyrics.txt``)."""
    found = [p for p in (dataset / f"{stem}.txt", dataset / f"{stem}.lyrics.txt") if p.exists()]
    assert len(found) == 1, sorted(p.name for p in dataset.iterdir())
    return found[0]


def convert_none(export: Path, out: Path, *args: str) -> tuple[int, str]:
    return run_cli(export, "--out", out, "--audio", "none", *args)


# --- 4. the converter writes only inside its output folder ------------------------------------------------------

def test_atomic_write_never_writes_through_a_planted_symlink(tmp_path, monkeypatch):
    """Temp names are random and created exclusively: a symlink planted at the temp name an attacker guessed
    (here: made to be guessed right) is skipped, and a symlink at the target is replaced, not written through."""
    from ls_acestep import files

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    folder = tmp_path / "out"
    folder.mkdir()
    names = iter(["aaaaaaaaaaaa", "bbbbbbbbbbbb"])
    monkeypatch.setattr(files.secrets, "token_hex", lambda n: next(names))
    (folder / ".song.json.aaaaaaaaaaaa.tmp").symlink_to(victim)  # the first name it will try
    (folder / "song.json").symlink_to(victim)  # the target itself
    files.atomic_write(folder / "song.json", b"{}\n")
    assert victim.read_text() == "precious"
    assert not (folder / "song.json").is_symlink() and (folder / "song.json").read_bytes() == b"{}\n"
    assert (folder / ".song.json.aaaaaaaaaaaa.tmp").is_symlink()  # left alone, not followed
    # the old fixed name (".<name>.<pid>.tmp") is no longer used: a link there changes nothing either
    (folder / f".index.json.{os.getpid()}.tmp").symlink_to(victim)
    monkeypatch.undo()
    files.atomic_write(folder / "index.json", b"[]\n")
    assert victim.read_text() == "precious"


def test_state_journal_that_is_a_symlink_is_refused(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    (out / ".ls-acestep").mkdir(parents=True)
    (out / ".ls-acestep" / "state.jsonl").symlink_to(victim)
    export = write_export(tmp_path / "e.json", [simple_task(1, "one")])
    code, output = convert_none(export, out)
    assert code == 2 and "state.jsonl is a symbolic link" in output and "Traceback" not in output
    assert victim.read_text() == "precious\n"
    assert not (out / "dataset" / "one.json").exists()


def test_output_subfolder_linked_out_of_the_folder_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "dataset").symlink_to(elsewhere)
    code, output = convert_none(write_export(tmp_path / "e.json", [simple_task(1, "one")]), out)
    assert code == 2 and "leads out of the output folder" in output and "Traceback" not in output
    assert list(elsewhere.iterdir()) == []


def test_kept_lyrics_file_linked_to_etc_passwd_is_refused_and_never_copied(tmp_path):
    secret = Path("/etc/passwd")
    if not secret.is_file():
        pytest.skip("no /etc/passwd on this machine")
    export = write_export(tmp_path / "e.json", [simple_task(1, "one"), simple_task(2, "two")])
    out = tmp_path / "out"
    assert convert_none(export, out)[0] == 0
    lyrics = lyrics_file(out / "dataset", "one")
    lyrics.unlink()
    lyrics.symlink_to(secret)  # "kept": we never wrote this content
    for extra in ((), ("--force",)):  # not even --force reads or replaces it
        code, output = convert_none(export, out, *extra)
        assert code == 1 and "task 1" in output and "refused" in output and "/etc/passwd" in output
        assert lyrics.is_symlink() and os.readlink(lyrics) == str(secret)
        dataset = (out / "acestep_dataset.json").read_text()
        assert secret.read_text().splitlines()[0] not in dataset
        assert [s["filename"] for s in json.loads(dataset)["samples"]] == ["two.wav"]  # the other task goes on
        problems = read_json(out / "conversion_report.json")["problems"]
        assert [(p["task_id"], p["status"]) for p in problems] == [(1, "failed")]
        assert "/etc/passwd" in problems[0]["reason"] and "not read" in problems[0]["reason"]


@pytest.mark.timeout(120)
def test_a_fifo_planted_as_a_sidecar_fails_its_task_without_hanging(tmp_path):
    export = write_export(tmp_path / "e.json", [simple_task(1, "one"), simple_task(2, "two")])
    out = tmp_path / "out"
    assert convert_none(export, out)[0] == 0
    sidecar = out / "dataset" / "one.json"
    sidecar.unlink()
    os.mkfifo(sidecar)  # opening it to compare with what we wrote would wait for a writer for ever
    code, output = convert_none(export, out)
    assert code == 1 and "task 1" in output and "not a regular file" in output, output
    assert stat.S_ISFIFO(os.lstat(sidecar).st_mode)  # left as it is
    assert [s["filename"] for s in read_json(out / "acestep_dataset.json")["samples"]] == ["two.wav"]
    csv = out / "acestep_metadata.csv"
    csv.unlink()
    os.mkfifo(csv)  # a run-level file: compared with what we would write, then replaced
    convert_none(export, out)
    assert csv.is_file() and "two.wav" in csv.read_text()


def test_a_second_convert_into_a_busy_folder_exits_2(tmp_path):
    """A real second process holds the folder's lock (as a running convert does): convert says the folder is
    busy and exits 2, touching nothing; once the holder is gone the same command works."""
    out = tmp_path / "out"
    export = write_export(tmp_path / "e.json", [simple_task(1, "one")])
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from converters.folder_lock import "
         f"lock_folder; lock_folder(Path({str(out / '.ls-acestep')!r})); print('locked', flush=True); "
         "sys.stdin.read()"], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        command = [sys.executable, "-m", "converters", str(export), "--out", str(out), "--audio", "none"]
        busy = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert busy.returncode == 2, busy.stderr
        assert "is busy" in busy.stderr and "another ls-acestep convert" in busy.stderr
        assert "Traceback" not in busy.stderr and "conversion_report.json" not in busy.stdout + busy.stderr
        assert not (out / "dataset").exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (out / "dataset" / "one.json").is_file()


# --- 5. no traceback for any input ------------------------------------------------------------------------------

def test_export_nested_100000_levels_exits_2_with_a_message(tmp_path):
    whole = tmp_path / "deep.json"
    whole.write_text("[" * DEEP + "]" * DEEP)
    code, output = convert_none(whole, tmp_path / "a")
    assert code == 2 and "nests lists or objects deeper" in output and "Traceback" not in output
    assert not (tmp_path / "a").exists()

    # a good task, then one with a deep value: the first is converted and named, the run ends with exit 2
    good = json.dumps(simple_task(1, "one"))
    bomb = '{"id": 2, "data": {"audio": ' + "[" * DEEP + "]" * DEEP + "}}"
    (tmp_path / "mixed.json").write_text(f"[{good}, {bomb}]")
    code, output = convert_none(tmp_path / "mixed.json", tmp_path / "b")
    assert code == 2 and "task #2 nests" in output and "Traceback" not in output
    assert "converted before the stop: 1 task(s): 1" in output
    assert read_json(tmp_path / "b" / "conversion_report.json")["stopped"]["converted_task_ids"] == [1]


def test_validate_reports_the_one_deeply_nested_sidecar_and_goes_on(tmp_path):
    for stem in ("bomb", "good"):
        (tmp_path / f"{stem}.wav").write_bytes(b"RIFF")  # validate reads names and sidecars, not audio
    (tmp_path / "bomb.json").write_text('{"caption": ' + "[" * DEEP + "]" * DEEP + "}")
    (tmp_path / "good.json").write_text(json.dumps({"caption": "c", "bpm": "120", "language": "en"}))
    result = CliRunner().invoke(main, ["validate", str(tmp_path)])
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.output.splitlines()
    assert any(line.startswith("bomb.json: problem") and "nested deeper" in line for line in lines)
    assert any(line.startswith("good.json: problem") and "bpm '120'" in line for line in lines)  # checked too


def test_disk_full_with_audio_none_stops_cleanly_and_says_what_was_written(tmp_path, monkeypatch):
    """ENOSPC from the second task's first write (sidecar, lyrics and journal are one os.write each): the run
    stops, exit 1, no traceback; the report and the summary name the task written before it; the failed task
    leaves no file or temp file behind; the third task is not read."""
    export = write_export(tmp_path / "e.json", [simple_task(1, "one"), simple_task(2, "two"),
                                                simple_task(3, "three")])
    real_write, calls = os.write, []

    def full_disk_write(fd, data):
        calls.append(len(data))
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk_write)
    out = tmp_path / "out"
    code, output = convert_none(export, out)
    monkeypatch.undo()
    assert code == 1, output
    assert "Traceback" not in output
    assert "stopped: the disk is full (No space left on device) while writing task 2" in output
    assert "converted before the stop: 1 task(s): 1; their files are complete" in output
    names = sorted(p.name for p in (out / "dataset").iterdir())
    assert "one.json" in names and lyrics_file(out / "dataset", "one").read_text() == "[Verse]\nla la la\n"
    assert not [n for n in names if n.startswith(("two", ".two"))], names  # nothing of task 2, no temp file
    report = read_json(out / "conversion_report.json")
    assert report["exit_code"] == 1
    assert report["stopped"]["converted_task_ids"] == [1] and report["stopped"]["tasks_read"] == 2
    assert [(p["task_id"], p["status"]) for p in report["problems"]] == [(2, "failed")]
    assert [s["filename"] for s in read_json(out / "acestep_dataset.json")["samples"]] == ["one.wav"]
    state = (out / ".ls-acestep" / "state.jsonl").read_text().splitlines()
    assert [json.loads(line)["task"] for line in state] == [1]


def test_a_really_full_disk_stops_cleanly(tmp_path):
    """The same on a real, tiny file system (tmpfs of 256 KiB): every kind of write fails somewhere (files,
    spools, journal, final files); the run still ends with exit 1, no traceback, and complete files for the
    tasks it names."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        long_caption = "x" * 6000  # two pages per task: the disk fills after a few dozen tasks
        export = write_export(tmp_path / "e.json", [simple_task(n, f"song{n}", long_caption)
                                                    for n in range(1, 201)])
        code, output = convert_none(export, mount / "out")
        assert code == 1, output
        assert "Traceback" not in output and "stopped: the disk is full" in output
        converted = [line for line in output.splitlines() if line.startswith("converted before the stop:")]
        assert converted, output
        count = int(converted[0].split(":")[1].split()[0])
        assert 0 < count < 200
        for n in range(1, count + 1):  # every task named as converted has its complete sidecar
            assert read_json(mount / "out" / "dataset" / f"song{n}.json")["caption"] == long_caption
        report_written = (mount / "out" / "conversion_report.json").exists()
        assert ("report:" in output) == report_written
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_truncated_export_names_the_tasks_converted_before_the_cut(tmp_path):
    tasks = [simple_task(1, "one", "first"), simple_task(2, "two", "second"), simple_task(3, "three", "third")]
    raw = json.dumps(tasks)
    export = tmp_path / "cut.json"
    export.write_text(raw[: raw.index('"id": 3') + 20])
    code, output = convert_none(export, tmp_path / "out")
    assert code == 2 and "truncated" in output and "Traceback" not in output
    assert "converted before the stop: 2 task(s): 1-2" in output
    report = read_json(tmp_path / "out" / "conversion_report.json")
    assert report["exit_code"] == 2 and report["stopped"]["converted_task_ids"] == [1, 2]
    assert "truncated" in report["stopped"]["reason"]
    samples = read_json(tmp_path / "out" / "acestep_dataset.json")["samples"]
    assert [s["caption"] for s in samples] == ["first", "second"]


def test_summary_names_the_report_only_when_it_was_written(tmp_path):
    export = write_export(tmp_path / "e.json", [simple_task(1, "one")])
    code, output = convert_none(export, tmp_path / "a")
    assert code == 0 and f"report: {tmp_path / 'a' / 'conversion_report.json'}" in output

    (tmp_path / "bad.json").write_text("{}")  # unusable: nothing is written, no report named
    code, output = convert_none(tmp_path / "bad.json", tmp_path / "b")
    assert code == 2 and "conversion_report.json" not in output

    blocked = tmp_path / "c" / "conversion_report.json"
    blocked.mkdir(parents=True)  # a folder where the report goes: it cannot be written
    code, output = convert_none(export, tmp_path / "c")
    assert code == 1 and "report:" not in output and "Traceback" not in output
    assert "not written: conversion_report.json" in output
    assert read_json(tmp_path / "c" / "acestep_dataset.json")["metadata"]["num_samples"] == 1


# --- 6. data quirks ---------------------------------------------------------------------------------------------

def test_labels_as_a_string_are_taken_whole_with_a_warning(tmp_path):
    item = region("r1", 0.0, 5.0, "Verse")[0]
    item["value"]["labels"] = "Verse"
    export = write_export(tmp_path / "e.json", [task(1, "/data/upload/1/abcdef12-one.wav",
                                                     [annotation(1, [text("caption", "c"), item])])])
    code, output = convert_none(export, tmp_path / "out")
    assert code == 0, output
    timeline = read_json(tmp_path / "out" / "dataset" / "one.json")["music_analysis"]["timeline"]
    assert [r["section_label"] for r in timeline] == ["Verse"]
    warnings = read_json(tmp_path / "out" / "conversion_report.json")["warnings"][0]["warnings"]
    assert "region r1: labels is the string 'Verse', not a list; taken whole" in warnings


def test_zero_length_regions_are_dropped_with_a_warning(tmp_path):
    result = [text("caption", "c"), *region("r1", 0.0, 5.0, "Verse"), *region("r2", 7.0, 7.0, "Chorus"),
              *region("r3", 9.0, 9.0004, "Bridge")]  # under the sidecar's millisecond: zero length there too
    export = write_export(tmp_path / "e.json", [task(1, "/data/upload/1/abcdef12-one.wav",
                                                     [annotation(1, result)])])
    assert convert_none(export, tmp_path / "out")[0] == 0
    timeline = read_json(tmp_path / "out" / "dataset" / "one.json")["music_analysis"]["timeline"]
    assert [r["section_label"] for r in timeline] == ["Verse"]
    warnings = read_json(tmp_path / "out" / "conversion_report.json")["warnings"][0]["warnings"]
    assert "region r2 'Chorus': zero length (at 7.000 s); dropped" in warnings
    assert any(w.startswith("region r3 'Bridge': zero length") for w in warnings)


def test_duplicate_task_ids_are_reported_and_converted_once(tmp_path):
    export = write_export(tmp_path / "e.json", [simple_task(1, "one", "first"), simple_task(2, "two"),
                                                simple_task(1, "one", "again")])
    code, output = convert_none(export, tmp_path / "out")
    assert code == 1 and "task id 1 appears again (#3 in the export)" in output
    assert read_json(tmp_path / "out" / "dataset" / "one.json")["caption"] == "first"
    report = read_json(tmp_path / "out" / "conversion_report.json")
    assert report["counts"]["converted"] == 2 and report["counts"]["skipped"] == 1
    samples = read_json(tmp_path / "out" / "acestep_dataset.json")["samples"]
    assert sorted(s["filename"] for s in samples) == ["one.wav", "two.wav"]


@pytest.mark.parametrize("umask,expected", [(0o022, 0o644), (0o027, 0o640)])
def test_outputs_get_the_same_mode_as_sidecars(tmp_path, umask, expected):
    export = write_export(tmp_path / "e.json", [simple_task(1, "one")])
    old = os.umask(umask)
    try:
        assert convert_none(export, tmp_path / "out")[0] == 0
    finally:
        os.umask(old)
    out = tmp_path / "out"
    files = [out / name for name in ("acestep_dataset.json", "annotations_index.json", "conversion_report.json",
                                     "annotations_manifest.jsonl")]
    files += [out / "dataset" / "one.json", lyrics_file(out / "dataset", "one")]
    files += [p for p in (out / "dataset").iterdir() if p not in files]  # whatever else convert writes there
    assert {f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in files} == {f.name: oct(expected) for f in files}


def test_no_temp_files_are_left_behind(tmp_path):
    """A run that succeeds leaves only its outputs (the random temp names are all renamed or removed)."""
    export = write_export(tmp_path / "e.json", [simple_task(n, f"s{n}") for n in range(1, 4)])
    assert convert_none(export, tmp_path / "out")[0] == 0
    leftovers = [p for p in (tmp_path / "out").rglob(".*") if p.is_file() and p.suffix == ".tmp"]
    assert leftovers == [], leftovers


def test_downloaded_audio_replaced_by_a_link_out_of_the_folder_is_fetched_again(tmp_path, song_files):
    """A re-run reuses audio an earlier run downloaded into dataset/, but not when someone replaced it with a
    link leading out of the folder: the link is neither read nor copied over; the audio is downloaded again."""
    from tests.test_media import LocalServer

    server = LocalServer()
    try:
        server.file("/data/upload/1/abcdef12-remote.ogg", song_files[".ogg"].read_bytes(), token="Token key")
        export = write_export(tmp_path / "e.json", [task(1, "/data/upload/1/abcdef12-remote.ogg",
                                                         [annotation(1, [text("caption", "c")])])])
        args = (export, "--out", tmp_path / "out", "--ls-url", server.url, "--ls-token", "key")
        assert run_cli(*args)[0] == 0
        requests = len(server.requests)
        outside = tmp_path / "private.wav"
        outside.write_bytes(song_files[".wav"].read_bytes())  # readable audio: only the link check stops it
        audio = tmp_path / "out" / "dataset" / "remote.ogg"
        audio.unlink()
        audio.symlink_to(outside)
        code, output = run_cli(*args)
        assert code == 0, output
        assert len(server.requests) > requests  # fetched again
        assert not audio.is_symlink() and audio.read_bytes() == song_files[".ogg"].read_bytes()
        assert outside.read_bytes() == song_files[".wav"].read_bytes()
    finally:
        server.close()


def test_the_summary_names_converted_ids_as_runs():
    from converters.convert import id_ranges

    assert id_ranges([1, 2, 3, 7, 9, 10]) == "1-3, 7, 9-10"
    many = id_ranges(list(range(0, 100, 2)), shown=3)  # 50 runs of one id each
    assert many.startswith("0, 2, 4, ... (47 more runs") and "converted_task_ids" in many
