"""The openai engine against a local OpenAI-compatible server (http.server in a thread on 127.0.0.1).

vLLM cannot run here, so the server stands in for it: it checks the exact request body and answers in the
chat-completions response shape, or with the failures the engine must survive.
"""

from __future__ import annotations

import base64
import io
import json
import wave

import numpy as np
import pytest

from ml_backend.describe.engines import WindowRequest, create_engine
from ml_backend.describe.engines.openai_engine import OpenAIEngine, backoff_seconds, wav_base64
from ml_backend.describe.prompt import DEFAULT_ANALYSIS_PROMPT, window_prompt
from ml_backend.settings import Settings
from tests.openai_standin import OpenAIStandIn as FakeServer, completion

SR = 16000


def engine_for(server: FakeServer, **kw) -> OpenAIEngine:
    options = dict(model_id="Qwen/Qwen2-Audio-7B-Instruct", api_key="sk-test", max_concurrency=2,
                   request_timeout=5.0, max_retries=3, max_tokens=256, temperature=0.0, top_p=1.0,
                   backoff_base=0.01)
    options.update(kw)
    return OpenAIEngine(server.url, **options)


def window(start: float, seconds: float, seed: int = 0) -> WindowRequest:
    audio = (np.random.default_rng(seed).standard_normal(int(seconds * SR)) * 0.1).astype(np.float32)
    return WindowRequest(audio=audio, start=start, end=start + seconds, prompt=DEFAULT_ANALYSIS_PROMPT)


def decode_wav(data: str) -> tuple[int, int, int, np.ndarray]:
    """(channels, sample rate Hz, sample width bytes, samples as float) of a base64 WAV."""
    with wave.open(io.BytesIO(base64.b64decode(data, validate=True))) as w:
        frames = w.readframes(w.getnframes())
        return w.getnchannels(), w.getframerate(), w.getsampwidth(), np.frombuffer(frames, "<i2") / 32767.0


ANSWER = json.dumps({"section_label": "Verse", "summary": "A calm verse with piano and voice.",
                     "genre": ["ballad"], "notable_moments": [{"time_sec": 3, "description": "voice enters"}]})


def test_request_body_is_exact_and_the_answer_is_parsed():
    with FakeServer(lambda body, n: (200, completion(ANSWER), 0)) as server:
        req = window(start=42.0, seconds=7.25)
        (desc,) = engine_for(server, temperature=0.3, top_p=0.9, seed=7).describe_windows([req])

    assert server.paths == ["/v1/chat/completions"]
    assert server.headers[0]["Authorization"] == "Bearer sk-test"
    body = server.bodies[0]
    assert set(body) == {"model", "messages", "temperature", "top_p", "max_tokens", "seed"}
    assert (body["model"], body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (
        "Qwen/Qwen2-Audio-7B-Instruct", 0.3, 0.9, 256, 7)
    (message,) = body["messages"]
    assert message["role"] == "user"
    audio_part, text_part = message["content"]
    assert audio_part["type"] == "input_audio" and audio_part["input_audio"]["format"] == "wav"
    channels, rate, width, samples = decode_wav(audio_part["input_audio"]["data"])
    assert (channels, rate, width, len(samples)) == (1, SR, 2, 116000)  # 7.25 s at 16 kHz
    np.testing.assert_allclose(samples, req.audio, atol=1e-4)
    assert text_part == {"type": "text", "text": window_prompt(DEFAULT_ANALYSIS_PROMPT, 7.25)}
    assert "7.2-second excerpt" in text_part["text"]

    assert desc.ok and desc.section_label == "Verse" and desc.genres == ["ballad"]
    assert desc.notable_moments == [(45.0, "voice enters")]  # window-relative 3 s -> song time 45 s
    assert desc.raw_text == ANSWER


def test_retries_500_and_429_then_succeeds():
    script = [(500, {"error": "boom"}, 0), (429, {"error": "slow down"}, 0), (200, completion(ANSWER), 0)]
    with FakeServer(lambda body, n: script[n]) as server:
        (desc,) = engine_for(server).describe_windows([window(0.0, 2.0)])
    assert len(server.bodies) == 3 and desc.ok and desc.summary.startswith("A calm verse")
    assert server.bodies[0] == server.bodies[2]  # the same request is sent again


def test_no_retry_on_400():
    with FakeServer(lambda body, n: (400, {"error": "audio not supported"}, 0)) as server:
        (desc,) = engine_for(server).describe_windows([window(0.0, 2.0)])
    assert len(server.bodies) == 1
    assert not desc.ok and "HTTP 400" in desc.error and "audio not supported" in desc.error


def test_timeout_is_retried():
    with FakeServer(lambda body, n: (200, completion(ANSWER), 1.0 if n == 0 else 0)) as server:
        (desc,) = engine_for(server, request_timeout=0.3).describe_windows([window(0.0, 2.0)])
    assert len(server.bodies) == 2 and desc.ok


def test_gives_up_after_max_retries_without_raising():
    with FakeServer(lambda body, n: (503, {"error": "loading"}, 0)) as server:
        engine = engine_for(server, max_retries=2)
        descs = engine.describe_windows([window(0.0, 2.0)])
        assert engine.summarize("Write a caption.") is None
    assert len(server.bodies) == 2 * 3  # (1 try + 2 retries) for the window and for the caption
    assert not descs[0].ok and "HTTP 503" in descs[0].error and "gave up after 2 retries" in descs[0].error


def test_connection_refused_degrades_the_window():
    engine = OpenAIEngine("http://127.0.0.1:9/v1", "m", max_retries=1, backoff_base=0.01, request_timeout=1.0)
    (desc,) = engine.describe_windows([window(0.0, 1.0)])
    assert not desc.ok and "ConnectionError" in desc.error


@pytest.mark.parametrize("payload", ["not json", {"choices": []}, {"choices": [{"message": {"content": None}}]}])
def test_malformed_responses_degrade_the_window(payload):
    with FakeServer(lambda body, n: (200, payload, 0)) as server:
        (desc,) = engine_for(server).describe_windows([window(0.0, 1.0)])
    assert len(server.bodies) == 1 and not desc.ok and server.url in desc.error


def test_concurrency_is_bounded_and_order_kept():
    def reply(body, n):
        seconds = len(decode_wav(body["messages"][0]["content"][0]["input_audio"]["data"])[3]) / SR
        return 200, completion(json.dumps({"summary": f"window of {seconds:g} seconds here"})), 0.15

    lengths = [1, 2, 3, 4, 5, 6, 7, 8, 9]
    with FakeServer(reply) as server:
        descs = engine_for(server, max_concurrency=3).describe_windows(
            [window(10.0 * i, s, seed=i) for i, s in enumerate(lengths)])
    assert len(server.bodies) == len(lengths)
    assert 2 <= server.max_in_flight <= 3
    assert [d.summary for d in descs] == [f"window of {s} seconds here" for s in lengths]


def test_summarize_sends_a_text_only_request():
    caption = "A bright pop song with handclaps and a big chorus."
    with FakeServer(lambda body, n: (200, completion(caption), 0)) as server:
        assert engine_for(server, max_tokens=300).summarize("Summarise these notes.") == caption
    assert server.bodies[0]["messages"] == [{"role": "user", "content": "Summarise these notes."}]
    assert server.bodies[0]["max_tokens"] == 300 and server.bodies[0]["temperature"] == 0.0


def test_create_engine_reads_the_settings():
    settings = Settings(engine="openai", openai_base_url="http://gpu:8000/v1", openai_api_key="k",
                        model_id="Qwen/Qwen2.5-Omni-7B", max_concurrency=8, request_timeout=60.0, max_retries=5,
                        max_new_tokens=200, temperature=0.2, top_p=0.8)
    engine = create_engine(settings)
    assert isinstance(engine, OpenAIEngine) and engine.name == "openai"
    assert (engine.base_url, engine.api_key, engine.model_id, engine.max_concurrency, engine.request_timeout,
            engine.max_retries) == ("http://gpu:8000/v1", "k", "Qwen/Qwen2.5-Omni-7B", 8, 60.0, 5)
    assert engine.parameters() == {"temperature": 0.2, "top_p": 0.8, "max_tokens": 200, "seed": 0}
    assert engine.describe_windows([]) == []


def test_wav_and_backoff_helpers():
    channels, rate, width, samples = decode_wav(wav_base64(np.array([0.0, 2.0, -2.0, np.nan], np.float32)))
    assert (channels, rate, width) == (1, SR, 2)
    np.testing.assert_allclose(samples, [0.0, 1.0, -1.0, 0.0])  # clipped, NaN zeroed
    assert [backoff_seconds(a, 0.5) for a in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff_seconds(10, 1.0) == 30.0
    assert backoff_seconds(0, 1.0, "7") == 7.0 and backoff_seconds(0, 1.0, "Wed, 21 Oct 2026 07:28:00 GMT") == 1.0
