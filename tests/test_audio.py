"""Decoding real files of every format we accept, and the clear errors for files we cannot use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ml_backend.analysis import audio
from ml_backend.analysis.audio import MODEL_SR, AudioError, load_audio
from tests import music

FORMATS = [".wav", ".flac", ".ogg", ".mp3", ".m4a", ".opus"]


def _rms_db(y: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(np.square(y, dtype=np.float64))) + 1e-12)


@pytest.fixture(scope="module")
def reference(song_files) -> tuple[np.ndarray, int]:
    """The WAV render read directly, mixed to mono by averaging the channels."""
    data, sr = sf.read(str(song_files[".wav"]), dtype="float32", always_2d=True)
    return data.mean(axis=1), sr


@pytest.mark.parametrize("suffix", FORMATS)
def test_every_format_decodes_to_mono_float32_at_16k(song_files, reference, suffix):
    y = load_audio(song_files[suffix])
    ref, sr = reference
    assert y.dtype == np.float32 and y.ndim == 1 and y.flags.c_contiguous
    # same duration as the source (AAC adds a few ms of priming), same loudness within 0.5 dB (lossy codecs)
    assert len(y) / MODEL_SR == pytest.approx(len(ref) / sr, abs=0.05)
    assert _rms_db(y) == pytest.approx(_rms_db(ref), abs=0.5)
    assert np.abs(y).max() < 1.0


def test_no_resampling_gives_the_channel_average_exactly(song_files, reference):
    ref, sr = reference
    y = load_audio(song_files[".wav"], sr=sr)
    np.testing.assert_allclose(y, ref, atol=1e-6)


def test_other_rates_give_proportional_lengths(song_files, reference):
    ref, sr = reference
    for rate in (8000, 22050, 48000):
        assert len(load_audio(song_files[".flac"], sr=rate)) == pytest.approx(len(ref) * rate / sr, abs=2)


def test_ffmpeg_and_soundfile_paths_agree(song_files):
    """The ffmpeg pipe mixes channels with equal weights like the soundfile path (ffmpeg's own -ac 1 would be
    3 dB louder) and resamples with soxr too."""
    path = song_files[".wav"]
    via_soundfile = load_audio(path)
    via_ffmpeg = audio._load_ffmpeg(path, MODEL_SR, None)
    assert len(via_ffmpeg) == pytest.approx(len(via_soundfile), abs=2)
    n = min(len(via_ffmpeg), len(via_soundfile))
    assert np.corrcoef(via_ffmpeg[:n], via_soundfile[:n])[0, 1] > 0.999
    assert _rms_db(via_ffmpeg) == pytest.approx(_rms_db(via_soundfile), abs=0.05)


def test_silence_and_a_one_second_clip_decode(tmp_path, song_files):
    silent = load_audio(music.make_silence(tmp_path / "silence.wav", seconds=3.0))
    assert len(silent) == 3 * MODEL_SR and not silent.any()
    clip = load_audio(music.make_clip(tmp_path / "clip.flac", song_files[".wav"], seconds=1.0))
    assert len(clip) == pytest.approx(MODEL_SR, abs=2) and clip.any()


@pytest.mark.parametrize("suffix", [".wav", ".mp3"])
def test_empty_file(tmp_path, suffix):
    path = music.make_empty(tmp_path / f"empty{suffix}")
    with pytest.raises(AudioError, match="empty") as err:
        load_audio(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("name", ["notes.wav", "notes.mp3", "song.mid"])
def test_unsupported_format(tmp_path, name):
    path = tmp_path / name
    music.make_midi(path) if name.endswith(".mid") else music.make_text_as_audio(path)
    with pytest.raises(AudioError, match="not a readable audio file") as err:
        load_audio(path)
    assert str(path) in str(err.value) and "convert it to" in str(err.value)


def test_corrupt_header(tmp_path, song_files):
    path = music.make_corrupt_header(tmp_path / "corrupt.wav", song_files[".wav"])
    with pytest.raises(AudioError, match="corrupt") as err:
        load_audio(path)
    assert str(path) in str(err.value)


def test_corrupt_header_of_a_frame_based_format_is_recovered(tmp_path, song_files):
    """MP3 frames resynchronise after a damaged start: most of the song is still there."""
    y = load_audio(music.make_corrupt_header(tmp_path / "corrupt.mp3", song_files[".mp3"]))
    assert len(y) / MODEL_SR > 20


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".mp3", ".ogg", ".opus"])
def test_a_file_cut_in_half_keeps_what_can_be_decoded(tmp_path, song_files, suffix):
    """An interrupted upload: the first half of the song comes back (the FLAC decoder in libsndfile gives up at
    the cut, so ffmpeg decodes it instead)."""
    data = song_files[suffix].read_bytes()
    path = tmp_path / f"half{suffix}"
    path.write_bytes(data[: len(data) // 2])
    seconds = len(load_audio(path)) / MODEL_SR
    assert 8.0 < seconds < 14.0  # half of 22.5 s, give or take the codec's uneven bitrate


def test_cut_m4a_without_its_index_is_refused_clearly(tmp_path, song_files):
    data = song_files[".m4a"].read_bytes()  # ffmpeg writes the index (moov) at the end
    path = tmp_path / "half.m4a"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match="not a readable audio file"):
        load_audio(path)


def test_a_header_without_samples(tmp_path):
    path = tmp_path / "header.wav"
    sf.write(str(path), np.zeros((0, 2), dtype=np.int16), 44100)
    with pytest.raises(AudioError, match="no audio samples"):
        load_audio(path)


def test_file_without_an_audio_stream(tmp_path):
    path = tmp_path / "video.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "color=c=black:s=32x32:d=1",
                    str(path)], check=True)
    with pytest.raises(AudioError, match="no audio stream"):
        load_audio(path)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "gone.flac")


def test_missing_ffmpeg_is_named(song_files, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no ffmpeg, no ffprobe
    with pytest.raises(AudioError, match="ffmpeg is not installed"):
        load_audio(song_files[".mp3"])
    assert len(load_audio(song_files[".flac"])) > 0  # soundfile formats need no ffmpeg


@pytest.mark.parametrize("suffix", [".flac", ".m4a"])
def test_length_limit(song_files, suffix):
    with pytest.raises(AudioError, match="limit"):
        load_audio(song_files[suffix], max_seconds=10)
    assert len(load_audio(song_files[suffix], max_seconds=60)) > 0


_MEASURE = """
import json, sys
import numpy, soundfile, soxr
from ml_backend.analysis.audio import load_audio

def peak_kb():  # VmHWM: this process's own peak (ru_maxrss would carry the pytest parent's size over fork+exec)
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))

before = peak_kb()
y = load_audio(sys.argv[1], max_seconds=7200)  # the test file is an hour plus part of a repeat
peak = peak_kb()
stats = {"seconds": len(y) / 16000, "output_kb": y.nbytes / 1024, "growth_kb": peak - before}
if sys.argv[2] == "analyze":
    from ml_backend.analysis.music import analyze
    a = analyze(y, 16000)
    stats.update(analysis_growth_kb=peak_kb() - peak,
                 sections=len(a.sections), bpm=a.bpm, keyscale=a.keyscale)
print(json.dumps(stats))
"""


@pytest.fixture(scope="session")
def long_files(tmp_path_factory, song_files) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hour")
    return {suffix: music.make_long(folder, song_files[".wav"], hours=1.0, suffix=suffix)
            for suffix in (".flac", ".mp3")}


@pytest.mark.parametrize("suffix, then", [(".flac", "analyze"), (".mp3", "")])
def test_an_hour_long_file_stays_within_bounded_memory(long_files, suffix, then):
    """Peak memory grows by the output array (an hour at 16 kHz float32 is about 230 MB) plus small blocks,
    never by a second copy of the song or the decoded source. Analysing it adds less than the 11 kHz copy
    the analysis works on plus chunk-sized features, not an hour of spectrogram."""
    proc = subprocess.run([sys.executable, "-c", _MEASURE, str(long_files[suffix]), then], capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[1],
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{suffix}: {stats['seconds']:.0f} s decoded, output {stats['output_kb'] / 1024:.0f} MB, "
          f"peak growth {stats['growth_kb'] / 1024:.0f} MB")
    assert stats["seconds"] >= 3600
    assert stats["growth_kb"] < stats["output_kb"] + 64 * 1024
    if then == "analyze":
        print(f"analysis: peak growth {stats['analysis_growth_kb'] / 1024:.0f} MB, {stats['sections']} sections")
        assert stats["analysis_growth_kb"] < 800 * 1024  # whole-song spectrograms took 1.7 GB for this file
        assert stats["bpm"] == pytest.approx(music.FORMAT_SET_SPEC.tempo, rel=0.02)
        assert stats["keyscale"] == music.FORMAT_SET_SPEC.keyscale
        assert stats["sections"] > 100  # the 22 s song repeated, with its silent tail, about 160 times


# --- decompression bombs: the length is checked before decoding, and a lying header cannot grow the buffer -------

_BOMB = """
import json, sys
from ml_backend.analysis.audio import AudioError, load_audio
try:
    load_audio(sys.argv[1], max_seconds=float(sys.argv[2]))
    message = ""
except AudioError as exc:
    message = str(exc)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork and exec, so a child of a large pytest process would
# report the parent's size; VmHWM belongs to this process's own memory map.
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"message": message, "peak_kb": peak}))
"""


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, Path]:
    """12 hours of 8 kHz silence as FLAC (8 MB): with its length in the header, and streamed (no length)."""
    folder = tmp_path_factory.mktemp("bomb")
    source = ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono",
              "-t", "43200", "-c:a", "flac"]
    honest, liar = folder / "s.flac", folder / "streamed.flac"
    subprocess.run(source + [str(honest)], check=True)
    with open(liar, "wb") as out:  # written to a pipe, the encoder cannot go back to fill in the length
        subprocess.run(source + ["-f", "flac", "pipe:1"], stdout=out, check=True)
    return {"honest": honest, "liar": liar}


@pytest.mark.parametrize("kind, expected", [("honest", "720.0 min long"), ("liar", "did not say so")])
def test_twelve_hour_silence_is_refused_with_bounded_memory(bombs, kind, expected):
    """Peak RSS of a fresh process decoding the bomb (default limit, one hour) stays far below the 8.3 GB that
    decoding it whole took; the message names the file and the limit."""
    proc = subprocess.run([sys.executable, "-c", _BOMB, str(bombs[kind]), "3600"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{kind}: peak RSS {stats['peak_kb'] / 1024:.0f} MB: {stats['message']}")
    assert expected in stats["message"] and "MAX_AUDIO_SECONDS" in stats["message"]
    assert bombs[kind].name in stats["message"]
    assert stats["peak_kb"] < 600 * 1024


def test_a_stream_without_a_length_in_its_header_still_decodes(tmp_path, song_files):
    """A short FLAC whose header gives no length (encoded to a pipe) is not mistaken for a bomb."""
    streamed = tmp_path / "streamed.flac"
    with open(streamed, "wb") as out:
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(song_files[".wav"]), "-c:a", "flac",
                        "-f", "flac", "pipe:1"], stdout=out, check=True)
    assert sf.info(str(streamed)).frames >= audio.UNKNOWN_FRAMES or sf.info(str(streamed)).frames == 0
    y = load_audio(streamed)
    assert len(y) == pytest.approx(len(load_audio(song_files[".wav"])), abs=MODEL_SR * 0.05)
    with pytest.raises(AudioError, match="did not say so"):
        load_audio(streamed, max_seconds=5)


def test_a_header_that_understates_the_length_is_cut_at_what_it_declared(tmp_path, song_files):
    """A WAV whose data chunk claims 1 s while 20 s follow: only the declared second is decoded."""
    data, sr = sf.read(str(song_files[".wav"]), dtype="int16")
    wav = tmp_path / "short-header.wav"
    sf.write(str(wav), data, sr, subtype="PCM_16")
    raw = bytearray(wav.read_bytes())
    channels = data.shape[1] if data.ndim > 1 else 1
    position = raw.index(b"data") + 4
    raw[position:position + 4] = (sr * channels * 2).to_bytes(4, "little")
    wav.write_bytes(bytes(raw))
    y = load_audio(wav, max_seconds=3)
    assert len(y) == pytest.approx(MODEL_SR, abs=MODEL_SR * 0.01)
