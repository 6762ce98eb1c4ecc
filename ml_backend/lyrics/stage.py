"""The lyrics stage of one request, as ``SongModel`` runs it: ``transcribe`` every song's voiced chunks in one
engine call, then ``apply`` each song's transcript to its ``SongAnnotation`` (region lyrics, song lyrics, vocal
language, notes where the description model and the transcriber disagree).

Never raises for a song: an engine that cannot start or a chunk that fails leaves the affected regions without
lyrics and marks the transcript not ok (the model does not cache such a prediction); the reason is logged.
"""

from __future__ import annotations

import logging
import threading
import time
import unicodedata
from collections import Counter

import numpy as np

from label_config.sidecar import assemble_lyrics

from ml_backend.lyrics.align import described_vocals, disagreement_note, split_lines, vocal_language, words_by_region
from ml_backend.lyrics.chunks import plan_chunks, stitch
from ml_backend.lyrics.guards import GuardSettings, apply_guards
from ml_backend.lyrics.types import Segment, Transcript, Word

log = logging.getLogger(__name__)

SR = 16000  # Hz: the decoded audio SongModel holds
# A chunk with less voice than this is not sent to the transcriber (a few stray frames are not a sung word).
SKIP_CHUNK_VOICE_SECONDS = 0.1
NO_VOICE = "no voice heard in the region"


class LyricsStage:
    """The lyrics engine of this process (created on first use) and the rules that turn its words into fields."""

    def __init__(self, settings):
        self.settings = settings
        self.limits = GuardSettings.from_settings(settings)
        self._engine = None
        self.load_error = ""
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.settings.lyrics_engine != "none"

    def engine(self):
        """The transcription engine, created on first use; None (and ``load_error`` set) when it cannot start."""
        if not self.enabled:
            return None
        with self._lock:
            if self._engine is None:
                from ml_backend.lyrics.engines import create_lyrics_engine

                started = time.perf_counter()
                try:
                    self._engine = create_lyrics_engine(self.settings)
                except Exception as exc:
                    self.load_error = f"{type(exc).__name__}: {exc}"
                    log.error("the %s lyrics engine cannot start: %s", self.settings.lyrics_engine, self.load_error)
                    return None
                self.load_error = ""
                log.info("lyrics engine %s (%s) ready in %.1f s", self.settings.lyrics_engine,
                         self.settings.lyrics_model_id, time.perf_counter() - started)
            return self._engine

    def load(self) -> None:
        """Warm up: load the transcription model and the voice detector; the log says whether lyrics are on."""
        if not self.enabled:
            log.info("lyrics: off (LYRICS_ENGINE=none)")
            return
        if self.engine() is not None and self.limits.min_voice_seconds > 0:
            from ml_backend.lyrics.voice import voice_activity

            voice_activity(np.zeros(SR, dtype=np.float32))

    # --- transcription ------------------------------------------------------------------------------------

    def transcribe(self, songs: list[np.ndarray]) -> list[Transcript | None]:
        """One transcript per song (16 kHz mono float32), None for all when lyrics are off. The voiced chunks
        of all songs go to the engine in one call, so it can batch them."""
        if not self.enabled:
            return [None] * len(songs)
        engine = self.engine()
        if engine is None:
            return [Transcript.failed(f"no lyrics engine: {self.load_error}") for _ in songs]
        from ml_backend.lyrics.engines.base import ChunkAudio

        voices, plans, requests = [], [], []
        for index, audio in enumerate(songs):
            voice = self._voice(audio)
            chunks = plan_chunks(audio.size / SR)
            sent = [c for c in chunks
                    if voice is None or voice.voiced_seconds(c.start, c.end) >= SKIP_CHUNK_VOICE_SECONDS]
            voices.append(voice)
            plans.append((chunks, sent))
            requests.extend(ChunkAudio(index, audio[int(c.start * SR):int(c.end * SR)]) for c in sent)
        try:
            results = list(engine.transcribe_chunks(requests)) if requests else []
        except Exception as exc:  # an engine bug must not cost the songs their other fields
            log.exception("the lyrics engine failed on %d chunks", len(requests))
            return [Transcript.failed(f"{type(exc).__name__}: {exc}") for _ in songs]
        if len(results) != len(requests):
            log.error("the lyrics engine returned %d results for %d chunks", len(results), len(requests))
            return [Transcript.failed("chunk count mismatch") for _ in songs]
        transcripts, offset = [], 0
        for voice, (chunks, sent) in zip(voices, plans):
            song_results, offset = results[offset:offset + len(sent)], offset + len(sent)
            transcripts.append(song_transcript(chunks, sent, song_results, voice))
        return transcripts

    def _voice(self, audio: np.ndarray):
        if self.limits.min_voice_seconds <= 0:
            return None
        from ml_backend.lyrics.voice import voice_activity

        return voice_activity(audio, SR)

    # --- fields -------------------------------------------------------------------------------------------

    def apply(self, song, transcript: Transcript | None, plans: list) -> None:
        """Fill ``song`` (a SongAnnotation built from ``plans``, its regions in the same order) from the
        transcript: each region's lyrics, the song's lyrics and vocal language, and disagreement notes."""
        if transcript is None:
            return
        if not transcript.ok:
            log.warning("lyrics: %s", transcript.error)
        kept, dropped = apply_guards(transcript.words, transcript.segments, self.limits)
        bounds = [(r.start_sec, r.end_sec) for r in song.regions]
        buckets = words_by_region(kept, bounds)
        dropped_by_region = [[(w, reason) for w, reason in dropped if w in bucket]
                             for bucket in words_by_region([w for w, _ in dropped], bounds)]
        has_words = False
        for index, (region, words) in enumerate(zip(song.regions, buckets)):
            if words and self._too_little_voice(transcript, region):
                dropped_by_region[index] += [(w, NO_VOICE) for w in words]
                words = []
            region.lyrics = "\n".join(split_lines(words, self.settings.lyrics_pause_seconds))
            has_words = has_words or bool(region.lyrics)
            descriptions = plans[index].descriptions if index < len(plans) else []
            note = disagreement_note(described_vocals(descriptions), bool(region.lyrics), dropped_by_region[index])
            if note:
                region.notes = f"{region.notes}\n{note}" if region.notes else note
        if not transcript.ok and not has_words:
            return  # the transcriber failed: leave the description model's language alone
        song.language = vocal_language(transcript.language, has_words)
        song.lyrics = assemble_lyrics(song.regions) if has_words else ""

    def _too_little_voice(self, transcript: Transcript, region) -> bool:
        voice = transcript.voice
        return (voice is not None and self.limits.min_voice_seconds > 0
                and voice.voiced_seconds(region.start_sec, region.end_sec) < self.limits.min_voice_seconds)


def clean_text(text: str) -> str:
    """A word as it may go into a text box: control characters and undecodable bytes (U+FFFD) removed."""
    return "".join(c for c in text if unicodedata.category(c)[0] != "C" and c != "\ufffd").strip()


def song_transcript(chunks: list, sent: list, results: list, voice) -> Transcript:
    """One song's transcript from the results of its ``sent`` chunks (a subset of ``chunks``, in order): words
    shifted to song seconds and stitched, segments shifted, the language most of its words were written in."""
    by_chunk = {c: r for c, r in zip(sent, results)}
    words_per_chunk, segments, votes, errors = [], [], Counter(), []
    for chunk in chunks:
        result = by_chunk.get(chunk)
        if result is None or not result.ok:
            if result is not None:
                errors.append(result.error)
            words_per_chunk.append([])
            continue
        shifted = [Word(clean_text(w.text), w.start + chunk.start, w.end + chunk.start) for w in result.words]
        shifted = [w for w in shifted if w.text]
        words_per_chunk.append(shifted)
        segments.extend(Segment(s.start + chunk.start, s.end + chunk.start, s.text, s.no_speech_prob,
                                s.avg_logprob, s.compression_ratio) for s in result.segments)
        if result.language:
            votes[result.language.lower()] += max(1, len(shifted))
    words = stitch(chunks, words_per_chunk)
    language = votes.most_common(1)[0][0] if votes else ""
    error = f"{len(errors)} of {len(sent)} chunks not transcribed (first: {errors[0]})" if errors else ""
    return Transcript(words=words, segments=segments, language=language, ok=not errors, error=error, voice=voice)
