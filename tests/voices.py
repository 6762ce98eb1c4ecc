"""Songs with a voice in known places, for the lyrics tests: espeak-ng (Debian) speaks lines, which are mixed over
a song rendered by ``tests.music`` (instrumental, fluidsynth). Audio is 16 kHz mono float32, times in seconds.

espeak-ng is a formant synthesiser, so its voice is synthetic but real audio of a voice: Silero VAD hears it as
speech over the music, as it hears singing in recorded songs.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000  # Hz


def has_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


def speak(text: str, words_per_minute: int = 150) -> np.ndarray:
    """``text`` spoken by espeak-ng, 16 kHz mono float32 (espeak writes 22.05 kHz; resampled with soxr)."""
    import soxr

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "voice.wav"
        subprocess.run(["espeak-ng", "-s", str(words_per_minute), "-w", str(wav), text], check=True,
                       capture_output=True)
        audio, rate = sf.read(wav, dtype="float32", always_2d=True)
    return soxr.resample(audio.mean(axis=1), rate, SR).astype(np.float32)


def instrumental(folder: Path, seconds_at_least: float = 30.0, seed: int = 0) -> np.ndarray:
    """A rendered instrumental song (tests.music) of at least the given length, 16 kHz mono float32."""
    import librosa

    from tests.music import render_song, song

    bars = max(2, int(np.ceil(seconds_at_least / 2.0 / 4)))  # 120 bpm in 4/4: a bar is 2 s; four sections
    path = render_song(Path(folder) / f"inst-{seed}-{bars}.wav", song(120, "A minor", "ABAB", bars=bars, seed=seed))
    audio, _ = librosa.load(path, sr=SR, mono=True)
    return audio.astype(np.float32)


def with_voice(music: np.ndarray, lines: list[tuple[float, str]], music_gain: float = 0.5) -> np.ndarray:
    """``music`` (scaled by ``music_gain``) with each (start seconds, text) line spoken over it."""
    out = music.astype(np.float32) * music_gain
    for start, text in lines:
        voice = speak(text)
        at = int(start * SR)
        end = min(out.size, at + voice.size)
        out[at:end] += voice[:end - at]
    return np.clip(out, -1.0, 1.0)


def write(path: Path, audio: np.ndarray) -> Path:
    """Save 16 kHz mono audio as a 16-bit WAV file."""
    sf.write(path, audio, SR, subtype="PCM_16")
    return path


VERSE = "hello my darling, I have been waiting for you all night long"
CHORUS = "walking in the rain tonight, singing all the way back home"


def make_documents(root: Path) -> Path:
    """A LOCAL_FILES_DOCUMENT_ROOT with songs/voiced.wav (40 s of music with VERSE spoken at 1 s and CHORUS at
    11 s, no voice after 20 s) and songs/instrumental.wav (the same music alone); returns ``root``."""
    (root / "songs").mkdir(parents=True, exist_ok=True)
    music = instrumental(root, 40.0)[: 40 * SR]
    write(root / "songs" / "voiced.wav", with_voice(music, [(1.0, VERSE), (11.0, CHORUS)]))
    write(root / "songs" / "instrumental.wav", music)
    return root
