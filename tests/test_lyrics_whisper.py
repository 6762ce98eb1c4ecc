"""LYRICS_ENGINE=whisper end to end with a tiny random Whisper built offline (tests/tiny_whisper.py) and loaded
through the real transformers code (WhisperForConditionalGeneration.generate with token timestamps, the
Whisper word splitter); Silero VAD on espeak-ng voice over rendered music and on the music alone."""

from __future__ import annotations

import numpy as np
import pytest

import ml_backend.lyrics.engines.whisper_engine as whisper_engine
from ml_backend.lyrics.engines import LyricsEngineError, create_lyrics_engine
from ml_backend.lyrics.engines.base import ChunkAudio
from ml_backend.lyrics.voice import VoiceActivity, voice_activity
from ml_backend.model import SongModel
from ml_backend.settings import Settings
from tests import voices
from tests.test_app import local_ref, ls_task, predict_body

pytestmark = pytest.mark.skipif(not voices.has_espeak(), reason="needs espeak-ng (apt-get install espeak-ng)")

SR = 16000


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory):
    from tests.tiny_whisper import build_whisper

    return build_whisper(tmp_path_factory.mktemp("tiny-whisper"))


@pytest.fixture(scope="module")
def documents(tmp_path_factory):
    return voices.make_documents(tmp_path_factory.mktemp("documents"))


def read(documents, name: str) -> np.ndarray:
    import soundfile as sf

    audio, rate = sf.read(documents / "songs" / name, dtype="float32")
    assert rate == SR
    return audio


# --- voice activity -----------------------------------------------------------------------------------------


def test_voice_activity_hears_the_voice_and_not_the_music(documents):
    voiced = voice_activity(read(documents, "voiced.wav"))
    music = voice_activity(read(documents, "instrumental.wav"))
    assert voiced.voiced_seconds(0, 10) > 2.0 and voiced.voiced_seconds(10, 20) > 2.0  # the two lines
    assert voiced.voiced_seconds(20, 40) < 0.5  # music only
    assert music.voiced_seconds(0, 40) < 0.5
    assert voice_activity(np.zeros(100, dtype=np.float32)).voiced_seconds(0, 1) == 0.0
    with pytest.raises(ValueError, match="16000 Hz"):
        voice_activity(np.zeros(SR), sr=44100)


def test_voice_activity_leaves_torchs_thread_count_alone(monkeypatch):
    import sys

    import torch

    import ml_backend.lyrics.voice as voice

    monkeypatch.setattr(voice, "_MODEL", None)
    for name in [m for m in sys.modules if m.startswith("silero_vad")]:  # imported afresh: it sets 1 thread
        monkeypatch.delitem(sys.modules, name)
    torch.set_num_threads(2)
    voice_activity(np.zeros(SR, dtype=np.float32))
    assert torch.get_num_threads() == 2


def test_streams_side_by_side_agree_with_one_long_pass(documents):
    """The batched streams (ml_backend.lyrics.voice) against the model run frame by frame over the whole song."""
    import torch

    from ml_backend.lyrics import voice

    song = np.tile(read(documents, "voiced.wav"), 2)  # 80 s: three streams
    batched = voice_activity(song).probabilities
    frames = torch.from_numpy(song[: batched.size * voice.FRAME].reshape(-1, voice.FRAME))
    model = voice._model()
    with torch.inference_mode():
        model.reset_states()
        single = np.array([float(model(frame, SR)) for frame in frames])
    assert np.mean((single >= 0.5) == (batched >= 0.5)) > 0.98
    one = voice.VoiceActivity(single)
    for start in range(0, 80, 10):
        assert abs(one.voiced_seconds(start, start + 10) - voice.VoiceActivity(batched).voiced_seconds(
            start, start + 10)) < 0.3


def test_voiced_seconds_counts_frames_in_the_window():
    activity = VoiceActivity(np.array([0.9] * 10 + [0.1] * 10, dtype=np.float32), frame_seconds=0.1)
    assert activity.voiced_seconds(0, 2) == pytest.approx(1.0)
    assert activity.voiced_seconds(0.5, 1.5) == pytest.approx(0.5)
    assert activity.voiced_seconds(5, 9) == 0.0


# --- the engine ---------------------------------------------------------------------------------------------


def test_tiny_whisper_transcribes_chunks_with_word_times(tiny_whisper, documents):
    engine = create_lyrics_engine(Settings(lyrics_engine="whisper", lyrics_model_id=str(tiny_whisper),
                                           device="cpu", batch_size=2))
    song = read(documents, "voiced.wav")
    other = np.random.default_rng(1).standard_normal(12 * SR).astype(np.float32) * 0.1
    chunks = [ChunkAudio(0, song[:30 * SR]), ChunkAudio(0, song[10 * SR:40 * SR]), ChunkAudio(1, other)]
    results = engine.transcribe_chunks(chunks)
    assert [r.ok for r in results] == [True, True, True]
    assert results[0].language == results[1].language  # one language per song
    lang_codes = set(engine.lang_ids)
    assert {r.language for r in results} <= lang_codes
    for chunk, result in zip(chunks, results):
        seconds = chunk.audio.size / SR
        assert result.words, "the random model writes text"
        for word in result.words:
            assert word.text.strip() and 0.0 <= word.start <= word.end <= seconds
        [segment] = result.segments
        assert (segment.start, segment.end) == (0.0, seconds)
        assert 0.0 <= segment.no_speech_prob <= 1.0 and segment.avg_logprob < 0.0
        assert segment.compression_ratio > 0 and segment.text
    # the encoder runs once per batch of chunks (language step, generate and log-probabilities share it)
    calls = []
    hook = engine.model.get_encoder().register_forward_hook(lambda *a: calls.append(1))
    try:
        engine.transcribe_chunks(chunks)
    finally:
        hook.remove()
    assert len(calls) == 2  # three chunks in batches of two
    # the same process keeps one copy of the model
    again = create_lyrics_engine(Settings(lyrics_engine="whisper", lyrics_model_id=str(tiny_whisper), device="cpu"))
    assert again.model is engine.model


def test_a_folder_that_is_not_whisper_is_refused_with_a_message(tmp_path, tiny_model_dir):
    with pytest.raises(LyricsEngineError, match="is a 'qwen2_audio' model"):
        create_lyrics_engine(Settings(lyrics_engine="whisper", lyrics_model_id=str(tiny_model_dir), device="cpu"))
    with pytest.raises(LyricsEngineError, match="cannot load LYRICS_MODEL_ID"):
        create_lyrics_engine(Settings(lyrics_engine="whisper", lyrics_model_id=str(tmp_path / "nothing"),
                                      device="cpu"))


# --- whole songs through SongModel --------------------------------------------------------------------------


def whisper_settings(documents, model_dir, model_id, **kw) -> Settings:
    """Fixed 10 s regions; guards that let the random model's text through (its figures are random), unless the
    test sets them."""
    values = dict(lyrics_no_speech_threshold=1.0, lyrics_compression_ratio_threshold=1000.0,
                  lyrics_max_repeats=1000)
    values.update(kw)
    return Settings(engine="dsp", model_dir=model_dir, local_files_document_root=str(documents),
                    segmentation="fixed", segment_seconds=10.0, overlap_seconds=0.0, device="cpu",
                    lyrics_engine="whisper", lyrics_model_id=str(model_id), **values)


def by_name(prediction: dict, name: str) -> list[dict]:
    return [r for r in prediction["result"] if r["from_name"] == name]


def test_a_song_through_songmodel_gets_lyrics_where_the_voice_is(tiny_whisper, documents, tmp_path):
    model = SongModel(whisper_settings(documents, tmp_path, tiny_whisper))
    body = predict_body([ls_task(1, local_ref("voiced.wav"))])
    [prediction] = model.predict(body["tasks"], body["label_config"])
    regions = {r["id"]: r["value"] for r in by_name(prediction, "section")}
    lyrics = {r["id"]: r["value"] for r in by_name(prediction, "segment_lyrics")}
    assert lyrics and set(lyrics) <= {"seg1", "seg2"}  # the voice is in the first 20 s only
    for rid, value in lyrics.items():
        assert (value["start"], value["end"]) == (regions[rid]["start"], regions[rid]["end"])
        assert value["text"][0].strip()
    [song] = by_name(prediction, "lyrics")
    assert song["value"]["text"][0].startswith(f"[{regions[min(lyrics)]['labels'][0]}]\n")
    [language] = by_name(prediction, "vocal_language")
    assert language["value"]["choices"][0] not in ("instrumental", "")
    assert model.cache.stats.writes == 1


def test_instrumental_audio_through_whisper_writes_nothing(tiny_whisper, documents, tmp_path, monkeypatch):
    sent = []
    original = whisper_engine.WhisperEngine.transcribe_chunks
    monkeypatch.setattr(whisper_engine.WhisperEngine, "transcribe_chunks",
                        lambda self, chunks: sent.extend(chunks) or original(self, chunks))
    model = SongModel(whisper_settings(documents, tmp_path, tiny_whisper))
    body = predict_body([ls_task(2, local_ref("instrumental.wav"))])
    [prediction] = model.predict(body["tasks"], body["label_config"])
    assert sent == []  # no chunk had a voice
    assert by_name(prediction, "segment_lyrics") == [] and by_name(prediction, "lyrics") == []
    assert by_name(prediction, "vocal_language")[0]["value"]["choices"] == ["instrumental"]


def test_a_lyrics_model_that_cannot_load_costs_only_the_lyrics(documents, tmp_path):
    model = SongModel(whisper_settings(documents, tmp_path / "md", tmp_path / "missing-model"))
    body = predict_body([ls_task(3, local_ref("voiced.wav"))])
    [prediction] = model.predict(body["tasks"], body["label_config"])
    assert by_name(prediction, "section") and by_name(prediction, "segment_lyrics") == []
    assert "cannot load LYRICS_MODEL_ID" in model.lyrics.load_error
    assert model.cache.stats.writes == 0
