"""The analysis on real recordings, which come without ground truth, tested metamorphically: the answer must move
exactly as a known transform moves it (sox tempo stretch scales the bpm, sox pitch shift moves the key, gain and
lossy re-encodes change nothing, prepended silence shifts every boundary, a splice of two recordings is a
boundary). Plus: music with a clear pulse gets a bpm; noise, a held chord and speech do not.

The music is game soundtracks packaged by Debian (.ci/run installs them; docs/analysis.md has the licences):
wesnoth-1.16-music (orchestral, GPL-2+), fretsonfire-songs-muldjord (metal with vocals, CC BY-SA 3.0) and
tomatoes-data (tracker electronica, zlib). Each test uses 30-second excerpts cut at test time, cached for the
session. Rates are printed with -s; thresholds sit below what the analysis reaches so they catch regressions.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from label_config.vocabulary import KEYSCALES
from ml_backend.analysis.audio import MODEL_SR, load_audio
from ml_backend.analysis.music import MusicAnalysis, analyze

WESNOTH = Path("/usr/share/games/wesnoth/1.16/data/core/music")
MULDJORD = Path("/usr/share/games/fretsonfire/data/songs/muldjord")
TOMATOES = Path("/usr/share/tomatoes/music/IHaveNoTomatoes.it")
CLIP_SECONDS = 30.0  # long enough for a tempo, a key and a boundary or two; short enough to keep the test fast
CLIP_SR = 22050  # Hz: the analysis works at 11.025 kHz anyway
# (name, source file, offset in seconds): a varied set with a clear pulse
PULSE_CLIPS = (
    ("battle", WESNOTH / "battle.ogg", 60.0),
    ("breaking_the_chains", WESNOTH / "breaking_the_chains.ogg", 60.0),
    ("loyalists", WESNOTH / "loyalists.ogg", 60.0),
    ("northerners", WESNOTH / "northerners.ogg", 60.0),
    ("traveling_minstrels", WESNOTH / "traveling_minstrels.ogg", 60.0),
    ("journeys_end", WESNOTH / "journeys_end.ogg", 60.0),
    ("armygeddon", MULDJORD / "armygeddon" / "song.ogg", 60.0),
    ("internal_degeneration", MULDJORD / "internal_degeneration" / "song.ogg", 60.0),
    ("mutilated_mime", MULDJORD / "mutilated_mime" / "song.ogg", 60.0),
    ("tomatoes", TOMATOES, 60.0),
)
SPLICES = (("battle", "mutilated_mime"), ("tomatoes", "loyalists"), ("armygeddon", "traveling_minstrels"),
           ("northerners", "internal_degeneration"))
SPLICE_AT = 15.0  # seconds of the first recording before the second starts
STRETCHES = (1.08, 0.92)  # sox tempo factors: small enough that an octave jump would be the analysis' fault
PITCH_SEMITONES = 2
SILENCE_SECONDS = 5.0
BOUNDARY_WINDOW = 0.5  # seconds: a boundary that moved by more than this has moved

# measured on this set (docs/analysis.md); thresholds a little below
MIN_PULSE_RATE = 0.9  # clips given a bpm, measured 10/10
# bpm scaled by the factor within 2.5 %: measured 10/10 for both (before the tempo level was chosen from the
# oversampled autocorrelation with a stretch-free tie rule, 0.92 gave 6/10: docs/analysis.md)
MIN_STRETCH_RATE = {1.08: 0.9, 0.92: 0.9}
MIN_PITCH_RATE = 0.8  # key moved by +2 semitones with its mode, measured 10/10
MIN_INVARIANT_RATE = 0.85  # gain, MP3, Opus: same bpm (1 %), key and boundaries (0.5 s), measured 29/30
MIN_SILENCE_RATE = 0.7  # every boundary shifted by the silence (0.5 s), measured 9/10
MIN_SPLICE_RATE = 0.75  # a boundary within 1 s of the splice, measured 4/4


def _need(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (Debian packages: see .ci/run)")


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("real-clips")


def _cut(folder: Path, name: str, source: Path, offset: float) -> Path:
    """A CLIP_SECONDS mono excerpt of `source` from `offset` seconds, as WAV (ffmpeg decodes the tracker file)."""
    target = folder / f"{name}.wav"
    if not target.exists():
        if not source.exists():
            pytest.skip(f"{source} is missing: install the Debian music packages of .ci/run")
        _run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-ss", str(offset), "-t", str(CLIP_SECONDS),
              "-i", str(source), "-ac", "1", "-ar", str(CLIP_SR), str(target)])
    return target


@pytest.fixture(scope="session")
def clips(clip_dir) -> dict[str, Path]:
    _need("ffmpeg", "sox")
    return {name: _cut(clip_dir, name, source, offset) for name, source, offset in PULSE_CLIPS}


def _variant(src: Path, tag: str, cmd: list[str]) -> Path:
    """`src` transformed by `cmd` (a template with {src} and {dst}), cached beside it."""
    dst = src.with_name(f"{src.stem}.{tag}")
    if not dst.exists():
        tmp = dst.with_name(f".tmp-{dst.name}")
        _run([part.format(src=src, dst=tmp) for part in cmd])
        tmp.rename(dst)
    return dst


def _analyze(path: Path) -> MusicAnalysis:
    return analyze(load_audio(path), MODEL_SR)


def _boundaries(a: MusicAnalysis, silence: bool = True) -> np.ndarray:
    """Inner section boundaries in seconds (optionally without those of Silence sections)."""
    cuts = [s.start for s in a.sections[1:]
            if silence or not any(x.label == "Silence" and abs(x.end - s.start) < 1e-6 for x in a.sections)]
    return np.array(cuts)


def _same_boundaries(a: np.ndarray, b: np.ndarray, window: float = BOUNDARY_WINDOW) -> bool:
    """True when every boundary of `a` has one of `b` within `window` seconds and the other way round."""
    if len(a) == 0 or len(b) == 0:
        return len(a) == len(b)
    return bool(np.all(np.min(np.abs(a[:, None] - b[None, :]), axis=1) <= window)
                and np.all(np.min(np.abs(b[:, None] - a[None, :]), axis=1) <= window))


def _shift_key(key: str, semitones: int) -> str:
    """The key `semitones` higher, same mode (ACE-Step spelling)."""
    i = KEYSCALES.index(key)
    return KEYSCALES[(i // 12) * 12 + (i % 12 + semitones) % 12]


@dataclass
class Rate:
    passed: int = 0
    tried: int = 0

    def add(self, ok: bool) -> None:
        self.passed += bool(ok)
        self.tried += 1

    @property
    def value(self) -> float:
        return self.passed / self.tried if self.tried else 0.0

    def __str__(self) -> str:
        return f"{self.passed}/{self.tried}"


@pytest.fixture(scope="session")
def originals(clips) -> dict[str, MusicAnalysis]:
    return {name: _analyze(path) for name, path in clips.items()}


def test_music_with_a_pulse_gets_a_bpm(originals):
    found = Rate()
    for name, a in originals.items():
        found.add(a.bpm is not None and a.bpm_confidence > 0)
        print(f"{name:>22}: bpm {a.bpm} (confidence {a.bpm_confidence}), key {a.keyscale}, "
              f"meter {a.timesignature}{'' if a.timesignature_confident else '?'}, "
              f"boundaries {[round(b, 1) for b in _boundaries(a)]}")
    print("pulse found:", found)
    assert found.value >= MIN_PULSE_RATE


def test_noise_a_held_chord_and_speech_get_no_bpm(clip_dir):
    _need("espeak-ng", "sox")
    t = np.arange(20 * MODEL_SR) / MODEL_SR
    chord = 0.1 * sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.18, 329.63))
    swell = chord * (0.6 + 0.4 * np.sin(2 * np.pi * t / 20.0))  # a held chord that swells and fades once
    noise = np.random.default_rng(1).normal(0, 0.05, 20 * MODEL_SR)
    speech_raw = clip_dir / "speech-raw.wav"
    _run(["espeak-ng", "-s", "160", "-w", str(speech_raw),
          "Music analysis should hold on real recordings. Speech has syllables and words, but no steady pulse "
          "that a drummer would keep. The quick brown fox jumps over the lazy dog while the rain in Spain stays "
          "mainly in the plain. She sells sea shells by the sea shore, and nobody taps a foot to it."])
    speech = load_audio(speech_raw)
    for name, y in (("chord", chord), ("swelling chord", swell), ("noise", noise), ("speech", speech)):
        a = analyze(np.asarray(y, dtype=np.float32), MODEL_SR)
        assert a.bpm is None and a.beats == [] and a.bpm_confidence == 0.0, name
        assert not a.timesignature_confident, name


def test_metamorphic_relations(clips, originals):
    _need("sox", "ffmpeg")
    stretch = {factor: Rate() for factor in STRETCHES}
    pitch, invariant, silence = Rate(), Rate(), Rate()
    for name, path in clips.items():
        base = originals[name]
        if base.bpm is None:
            continue
        for factor in STRETCHES:
            stretched = _analyze(_variant(path, f"tempo{factor}.wav", ["sox", "{src}", "{dst}", "tempo", str(factor)]))
            stretch[factor].add(stretched.bpm is not None and abs(stretched.bpm / base.bpm / factor - 1) <= 0.025)
        if base.keyscale:
            shifted = _analyze(_variant(path, "pitch.wav", ["sox", "{src}", "{dst}", "pitch",
                                                            str(100 * PITCH_SEMITONES)]))
            pitch.add(shifted.keyscale == _shift_key(base.keyscale, PITCH_SEMITONES))
        for tag, cmd in (("gain.wav", ["sox", "{src}", "{dst}", "vol", "0.5"]),
                         ("mp3", ["ffmpeg", "-nostdin", "-y", "-i", "{src}", "-c:a", "libmp3lame", "-b:a", "128k",
                                  "-f", "mp3", "{dst}"]),
                         ("opus", ["ffmpeg", "-nostdin", "-y", "-i", "{src}", "-c:a", "libopus", "-b:a", "96k",
                                   "-f", "ogg", "{dst}"])):
            other = _analyze(_variant(path, tag, cmd))
            invariant.add(other.bpm is not None and abs(other.bpm / base.bpm - 1) <= 0.01
                          and other.keyscale == base.keyscale
                          and _same_boundaries(_boundaries(base), _boundaries(other)))
        padded = _analyze(_variant(path, "pad.wav", ["sox", "{src}", "{dst}", "pad", str(SILENCE_SECONDS)]))
        moved = _boundaries(padded, silence=False)
        moved = moved[moved > SILENCE_SECONDS + 0.5]  # the silence's own end is a boundary of its own
        silence.add(padded.bpm is not None and abs(padded.bpm / base.bpm - 1) <= 0.01
                    and _same_boundaries(_boundaries(base) + SILENCE_SECONDS, moved))
    print(f"metamorphic pass rates: {', '.join(f'tempo x{k} {v}' for k, v in stretch.items())}, pitch +{PITCH_SEMITONES} {pitch}, "
          f"gain/MP3/Opus {invariant}, leading silence {silence}")
    assert all(stretch[factor].value >= MIN_STRETCH_RATE[factor] for factor in STRETCHES)
    assert pitch.value >= MIN_PITCH_RATE
    assert invariant.value >= MIN_INVARIANT_RATE
    assert silence.value >= MIN_SILENCE_RATE


def test_a_splice_of_two_recordings_is_a_boundary(clips, clip_dir):
    _need("sox")
    spliced = Rate()
    for first, second in SPLICES:
        head = _variant(clips[first], "head.wav", ["sox", "{src}", "{dst}", "trim", "0", str(SPLICE_AT)])
        tail = _variant(clips[second], "tail.wav", ["sox", "{src}", "{dst}", "trim", "0", str(SPLICE_AT)])
        joined = clip_dir / f"splice-{first}-{second}.wav"
        if not joined.exists():
            _run(["sox", str(head), str(tail), str(joined)])
        cuts = _boundaries(_analyze(joined))
        spliced.add(len(cuts) > 0 and float(np.min(np.abs(cuts - SPLICE_AT))) <= 1.0)
        print(f"splice {first} | {second} at {SPLICE_AT} s: boundaries {[round(c, 1) for c in cuts]}")
    print("splices found:", spliced)
    assert spliced.value >= MIN_SPLICE_RATE


@pytest.mark.parametrize("source, tempo", [
    (WESNOTH / "breaking_the_chains.ogg", 144.0),  # the whole 214 s track the issue reported without a bpm
    (TOMATOES, 132.0),
])
def test_whole_tracks_get_their_tempo_and_varied_labels(source, tempo):
    """Whole real tracks: the steady pulse is found (within 3 %, any octave listeners tap), and their many
    regions are not a row of one label."""
    from ml_backend.analysis.music import letters_to_labels

    if not source.exists():
        pytest.skip(f"{source} is missing: install the Debian music packages of .ci/run")
    a = _analyze(source)
    assert a.bpm is not None and min(abs(a.bpm / (tempo * k) - 1) for k in (0.5, 1, 2)) <= 0.03, a.bpm
    labels = [x for x, s in zip(letters_to_labels(a.sections), a.sections) if s.label != "Silence"]
    assert len(labels) >= 5 and max(labels.count(x) for x in set(labels)) <= 0.6 * len(labels), labels
