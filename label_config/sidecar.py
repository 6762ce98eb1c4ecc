"""The data model of one annotated song and the sidecar schema written next to its audio.

``SongAnnotation`` is what the backend predicts and what the converter reads back from an export; ``to_sidecar``
turns it into the JSON that ACE-Step 1.5 (and the original captioning pipeline) read. Times are in seconds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# Keys ACE-Step 1.5's dataset scanner reads from song.json; everything else in a sidecar is ignored by it.
ACESTEP_KEYS = ("caption", "bpm", "keyscale", "timesignature", "language")
# Keys the original captioning pipeline's trainer reads.
PIPELINE_KEYS = ("caption", "lyrics", "bpm", "keyscale", "timesignature", "vocal_language", "duration")

INSTRUMENTAL_LYRICS = "[Instrumental]"
AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".ogg", ".opus", ".m4a")  # what ACE-Step 1.5 scans (m4a: v2 trainer)


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
    """The contents of ``<stem>.lyrics.txt``: the song-level lyrics when filled, else assembled from the regions,
    else ``[Instrumental]``. Ends with a newline."""
    text = song.effective_lyrics_text()
    if not text or song.language == "instrumental":
        text = INSTRUMENTAL_LYRICS
    return text.rstrip("\n") + "\n"


def to_sidecar(song: SongAnnotation, provenance: dict | None = None, lyrics_text: str | None = None) -> dict:
    """The sidecar JSON for one song: ACE-Step 1.5's keys (only when known, since it treats falsy values as
    missing anyway), the original pipeline's keys, and the full analysis under ``music_analysis``.
    ``lyrics_text`` is ``lyrics_file_text(song)`` when the caller has it already."""
    lyrics = (lyrics_file_text(song) if lyrics_text is None else lyrics_text).rstrip("\n")
    language = song.language or ("instrumental" if lyrics == INSTRUMENTAL_LYRICS else "unknown")
    sidecar: dict = {"caption": song.caption}
    if song.bpm is not None:
        sidecar["bpm"] = int(song.bpm)
    if song.keyscale:
        sidecar["keyscale"] = song.keyscale
    if song.timesignature:
        sidecar["timesignature"] = song.timesignature
    sidecar["language"] = language
    sidecar["lyrics"] = lyrics
    sidecar["vocal_language"] = language
    if song.duration is not None:
        sidecar["duration"] = round(float(song.duration), 3)
    sidecar["genre"] = ", ".join(song.genres)
    sidecar["is_instrumental"] = language == "instrumental" or lyrics == INSTRUMENTAL_LYRICS
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


def song_to_dict(song: SongAnnotation) -> dict:
    """Plain-dict form (for caches and logs)."""
    return asdict(song)


def song_from_dict(data: dict) -> SongAnnotation:
    """Inverse of ``song_to_dict``."""
    data = dict(data)
    regions = [Region(**r) for r in data.pop("regions", [])]
    return SongAnnotation(**data, regions=regions)
