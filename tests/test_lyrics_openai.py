"""LYRICS_ENGINE=openai against a scripted OpenAI-compatible transcription server (tests/openai_standin.py) that
answers in the real ``verbose_json`` shape: the request, the answer's subsets, messy and empty answers, timeouts,
and whole songs through SongModel (words at region edges, pauses, language, hallucinations, instrumental audio)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from ml_backend.lyrics.engines import create_lyrics_engine
from ml_backend.lyrics.engines.base import ChunkAudio
from ml_backend.lyrics.engines.openai_engine import TranscriptionEngine
from ml_backend.model import SongModel
from ml_backend.settings import Settings
from tests import voices
from tests.openai_standin import OpenAIStandIn
from tests.test_app import local_ref, ls_task, predict_body

pytestmark = pytest.mark.skipif(not voices.has_espeak(), reason="needs espeak-ng (apt-get install espeak-ng)")


def verbose(words=(), segments=(), language="english", text=None) -> dict:
    """A verbose_json answer as OpenAI and faster-whisper servers send it."""
    words = [{"word": w, "start": s, "end": e} for w, s, e in words]
    return {"task": "transcribe", "language": language, "duration": 30.0,
            "text": text if text is not None else " ".join(w["word"] for w in words),
            "words": words, "segments": list(segments)}


def segment(start, end, text, no_speech=0.01, logprob=-0.2, ratio=1.3, sid=0) -> dict:
    return {"id": sid, "seek": 0, "start": start, "end": end, "text": text, "tokens": [1, 2],
            "temperature": 0.0, "avg_logprob": logprob, "compression_ratio": ratio, "no_speech_prob": no_speech}


def engine_for(server, **kw) -> TranscriptionEngine:
    return TranscriptionEngine(server.url, "whisper-large-v3-turbo", api_key="sk-test", backoff_base=0.01, **kw)


def chunk(seconds: float) -> ChunkAudio:
    return ChunkAudio(0, np.zeros(int(seconds * 16000), dtype=np.float32))


# --- the engine alone -------------------------------------------------------------------------------------


def test_request_is_a_multipart_verbose_json_transcription():
    with OpenAIStandIn(lambda body, n: (200, verbose([(" Hello", 0.5, 0.9), (" world.", 1.0, 1.4)],
                                                     [segment(0.5, 1.4, "Hello world.")]), 0)) as server:
        [result] = engine_for(server).transcribe_chunks([chunk(12.5)])
    assert server.paths == ["/v1/audio/transcriptions"]
    body = server.bodies[0]
    assert body["model"] == "whisper-large-v3-turbo" and body["response_format"] == "verbose_json"
    assert body["timestamp_granularities[]"] in ("word", "segment") and body["temperature"] == "0"
    audio, rate = sf.read(io.BytesIO(body["file"]))
    assert rate == 16000 and len(audio) == 12.5 * 16000
    assert server.headers[0]["Authorization"] == "Bearer sk-test"
    assert result.ok and result.language == "english"
    assert [(w.text, w.start, w.end) for w in result.words] == [("Hello", 0.5, 0.9), ("world.", 1.0, 1.4)]
    assert result.segments[0].no_speech_prob == 0.01 and result.segments[0].compression_ratio == 1.3


def test_segments_only_and_null_filled_answers():
    answer = {"text": "hold me close", "language": "en", "segments": [
        {"start": 2.0, "end": 4.0, "text": " hold me close", "no_speech_prob": None, "avg_logprob": None}]}
    with OpenAIStandIn(lambda body, n: (200, answer, 0)) as server:
        [result] = engine_for(server).transcribe_chunks([chunk(10)])
    assert [w.text for w in result.words] == ["hold", "me", "close"]
    assert result.words[0].start == 2.0 and result.words[-1].end == pytest.approx(4.0)
    assert result.segments[0].no_speech_prob is None and result.language == "en"


@pytest.mark.parametrize("payload, ok", [
    ({"text": "", "language": "english", "words": [], "segments": []}, True),  # nothing sung
    ({"text": ""}, True),  # a bare json answer
    ({"words": [{"word": "x", "start": "soon"}, "junk", {"word": "y" * 500, "start": 1, "end": 2}]}, True),
    ("<html>Bad gateway</html>", False),
    ('{"text": "cut off', False),
    ([1, 2, 3], False),
])
def test_empty_and_messy_answers(payload, ok):
    with OpenAIStandIn(lambda body, n: (200, payload, 0)) as server:
        [result] = engine_for(server).transcribe_chunks([chunk(5)])
    assert result.ok is ok and result.words == []
    if not ok:
        assert "unexpected transcription answer" in result.error


def test_a_number_past_floats_range_is_no_time():
    """JSON allows integers of any length; one past float's range is dropped like NaN, not an OverflowError."""
    answer = verbose([("ok", 1.0, 2.0), ("huge", 10 ** 400, 3.0)])
    with OpenAIStandIn(lambda body, n: (200, answer, 0)) as server:
        [result] = engine_for(server).transcribe_chunks([chunk(10)])
    assert result.ok and [w.text for w in result.words] == ["ok"]


def test_times_are_clamped_into_the_chunk():
    answer = verbose([("early", -3.0, 0.2), ("late", 9.5, 40.0), ("nan", float("nan"), 1.0)])
    with OpenAIStandIn(lambda body, n: (200, answer, 0)) as server:
        [result] = engine_for(server).transcribe_chunks([chunk(10)])
    assert [(w.text, w.start, w.end) for w in result.words] == [("early", 0.0, 0.2), ("late", 9.5, 10.0)]


def test_a_server_that_times_out_is_retried_then_the_chunk_fails():
    with OpenAIStandIn(lambda body, n: (200, verbose(), 1.0)) as server:
        [result] = engine_for(server, request_timeout=0.2, max_retries=2).transcribe_chunks([chunk(3)])
    assert not result.ok and "gave up after 2 retries" in result.error
    assert len(server.bodies) == 3


def test_4xx_is_not_retried_and_says_what_to_check():
    with OpenAIStandIn(lambda body, n: (400, {"error": {"message": "verbose_json not supported"}}, 0)) as server:
        [result] = engine_for(server, max_retries=3).transcribe_chunks([chunk(3)])
    assert len(server.bodies) == 1 and "verbose_json" in result.error and "LYRICS_MODEL_ID" in result.error


def test_concurrency_is_bounded_and_order_kept():
    def reply(body, n):
        seconds = len(sf.read(io.BytesIO(body["file"]))[0]) / 16000
        return 200, verbose([(f"w{seconds:g}", 0.0, 0.5)]), 0.1

    with OpenAIStandIn(reply) as server:
        results = engine_for(server, max_concurrency=2).transcribe_chunks([chunk(s) for s in (1, 2, 3, 4, 5)])
    assert [r.words[0].text for r in results] == ["w1", "w2", "w3", "w4", "w5"]
    assert server.max_in_flight == 2


def test_settings_choose_the_engine():
    settings = Settings(lyrics_engine="openai", lyrics_base_url="http://transcribe:8000/v1/", lyrics_api_key="k",
                        lyrics_model_id="large-v3", max_concurrency=3, request_timeout=7.0, max_retries=1)
    engine = create_lyrics_engine(settings)
    assert (engine.base_url, engine.model_id, engine.api_key) == ("http://transcribe:8000/v1", "large-v3", "k")
    assert (engine.max_concurrency, engine.request_timeout, engine.max_retries) == (3, 7.0, 1)
    assert create_lyrics_engine(Settings()) is None


# --- whole songs through SongModel --------------------------------------------------------------------------

VERSE, CHORUS = voices.VERSE, voices.CHORUS


@pytest.fixture(scope="module")
def documents(tmp_path_factory):
    return voices.make_documents(tmp_path_factory.mktemp("documents"))


def lyrics_settings(root, model_dir, url, **kw) -> Settings:
    """Fixed 10 s regions (so the test knows them), the DSP description engine, the transcription stand-in one
    request at a time (so its n-th answer is the n-th chunk)."""
    return Settings(engine="dsp", model_dir=model_dir, local_files_document_root=str(root),
                    segmentation="fixed", segment_seconds=10.0, overlap_seconds=0.0,
                    lyrics_engine="openai", lyrics_base_url=url, lyrics_model_id="whisper-1", max_concurrency=1,
                    max_retries=kw.pop("max_retries", 0), **kw)


def by_name(prediction: dict, name: str) -> list[dict]:
    return [r for r in prediction["result"] if r["from_name"] == name]


def stitched_song_reply(body, n):
    """Chunk 0 is song [0, 30), chunk 1 is song [10, 40): both hear the chorus (chunk 1 0.2 s later); chunk 0
    invents a stock phrase and chunk 1 a loop where nobody sings."""
    # "I" straddles the region edge at 10 s; its midpoint (10.075 s) is in the second region
    verse = [("hello", 1.0, 1.3), ("my", 1.4, 1.6), ("darling,", 1.7, 2.3), ("I", 9.85, 10.3)]
    # the chorus with a 1.25 s pause after "tonight,"
    chorus = [(w, 11.0 + 0.35 * i, 11.3 + 0.35 * i) for i, w in enumerate(CHORUS.split())]
    chorus = [(w, s + (1.2 if i >= 5 else 0.0), e + (1.2 if i >= 5 else 0.0)) for i, (w, s, e) in enumerate(chorus)]
    if n == 0:
        return 200, verbose(verse + chorus + [("Thanks", 24.0, 24.3), ("for", 24.3, 24.5), ("watching!", 24.5, 25)],
                            [segment(0.0, 16.0, "..."), segment(24.0, 25.0, "Thanks for watching!", sid=1)]), 0
    shifted = [(w, s - 10.0 + 0.2, e - 10.0 + 0.2) for w, s, e in chorus]
    loop = [("la", 14.0 + 0.2 * i, 14.15 + 0.2 * i) for i in range(12)]
    return 200, verbose(shifted + loop, [segment(0.0, 8.0, "..."), segment(14.0, 17.0, "la " * 12, ratio=3.1)]), 0


def test_a_song_gets_lyrics_per_region_and_song_lyrics(documents, tmp_path):
    with OpenAIStandIn(stitched_song_reply) as server:
        model = SongModel(lyrics_settings(documents, tmp_path, server.url))
        body = predict_body([ls_task(1, local_ref("voiced.wav"))])
        [prediction] = model.predict(body["tasks"], body["label_config"])
    assert len(server.bodies) == 2  # chunks [0, 30) and [10, 40); the voice is in both
    regions = {r["id"]: r["value"] for r in by_name(prediction, "section")}
    lyrics = {r["id"]: r["value"] for r in by_name(prediction, "segment_lyrics")}
    assert set(lyrics) == {"seg1", "seg2"} <= set(regions)  # regions without words get no lyrics result
    assert lyrics["seg1"]["start"] == regions["seg1"]["start"] == 0.0
    assert lyrics["seg1"]["text"] == ["hello my darling,"]
    # "I" goes where its midpoint is (0.7 s before the chorus: same line); the 1.25 s pause before "singing"
    # breaks the line; the chorus both chunks heard is there once
    assert lyrics["seg2"]["text"] == ["I walking in the rain tonight,\nsinging all the way back home"]
    [song] = by_name(prediction, "lyrics")
    label1, label2 = regions["seg1"]["labels"][0], regions["seg2"]["labels"][0]
    assert song["value"]["text"] == [f"[{label1}]\nhello my darling,\n\n[{label2}]\nI walking in the rain "
                                     "tonight,\nsinging all the way back home"]
    assert by_name(prediction, "vocal_language")[0]["value"]["choices"] == ["en"]
    notes = " ".join(r["value"]["text"][0] for r in by_name(prediction, "segment_notes"))
    assert "Thanks" not in notes and "la la" not in song["value"]["text"][0]
    assert model.cache.stats.writes == 1


def test_instrumental_audio_gets_no_words_and_no_requests(documents, tmp_path):
    def hallucinate(body, n):
        return 200, verbose([("Thanks", 1.0, 1.3), ("for", 1.3, 1.5), ("watching!", 1.5, 2.0)],
                            [segment(0.0, 2.0, "Thanks for watching!", no_speech=0.2, logprob=-0.3)]), 0

    with OpenAIStandIn(hallucinate) as server:
        model = SongModel(lyrics_settings(documents, tmp_path, server.url, lyrics_min_voice_seconds=1.0))
        body = predict_body([ls_task(2, local_ref("instrumental.wav"))])
        [prediction] = model.predict(body["tasks"], body["label_config"])
    assert server.bodies == []  # no voice anywhere: nothing was sent to the transcriber
    assert by_name(prediction, "segment_lyrics") == [] and by_name(prediction, "lyrics") == []
    assert by_name(prediction, "vocal_language")[0]["value"]["choices"] == ["instrumental"]
    assert by_name(prediction, "section")  # the rest of the prediction is there


def test_instrumental_audio_with_the_voice_check_off_is_still_guarded(documents, tmp_path):
    """Without the voice check every chunk goes out; the decoder-figure guards alone keep the invented text out."""
    def hallucinate(body, n):
        return 200, verbose([("Thank", 3.0, 3.3), ("you.", 3.3, 3.6)] + [("oh", 5 + 0.3 * i, 5.2 + 0.3 * i)
                                                                        for i in range(10)],
                            [segment(0.0, 4.0, "Thank you.", no_speech=0.93, logprob=-1.4),
                             segment(4.0, 9.0, "oh " * 10, no_speech=0.1, ratio=2.9, sid=1)]), 0

    with OpenAIStandIn(hallucinate) as server:
        model = SongModel(lyrics_settings(documents, tmp_path, server.url, lyrics_min_voice_seconds=0.0))
        body = predict_body([ls_task(3, local_ref("instrumental.wav"))])
        [prediction] = model.predict(body["tasks"], body["label_config"])
    assert len(server.bodies) == 2
    assert by_name(prediction, "segment_lyrics") == [] and by_name(prediction, "lyrics") == []
    assert by_name(prediction, "vocal_language")[0]["value"]["choices"] == ["instrumental"]


def test_a_dead_transcription_server_costs_the_lyrics_only_and_is_not_cached(documents, tmp_path):
    with OpenAIStandIn(lambda body, n: (200, verbose(), 1.0)) as server:
        model = SongModel(lyrics_settings(documents, tmp_path, server.url, request_timeout=0.2))
        body = predict_body([ls_task(4, local_ref("voiced.wav"))])
        [prediction] = model.predict(body["tasks"], body["label_config"])
    assert by_name(prediction, "section") and by_name(prediction, "segment_lyrics") == []
    assert by_name(prediction, "vocal_language") == []  # the DSP engine says none, the transcriber could not
    assert model.cache.stats.writes == 0  # predicted again next time


def test_lyrics_settings_change_the_model_version(tmp_path):
    off = SongModel(Settings(engine="dsp", model_dir=tmp_path)).model_version()
    on = SongModel(Settings(engine="dsp", model_dir=tmp_path, lyrics_engine="whisper")).model_version()
    paused = SongModel(Settings(engine="dsp", model_dir=tmp_path, lyrics_engine="whisper",
                                lyrics_pause_seconds=1.5)).model_version()
    assert len({off, on, paused}) == 3
    assert off == SongModel(Settings(engine="dsp", model_dir=tmp_path, lyrics_pause_seconds=1.5)).model_version()
