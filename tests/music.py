"""Songs with known tempo, key, meter and section boundaries, rendered from MIDI we write (pretty_midi) with
fluidsynth and a General MIDI soundfont, plus deliberately bad audio files.

Sections that share a repetition letter are note-for-note identical; different letters differ in chord
progression, instrumentation, register, drum pattern and loudness, so structure and repetition can be found from
the audio. The tonic is stressed (progressions start and end on it, the bass plays roots) so the key is
unambiguous, and the kick marks every downbeat so the meter can be heard.

Rendering needs the `fluidsynth` and `ffmpeg` programs (Debian: fluidsynth fluid-soundfont-gm ffmpeg).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from label_config.vocabulary import KEYSCALES

SOUNDFONTS = (Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"), Path("/usr/share/sounds/sf2/default-GM.sf2"))
RENDER_SR = 44100  # Hz, fluidsynth output rate
TAIL_SECONDS = 1.0  # release kept after the last bar (fluidsynth renders until the reverb dies away)

# Encoders per file suffix (ffmpeg arguments after the input); the set covers what Label Studio users upload.
ENCODERS = {
    ".wav": None,
    ".flac": ["-c:a", "flac"],
    ".ogg": ["-c:a", "libvorbis", "-q:a", "4"],
    ".mp3": ["-c:a", "libmp3lame", "-b:a", "128k"],
    ".m4a": ["-c:a", "aac", "-b:a", "128k"],
    ".opus": ["-c:a", "libopus", "-b:a", "96k"],
}


@dataclass(frozen=True)
class Part:
    """One section of a song: a name for humans (Verse, Chorus), a length in bars, and a repetition letter."""

    name: str
    bars: int
    letter: str
    tempo: float | None = None  # beats per minute of this part when it differs from the song's


@dataclass(frozen=True)
class SongSpec:
    """What a rendered song is made of. `tempo` in beats per minute (the beat a musician taps: the quarter note,
    or the dotted quarter in 6/8), `tonic` a pitch class (0 = C), `mode` "major" or "minor", `meter` as ACE-Step
    writes it: beats per bar (2, 3, 4), or 6 for 6/8 (two beats of three eighths). `voice`: the lead of the
    verse and chorus is a sung "ooh" (General MIDI Voice Oohs) standing in for a singer."""

    tempo: float
    tonic: int
    mode: str
    meter: int = 4
    parts: tuple[Part, ...] = field(default_factory=tuple)
    seed: int = 0
    voice: bool = False

    @property
    def keyscale(self) -> str:
        """The key in ACE-Step spelling ("Eb major", "C# minor"), one of KEYSCALES."""
        names = KEYSCALES[:12] if self.mode == "major" else KEYSCALES[12:]
        return names[self.tonic % 12]

    @property
    def units(self) -> int:
        """Notated units per bar: quarter notes, or eighths in 6/8."""
        return self.meter

    def unit_seconds(self, part: Part | None = None) -> float:
        """Seconds of one notated unit (a beat, or an eighth in 6/8) in `part` (default: the song's tempo)."""
        tempo = (part.tempo if part is not None and part.tempo else None) or self.tempo
        return 60.0 / tempo / (3 if self.meter == 6 else 1)

    @property
    def bar_seconds(self) -> float:
        return self.units * self.unit_seconds()

    def boundaries(self) -> list[float]:
        """Section start times in seconds, plus the end of the last section."""
        times, t = [0.0], 0.0
        for part in self.parts:
            t += part.bars * self.units * self.unit_seconds(part)
            times.append(t)
        return times

    @property
    def duration(self) -> float:
        """Seconds of music (the rendered file adds a short release tail)."""
        return self.boundaries()[-1]

    def intervals(self) -> np.ndarray:
        """Reference section intervals, shape (n, 2), in seconds (mir_eval's layout)."""
        b = self.boundaries()
        return np.array([[b[i], b[i + 1]] for i in range(len(self.parts))])

    def letters(self) -> list[str]:
        return [p.letter for p in self.parts]

    def labels(self) -> list[str]:
        """The section label an annotator gives each part (Verse, Chorus, Bridge, Intro, Outro)."""
        return [p.name for p in self.parts]


SECTION_NAMES = {"A": "Verse", "B": "Chorus", "C": "Bridge", "D": "Intro", "E": "Outro"}


def song(tempo: float, key: str, form: str, bars: int | tuple[int, ...] = 4, meter: int = 4, seed: int = 0,
         voice: bool = False, tempos: dict[str, float] | None = None) -> SongSpec:
    """Shorthand: `song(120, "A minor", "ABABCB", bars=4)`; `bars` is one length for every part or one per part;
    `tempos` gives some letters a tempo of their own ({"C": 90})."""
    mode = key.split()[1]
    tonic = KEYSCALES.index(key) % 12
    lengths = (bars,) * len(form) if isinstance(bars, int) else tuple(bars)
    parts = tuple(Part(SECTION_NAMES.get(letter, "Section"), n, letter, (tempos or {}).get(letter))
                  for letter, n in zip(form, lengths))
    return SongSpec(tempo=tempo, tonic=tonic, mode=mode, meter=meter, parts=parts, seed=seed, voice=voice)


# --- the music -------------------------------------------------------------------------------------------------

_MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
_MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)

# Chord progressions as scale degrees (0 = tonic), one chord per bar. Each starts on the tonic.
_PROGRESSIONS = (
    (0, 3, 4, 0),  # I IV V I
    (0, 5, 3, 4),  # I vi IV V
    (3, 4, 0, 0),  # IV V I I   (starts away from home, sounds different)
    (0, 1, 4, 0),  # I ii V I
    (0, 2, 3, 4),  # I iii IV V
)


@dataclass(frozen=True)
class Style:
    """How a repetition letter sounds. Programs are General MIDI numbers (0-based); `register` is the MIDI note
    of the chord root area; `drums` names a pattern; `velocity` sets the energy."""

    chords: int
    chord_kind: str  # "block" | "arpeggio" | "pad"
    bass: int
    lead: int | None
    register: int
    drums: str
    velocity: int


_STYLES = (
    Style(chords=0, chord_kind="block", bass=33, lead=73, register=60, drums="rock", velocity=80),  # piano, flute
    Style(chords=29, chord_kind="block", bass=38, lead=81, register=55, drums="drive", velocity=110),  # drive gtr
    Style(chords=48, chord_kind="pad", bass=32, lead=None, register=64, drums="half", velocity=70),  # strings
    Style(chords=4, chord_kind="arpeggio", bass=33, lead=11, register=67, drums="sparse", velocity=75),  # e-piano
    Style(chords=24, chord_kind="arpeggio", bass=32, lead=42, register=52, drums="hats", velocity=65),  # nylon gtr
)

_VOICE_OOHS = 53  # General MIDI program (0-based) of the sung lead

_KICK, _SNARE, _HAT, _OPEN_HAT, _RIDE, _CRASH, _STICK, _TOM = 36, 38, 42, 46, 51, 49, 37, 45


def _letter_index(letter: str) -> int:
    return (ord(letter.upper()) - ord("A")) % 26


def _drum_hits(pattern: str, meter: int) -> list[tuple[float, int, int]]:
    """Hits of one bar as (beat offset, drum note, velocity). The kick on beat 0 marks every downbeat."""
    hits: list[tuple[float, int, int]] = [(0.0, _KICK, 120)]
    if meter == 6:  # 6/8: kick and backbeat on the two dotted quarters, the eighths on the hats
        return hits + [(3.0, _SNARE if pattern in ("rock", "drive") else _STICK, 90)] + [
            (float(i), _HAT if pattern != "drive" else _RIDE, 85 if i % 3 == 0 else 65) for i in range(6)]
    backbeats = [b for b in range(1, meter) if b % 2 == 1] if meter % 2 == 0 else list(range(1, meter))
    if pattern == "rock":
        hits += [(float(b), _KICK, 100) for b in range(2, meter, 2)]
        hits += [(float(b), _SNARE, 95) for b in backbeats]
        hits += [(i / 2, _HAT, 60) for i in range(meter * 2)]
    elif pattern == "drive":
        hits += [(float(b), _KICK, 105) for b in range(1, meter)]
        hits += [(float(b), _SNARE, 110) for b in backbeats]
        hits += [(i / 2, _RIDE, 75) for i in range(meter * 2)]
    elif pattern == "half":
        hits += [(meter / 2 if meter % 2 == 0 else 2.0, _STICK, 90)]
        hits += [(float(b), _HAT, 55) for b in range(meter)]
    elif pattern == "sparse":
        hits += [(float(b), _TOM, 70) for b in backbeats]
        hits += [(b + 0.5, _HAT, 50) for b in range(meter)]
    else:  # "hats"
        hits += [(i / 4, _HAT, 45 + 20 * (i % 4 == 0)) for i in range(meter * 4)]
    return hits


def _triad(spec: SongSpec, degree: int) -> list[int]:
    """Pitch classes (semitones above the tonic) of the triad on a scale degree. In minor the V chord is major
    (harmonic minor), which is what makes a minor key sound minor rather than its relative major."""
    scale = _MAJOR_SCALE if spec.mode == "major" else _MINOR_SCALE
    notes = [scale[(degree + k) % 7] + 12 * ((degree + k) // 7) for k in (0, 2, 4)]
    if spec.mode == "minor" and degree == 4:
        notes[1] += 1  # raised leading tone
    return notes


def _section_notes(spec: SongSpec, letter: str):
    """Yield (program, is_drum, pitch, start_beat, end_beat, velocity) for one bar-cycle pattern of a letter,
    covering `len(progression)` bars. Deterministic in (spec.seed, letter), so repeats are identical."""
    idx = _letter_index(letter)
    style = _STYLES[idx % len(_STYLES)]
    progression = _PROGRESSIONS[idx % len(_PROGRESSIONS)]
    rng = random.Random(f"{spec.seed}-{letter}")
    m = spec.units
    sub = 1 if m == 6 else 2  # arpeggio notes per unit: eighths, or the eighths themselves in 6/8
    lead = _VOICE_OOHS if spec.voice and letter in "AB" else style.lead
    root_base = style.register + (spec.tonic - style.register + 6) % 12 - 6  # the tonic nearest the register
    v = style.velocity
    scale = _MAJOR_SCALE if spec.mode == "major" else _MINOR_SCALE
    for bar, degree in enumerate(progression):
        b0 = bar * m
        triad = _triad(spec, degree)
        # chords
        if style.chord_kind == "arpeggio":
            for i in range(m * sub):
                pitch = root_base + triad[i % 3] + 12 * (i // 3 % 2)
                yield style.chords, False, pitch, b0 + i / sub, b0 + (i + 1) / sub, v
        else:
            hits = [0.0] if style.chord_kind == "pad" else [float(b) for b in range(m)]  # 6/8: every eighth
            length = m if style.chord_kind == "pad" else 0.9
            for t in hits:
                for pc in triad:
                    yield style.chords, False, root_base + pc, b0 + t, b0 + t + length, v - 10
        # bass: the root, low
        bass_root = 36 + spec.tonic + triad[0] - 12 * (spec.tonic + triad[0] > 11)
        bass_hits = [0.0, m / 2] if m % 2 == 0 else [0.0, 2.0]
        for t in bass_hits:
            yield style.bass, False, bass_root, b0 + t, b0 + t + (m / 2 if m % 2 == 0 else 1.0) - 0.05, v
        # lead: chord tones and neighbouring scale tones, a fixed rhythm per letter
        if lead is not None:
            t = 0.0
            while t < m:
                dur = rng.choice((0.5, 1.0, 1.0, 1.5))
                dur = min(dur, m - t)
                if rng.random() < 0.7:
                    pc = rng.choice(triad)
                else:
                    pc = scale[rng.randrange(7)]
                yield lead, False, root_base + 12 + pc, b0 + t, b0 + t + dur * 0.95, min(127, v + 5 + 15 * (lead == _VOICE_OOHS))
                t += dur
        # drums
        for offset, note, vel in _drum_hits(style.drums, m):
            yield None, True, note, b0 + offset, b0 + offset + 0.1, min(127, int(vel * v / 90))
        if bar == 0 and style.drums == "drive":
            yield None, True, _CRASH, b0, b0 + 1.0, 110


def song_midi(spec: SongSpec):
    """Build the pretty_midi.PrettyMIDI of a song (tempo, meter and key signature set)."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=spec.tempo)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(spec.meter, 8 if spec.meter == 6 else 4, 0.0))
    instruments: dict[tuple[int | None, bool], pretty_midi.Instrument] = {}
    starts = spec.boundaries()
    for part, part_start in zip(spec.parts, starts):
        beat = spec.unit_seconds(part)
        pattern = list(_section_notes(spec, part.letter))
        cycle = len(_PROGRESSIONS[_letter_index(part.letter) % len(_PROGRESSIONS)]) * spec.units
        section_beats = part.bars * spec.units
        for rep_start in range(0, section_beats, cycle):
            for program, is_drum, pitch, start, end, vel in pattern:
                if rep_start + start >= section_beats:
                    continue
                key = (program, is_drum)
                if key not in instruments:
                    instruments[key] = pretty_midi.Instrument(program=program or 0, is_drum=is_drum)
                end = min(end, section_beats - rep_start)
                instruments[key].notes.append(pretty_midi.Note(
                    velocity=int(vel), pitch=int(pitch),
                    start=part_start + (rep_start + start) * beat, end=part_start + (rep_start + end) * beat))
    pm.instruments.extend(instruments.values())
    return pm


# --- rendering -------------------------------------------------------------------------------------------------

class RenderError(RuntimeError):
    """fluidsynth or ffmpeg is missing or failed."""


def soundfont() -> Path:
    for path in SOUNDFONTS:
        if path.exists():
            return path
    raise RenderError("no General MIDI soundfont; install fluid-soundfont-gm")


def _run(cmd: list[str]) -> None:
    if shutil.which(cmd[0]) is None:
        raise RenderError(f"{cmd[0]} is not installed")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RenderError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")


def _spec_digest(spec: SongSpec, sr: int) -> str:
    """Digest of the spec, the rate and this module's source, so a change to the music invalidates renders."""
    text = json.dumps(asdict(spec), sort_keys=True) + str(sr) + Path(__file__).read_text()
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def render_song(path: Path, spec: SongSpec, sr: int = RENDER_SR) -> Path:
    """Render `spec` to `path` (format from the suffix, see ENCODERS) at `sr` Hz, stereo. A render of the same
    spec already at `path` is reused (a `.spec` note beside it records the digest)."""
    path = Path(path)
    note = path.with_name(path.name + ".spec")
    digest = _spec_digest(spec, sr)
    if path.exists() and note.exists() and note.read_text() == digest:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        mid = Path(tmp) / "song.mid"
        wav = Path(tmp) / "song.wav"
        song_midi(spec).write(str(mid))
        _run(["fluidsynth", "-ni", "-q", "-g", "0.3", "-r", str(sr), "-O", "s16", "-F", str(wav),
              str(soundfont()), str(mid)])
        _cut_tail(wav, spec.duration + TAIL_SECONDS)
        encode(wav, path)
    note.write_text(digest)
    return path


def _cut_tail(wav: Path, seconds: float) -> None:
    """Shorten a rendered WAV to `seconds`, fading out the last half second, as a mastered song would end."""
    data, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    data = data[: int(seconds * sr)]
    fade = min(len(data), sr // 2)
    data[len(data) - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)[:, None]
    sf.write(str(wav), data, sr, subtype="PCM_16")


def encode(src: Path, dst: Path, extra: list[str] | None = None) -> Path:
    """Convert an audio file to the format of `dst`'s suffix with ffmpeg (a copy for .wav), atomically."""
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.stem}.tmp{dst.suffix}")
    args = ENCODERS.get(dst.suffix.lower())
    if args is None and dst.suffix.lower() == ".wav" and not extra:
        shutil.copyfile(src, tmp)
    else:
        _run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), *(args or []), *(extra or []),
              str(tmp)])
    os.replace(tmp, dst)
    return dst


FORMAT_SET_SPEC = song(120, "G major", "ABA", bars=(4, 4, 2))  # 20 s: 8 s A, 8 s B, 4 s A


def render_format_set(folder: Path) -> dict[str, Path]:
    """One short song (about 20 s, G major, 120 bpm, 4/4, sections at 0, 8 and 16 s) in every format of ENCODERS:
    {".wav": Path, ".flac": ..., ".ogg": ..., ".mp3": ..., ".m4a": ..., ".opus": ...}."""
    folder = Path(folder)
    wav = render_song(folder / "song.wav", FORMAT_SET_SPEC)
    out = {".wav": wav}
    for suffix in ENCODERS:
        if suffix != ".wav":
            target = folder / f"song{suffix}"
            if not target.exists() or target.stat().st_mtime < wav.stat().st_mtime:  # stale after a re-render
                encode(wav, target)
            out[suffix] = target
    return out


# --- a varied set of songs for the accuracy tests and the benchmark --------------------------------------------

def accuracy_songs() -> list[SongSpec]:
    """Seventeen songs, 40-80 s, tempi 70-160 bpm, major and minor keys across the circle, 2/4, 3/4, 4/4 and 6/8,
    one with a slower bridge, two with a sung lead, different forms. Sections are mostly at least 8 s so a 3 s
    boundary tolerance is meaningful."""
    return [
        song(120, "C major", "DABAB", bars=4, seed=1),
        song(96, "A minor", "ABABE", bars=4, seed=2),
        song(140, "Eb major", "DABAB", bars=(6, 8, 8, 8, 8), seed=3),
        song(72, "E minor", "ABAB", bars=4, seed=4),
        song(150, "F major", "ABCAB", bars=8, seed=5),
        song(84, "D minor", "ABAB", bars=4, seed=6),
        song(108, "Bb major", "ABABCB", bars=4, seed=7),
        song(160, "F# minor", "DABAB", bars=8, seed=8),
        song(90, "Ab major", "ABAB", bars=6, seed=9, meter=3),
        song(126, "G minor", "ABAE", bars=(6, 8, 6, 8), seed=10),
        song(100, "D major", "DABCB", bars=4, seed=11),
        song(132, "C minor", "ABAB", bars=8, seed=12, meter=3),
        song(104, "E major", "ABAB", bars=10, seed=13, meter=2),  # 2/4
        song(76, "B minor", "ABAB", bars=8, seed=14, meter=6),  # 6/8, tapped in dotted quarters
        song(112, "A major", "ABACB", bars=(4, 4, 4, 6, 4), seed=15, tempos={"C": 84}),  # a slower bridge
        song(92, "G major", "DABABCBE", bars=(2, 4, 4, 4, 4, 4, 4, 2), seed=16, voice=True),  # sung lead
        song(138, "Bb minor", "DABABE", bars=8, seed=17, voice=True, meter=6),
    ]


def render_songs(folder: Path, specs: list[SongSpec], suffix: str = ".wav", sr: int = RENDER_SR,
                 jobs: int = 2) -> list[Path]:
    """Render several songs at `sr` Hz, `jobs` at a time (fluidsynth is single-threaded)."""
    from concurrent.futures import ThreadPoolExecutor

    folder = Path(folder)
    targets = [folder / f"song{i:02d}{suffix}" for i in range(len(specs))]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(lambda target, spec: render_song(target, spec, sr), targets, specs))


# --- bad and awkward files -------------------------------------------------------------------------------------

def make_empty(path: Path) -> Path:
    """A zero-byte file."""
    Path(path).write_bytes(b"")
    return Path(path)


def make_corrupt_header(path: Path, source: Path) -> Path:
    """A copy of `source` whose first 64 bytes (the container header) are overwritten with junk."""
    data = bytearray(Path(source).read_bytes())
    data[:64] = bytes(range(64, 128))
    Path(path).write_bytes(bytes(data))
    return Path(path)


def make_text_as_audio(path: Path) -> Path:
    """A text file with an audio suffix (e.g. notes.wav): an unsupported format under a plausible name."""
    Path(path).write_text("These are lyrics, not audio.\nLa la la.\n")
    return Path(path)


def make_midi(path: Path) -> Path:
    """A Standard MIDI File: music, but no audio to decode."""
    song_midi(FORMAT_SET_SPEC).write(str(path))
    return Path(path)


def make_silence(path: Path, seconds: float = 10.0, sr: int = 44100) -> Path:
    """Digital silence, 16-bit stereo, format from the suffix."""
    sf.write(str(path), np.zeros((int(seconds * sr), 2), dtype=np.int16), sr)
    return Path(path)


def make_clip(path: Path, source: Path, seconds: float = 1.0) -> Path:
    """The first `seconds` of `source` (a wav/flac), written in the format of `path`'s suffix."""
    data, sr = sf.read(str(source), dtype="float32", always_2d=True)
    sf.write(str(path), data[: int(seconds * sr)], sr)
    return Path(path)


def make_long(folder: Path, source: Path, hours: float = 1.0, suffix: str = ".flac") -> Path:
    """A long file (default one hour) built cheaply by repeating `source`, cached in `folder`.

    ".flac": mono 22050 Hz, repeated block by block with soundfile (exercises the soundfile path and resampling).
    ".mp3": mono 8 kHz MP3 frames concatenated without ID3/Xing headers (exercises the ffmpeg path; decoders
    read concatenated MP3 frame streams as one stream; the low rate keeps decoding an hour to a few seconds)."""
    folder = Path(folder)
    target = folder / f"long-{hours:g}h{suffix}"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    piece = folder / f".piece-{Path(source).stem}-22050.wav"
    if not piece.exists():
        encode(source, piece, ["-ac", "1", "-ar", "22050", "-c:a", "pcm_s16le"])
    piece_seconds = sf.info(str(piece)).duration
    repeats = int(np.ceil(hours * 3600 / piece_seconds))
    tmp = target.with_name(f".{target.stem}.tmp{suffix}")
    if suffix == ".flac":
        block, sr = sf.read(str(piece), dtype="int16")
        with sf.SoundFile(str(tmp), "w", samplerate=sr, channels=1, format="FLAC", subtype="PCM_16") as out:
            for _ in range(repeats):
                out.write(block)
    elif suffix == ".mp3":
        frame_file = folder / ".piece.mp3"
        encode(piece, frame_file, ["-ar", "8000", "-c:a", "libmp3lame", "-b:a", "24k", "-write_xing", "0",
                                   "-id3v2_version", "0", "-write_id3v1", "0"])
        chunk = frame_file.read_bytes()
        with open(tmp, "wb") as out:
            for _ in range(repeats):
                out.write(chunk)
    else:
        raise ValueError(f"make_long: {suffix} not supported (use .flac or .mp3)")
    os.replace(tmp, target)
    return target
