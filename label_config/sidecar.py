"""The data model of one annotated song and the sidecar schema written next to its audio.

``SongAnnotation`` is what the backend predicts and what the converter reads back from an export; ``to_sidecar``
turns it into the JSON that ACE-Step 1.5 (and the original captioning pipeline) read. Times are in seconds.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field

INSTRUMENTAL_LYRICS = "[Instrumental]"

# The audio files ACE-Step 1.5 reads, the one list for the converter, `validate` and Label Studio's import filter:
# its LoRA training tab scans these ...
LORA_TAB_AUDIO = (".wav", ".mp3", ".flac", ".ogg", ".opus")
# ... and its v2 command-line trainer these as well.
V2_TRAINER_ONLY_AUDIO = (".m4a",)
AUDIO_EXTENSIONS = LORA_TAB_AUDIO + V2_TRAINER_ONLY_AUDIO

_SAMPLE_NAMESPACE = uuid.UUID("6f1d3f0e-8a53-4c7e-9d0b-2f6b1b0c7a11")  # sample ids: uuid5(namespace, "task-<id>")


@dataclass
class Region:
    """One section on the timeline: [start_sec, end_sec) in song time, its label and per-region texts."""

    start_sec: float
    end_sec: float
    section_label: str = ""
    notes: str = ""
    lyrics: str = ""
    id: str = ""


@dataclass
class SongAnnotation:
    """Everything known about one song. List-like fields hold one entry per item."""

    caption: str = ""
    lyrics: str = ""
    genres: list[str] = field(default_factory=list)
    instruments: list[str] = field(default_factory=list)
    effects: list[str] = field(default_factory=list)
    vocal_characteristics: list[str] = field(default_factory=list)
    mix_notes: list[str] = field(default_factory=list)
    bpm: int | None = None
    keyscale: str = ""
    timesignature: str = ""
    language: str = ""  # a code from vocabulary.LANGUAGES, "" when not given
    duration: float | None = None  # seconds, measured from the audio when known
    regions: list[Region] = field(default_factory=list)

    @property
    def is_instrumental(self) -> bool:
        if self.language == "instrumental":
            return True
        text = self.effective_lyrics_text().strip()
        return not text or text == INSTRUMENTAL_LYRICS

    def effective_lyrics_text(self) -> str:
        return self.lyrics.strip() or assemble_lyrics(self.regions)


def assemble_lyrics(regions: list[Region]) -> str:
    """Lyrics in ACE-Step's format from per-region lyrics: each region's words under its section tag, in time
    order, sections separated by a blank line. Regions without words are left out; no words at all gives ""."""
    blocks = []
    for region in sorted(regions, key=lambda r: (r.start_sec, r.end_sec)):
        words = region.lyrics.strip()
        if not words:
            continue
        tag = f"[{region.section_label}]" if region.section_label else "[Verse]"
        blocks.append(f"{tag}\n{words}")
    return "\n\n".join(blocks)


def lyrics_file_text(song: SongAnnotation) -> str:
    """The song's lyrics as ACE-Step trains on them: the song-level lyrics when filled, else assembled from the
    regions, else ``[Instrumental]``. Ends with a newline. ``convert`` writes ``<stem>.txt`` only when they hold
    words (a lyrics file, even one holding ``[Instrumental]``, makes ACE-Step's folder scan call the song vocal)."""
    text = song.effective_lyrics_text()
    if not text or song.language == "instrumental":
        text = INSTRUMENTAL_LYRICS
    return text.rstrip("\n") + "\n"


def vocal_status(song: SongAnnotation) -> tuple[bool | None, str]:
    """(``True`` instrumental / ``False`` vocal / ``None`` unknown, a warning or ""). Lyrics with words make a song
    vocal; without words only the language says it: "instrumental", a language code (vocal, but it trains as
    ``[Instrumental]``), or nothing / "unknown": then nobody said, and the song is never called instrumental just
    because its fields were left empty."""
    words = song.effective_lyrics_text().strip()
    has_words = bool(words) and words != INSTRUMENTAL_LYRICS
    if song.language == "instrumental":
        return True, ("marked instrumental but has lyrics: the lyrics are not written, ACE-Step trains it as "
                      "[Instrumental]" if has_words else "")
    if has_words:
        return False, ""
    vocals = f" and vocal notes ({', '.join(song.vocal_characteristics)})" if song.vocal_characteristics else ""
    if song.language and song.language != "unknown":
        return False, (f"vocal language {song.language!r}{vocals} but no lyrics: ACE-Step trains it as "
                       "[Instrumental]; type the lyrics")
    if vocals:
        return None, (f"vocal notes ({', '.join(song.vocal_characteristics)}) but no lyrics and no language: "
                      "vocals unknown, ACE-Step trains it as [Instrumental]; type the lyrics or set the language")
    return None, ("vocals unknown: neither lyrics nor a vocal language were given, ACE-Step trains it as "
                  "[Instrumental]; set the vocal language (or 'instrumental')")


def to_sidecar(song: SongAnnotation, provenance: dict | None = None, lyrics_text: str | None = None) -> dict:
    """The sidecar JSON for one song: ACE-Step 1.5's keys (only when known, since it treats falsy values as
    missing anyway), the original pipeline's keys, and the full analysis under ``music_analysis``.
    ``lyrics_text`` is ``lyrics_file_text(song)`` when the caller has it already.

    ACE-Step's ``language`` is written only for a real language code: its folder scan marks a song vocal for any
    other truthy value ("unknown" included), and "instrumental" is not in its language list (without the key it
    holds "unknown", as its own labeling writes for instrumentals). ``vocal_language`` (the captioning pipeline's
    key, default "en" there) always says it: a code, "instrumental" or "unknown"; ``is_instrumental`` is true,
    false or null (unknown)."""
    lyrics = (lyrics_file_text(song) if lyrics_text is None else lyrics_text).rstrip("\n")
    status, _warning = vocal_status(song)
    code = song.language if song.language not in ("", "instrumental", "unknown") else ""
    sidecar: dict = {"caption": song.caption}
    if song.bpm is not None:
        sidecar["bpm"] = int(song.bpm)
    if song.keyscale:
        sidecar["keyscale"] = song.keyscale
    if song.timesignature:
        sidecar["timesignature"] = song.timesignature
    if code:
        sidecar["language"] = code
    sidecar["lyrics"] = lyrics
    sidecar["vocal_language"] = code or ("instrumental" if status is True else "unknown")
    if song.duration is not None:
        sidecar["duration"] = round(float(song.duration), 3)
    sidecar["genre"] = ", ".join(song.genres)
    sidecar["is_instrumental"] = status
    sidecar["music_analysis"] = {
        "timeline": [
            {
                "start_sec": round(r.start_sec, 3),
                "end_sec": round(r.end_sec, 3),
                "section_label": r.section_label,
                "notes": r.notes,
                "lyrics": r.lyrics,
            }
            for r in sorted(song.regions, key=lambda r: (r.start_sec, r.end_sec))
        ],
        "genres": list(song.genres),
        "instruments": list(song.instruments),
        "effects": list(song.effects),
        "vocal_characteristics": list(song.vocal_characteristics),
        "mix_notes": list(song.mix_notes),
    }
    if provenance:
        sidecar["provenance"] = dict(provenance)
    return sidecar



def acestep_sample(task_id: int, dataset_dir: str, audio: str, sidecar: dict, lyrics: str,
                   duration: float | None) -> dict:
    """One sample of ACE-Step 1.5's dataset file (the list its LoRA training tab loads and saves): the audio's
    absolute path (``dataset_dir`` joined with the file name ``audio``), the sidecar's values, ``lyrics`` as in
    the lyrics file. ``duration`` (seconds) is used when the sidecar has none. The id is stable per task."""
    lyrics = lyrics.rstrip("\n")
    language = sidecar.get("language") or "unknown"
    if language == "instrumental":  # a hand-edited sidecar: ACE-Step's language list has no "instrumental"
        language = "unknown"
    flag = sidecar.get("is_instrumental")
    # Unknown vocals (null) train as [Instrumental] like a folder scan holds them; the sidecar keeps the null.
    instrumental = flag if isinstance(flag, bool) else lyrics.strip() in ("", INSTRUMENTAL_LYRICS)
    seconds = sidecar.get("duration", duration)
    return {
        "id": str(uuid.uuid5(_SAMPLE_NAMESPACE, f"task-{task_id}")),
        "audio_path": os.path.join(dataset_dir, audio),
        "filename": audio, "caption": sidecar.get("caption", ""), "genre": sidecar.get("genre", ""),
        "lyrics": lyrics, "raw_lyrics": lyrics if _has_words(lyrics) else "",
        "formatted_lyrics": lyrics if _has_words(lyrics) else "", "bpm": sidecar.get("bpm"),
        "keyscale": sidecar.get("keyscale", ""), "timesignature": sidecar.get("timesignature", ""),
        "duration": int(seconds) if isinstance(seconds, (int, float)) else 0, "language": language,
        "is_instrumental": instrumental, "custom_tag": "", "labeled": bool(sidecar.get("caption")),
        "prompt_override": None,
    }


def _has_words(lyrics: str) -> bool:
    return lyrics.strip() not in ("", INSTRUMENTAL_LYRICS)


def acestep_metadata(name: str, created_at: str, samples: int, any_vocals: bool) -> dict:
    """The ``metadata`` head of ACE-Step 1.5's dataset file: the dataset's name, an ISO time stamp, the number of
    samples and whether all of them are instrumental."""
    return {"name": name, "created_at": created_at, "num_samples": samples, "custom_tag": "",
            "tag_position": "prepend", "all_instrumental": samples > 0 and not any_vocals, "genre_ratio": 0}
