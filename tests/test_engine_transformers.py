"""The transformers engine with a real (tiny, random) Qwen2-Audio loaded by MODEL_ID from a local folder.

The model writes random bytes, so these tests check the machinery: batching with left padding, order, the
one-at-a-time retry after out-of-memory, ok flags, and that garbage text never sinks a song.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from ml_backend.analysis.music import MusicAnalysis
from ml_backend.describe.caption import fallback_caption, song_caption
from ml_backend.describe.engines import EngineError, WindowDescription, WindowRequest, create_engine
from ml_backend.describe.engines.dsp_engine import DspEngine
from ml_backend.describe.engines.transformers_engine import TransformersEngine
from ml_backend.describe.prompt import DEFAULT_ANALYSIS_PROMPT
from ml_backend.settings import Settings

SR = 16000
LENGTHS = [30.0, 7.5, 12.0, 1.2, 4.0]  # seconds; one full window, shorter ones
# The tiny tokenizer spends one token per byte: a short prompt keeps these CPU tests quick.
SHORT_PROMPT = "Describe this {window_seconds}-second excerpt as one JSON object."


def windows(lengths=LENGTHS, prompt=SHORT_PROMPT) -> list[WindowRequest]:
    rng = np.random.default_rng(0)
    out, start = [], 0.0
    for seconds in lengths:
        audio = (rng.standard_normal(int(seconds * SR)) * 0.1).astype(np.float32)
        out.append(WindowRequest(audio=audio, start=start, end=start + seconds, prompt=prompt))
        start += seconds
    return out


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    """Batches of 2, a fixed output length of 8 tokens, greedy."""
    return TransformersEngine(str(tiny_model_dir), device="cpu", batch_size=2, max_new_tokens=8, min_new_tokens=8)


@pytest.fixture(scope="module")
def one_at_a_time(engine):
    """Reference texts: every window alone (no padding at all)."""
    single = TransformersEngine(engine.model_id, device="cpu", batch_size=1, max_new_tokens=8, min_new_tokens=8)
    return [d.raw_text for d in single.describe_windows(windows())]


def test_loaded_by_model_id_through_create_engine_once(tiny_model_dir, engine):
    settings = Settings(model_id=str(tiny_model_dir), device="cpu", batch_size=2, max_new_tokens=8)
    created = create_engine(settings)
    assert isinstance(created, TransformersEngine) and created.name == "transformers"
    assert created.loaded is engine.loaded  # one model per process and device
    assert created.loaded.family == "qwen2_audio"
    assert type(created.loaded.model).__name__ == "Qwen2AudioForConditionalGeneration"
    assert created.loaded.processor.tokenizer.padding_side == "left"
    assert created.parameters() == {"max_new_tokens": 8, "do_sample": False, "dtype": "float32"}


def test_batched_windows_survive_garbage_text(engine):
    reqs = windows(prompt=DEFAULT_ANALYSIS_PROMPT)
    descs = engine.describe_windows(reqs)
    assert len(descs) == len(reqs)
    assert all(isinstance(d, WindowDescription) for d in descs)
    for desc in descs:
        assert desc.raw_text  # eight new tokens, decoded
        assert "excerpt" not in desc.raw_text  # only the new tokens, not the prompt
        # Random bytes are not a description: either readable prose made it through, or the window is marked.
        assert desc.ok or (desc.error and desc.summary == "" and desc.section_label == "")
        assert all(req.start <= t <= req.end for req, d in zip(reqs, descs) for t, _ in d.notable_moments)
    assert len({d.raw_text for d in descs}) > 1  # texts belong to their windows (order: the next test)


def test_batched_equals_one_at_a_time_for_greedy_decoding(engine, one_at_a_time):
    """Left padding correctness, and order: a window's text must not depend on the windows it is batched with."""
    assert len(set(one_at_a_time)) > 1  # the tiny model's text depends on the audio, so this can fail
    # Sorted by length, the pairs are (1.2 s, 4 s) and (7.5 s, 12 s): each pair is padded.
    assert [d.raw_text for d in engine.describe_windows(windows())] == one_at_a_time


def test_prefill_apart_and_padded_prefill_give_the_texts_of_one_at_a_time(tiny_model_dir, one_at_a_time):
    """A batch is prefilled window by window and decoded together (joined caches, left-padded): same texts as
    a left-padded prefill and as one window at a time, also for packed windows whose prompts differ in length."""
    batched = TransformersEngine(str(tiny_model_dir), device="cpu", batch_size=5, max_new_tokens=8, min_new_tokens=8)
    assert batched.prefill_apart
    assert [d.raw_text for d in batched.describe_windows(windows())] == one_at_a_time
    packed = windows()
    packed[1].parts = ((packed[1].start, packed[1].start + 3.0), (packed[1].start + 3.0, packed[1].end))
    packed[1].prompt = SHORT_PROMPT + " Parts: {part_list}"
    single = TransformersEngine(str(tiny_model_dir), device="cpu", batch_size=1, max_new_tokens=8, min_new_tokens=8)
    reference = [d.raw_text for d in single.describe_windows(packed)]
    assert reference[1] != one_at_a_time[1]  # the part list reached the model
    assert [d.raw_text for d in batched.describe_windows(packed)] == reference
    batched.prefill_apart = False
    assert [d.raw_text for d in batched.describe_windows(packed)] == reference


def test_window_length_goes_into_the_prompt(engine):
    (req,) = windows([7.5], prompt=DEFAULT_ANALYSIS_PROMPT)
    conversation = engine._conversation(req)
    text = engine.loaded.processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    assert "7.5-second excerpt" in text and "<|AUDIO|>" in text and "{window_seconds}" not in text


def test_out_of_memory_batch_is_retried_one_window_at_a_time(engine, one_at_a_time, monkeypatch):
    import torch

    model = engine.loaded.model
    real_generate = model.generate
    calls = []

    def generate(**inputs):
        calls.append(inputs["input_ids"].shape[0])
        if inputs["input_ids"].shape[0] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_generate(**inputs)

    monkeypatch.setattr(model, "generate", generate)
    descs = engine.describe_windows(windows())
    assert [d.raw_text for d in descs] == one_at_a_time
    assert calls == [2, 1, 1, 2, 1, 1, 1]  # two failed pairs retried alone, the last window alone


def test_a_window_that_still_fails_degrades_alone(engine, one_at_a_time, monkeypatch):
    import torch

    model = engine.loaded.model
    real_generate = model.generate

    def generate(**inputs):
        lengths = inputs["feature_attention_mask"].sum(-1).tolist()
        if any(abs(n - 750) <= 1 for n in lengths):  # the 7.5 s window: 750 mel frames of 10 ms
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real_generate(**inputs)

    monkeypatch.setattr(model, "generate", generate)
    descs = engine.describe_windows(windows())
    assert not descs[1].ok and "out of memory" in descs[1].error and "BATCH_SIZE" in descs[1].error
    assert [d.raw_text for i, d in enumerate(descs) if i != 1] == [t for i, t in enumerate(one_at_a_time) if i != 1]


def test_empty_and_broken_audio_windows(engine):
    reqs = windows([3.0, 3.0])
    reqs.insert(1, WindowRequest(audio=np.zeros(0, np.float32), start=3.0, end=3.0, prompt="x"))
    reqs[2].audio[:100] = np.nan  # non-finite samples are zeroed, not fatal
    descs = engine.describe_windows(reqs)
    assert len(descs) == 3
    assert not descs[1].ok and "no audio samples" in descs[1].error
    assert descs[0].raw_text and descs[2].raw_text


def test_sampling_is_repeatable_with_the_seed(tiny_model_dir):
    sampler = TransformersEngine(str(tiny_model_dir), device="cpu", batch_size=2, max_new_tokens=6,
                                 min_new_tokens=6, temperature=1.0, top_p=0.9)
    first = [d.raw_text for d in sampler.describe_windows(windows([2.0, 3.0]))]
    assert first == [d.raw_text for d in sampler.describe_windows(windows([2.0, 3.0]))]
    assert sampler.parameters()["do_sample"] is True and sampler.parameters()["top_p"] == 0.9


def test_garbage_caption_falls_back(engine):
    assert isinstance(engine.summarize("Write one caption for the song."), str)
    notes = [WindowDescription(summary="A slow piano ballad with a soft female voice.", genres=["ballad"])]
    analysis = MusicAnalysis(duration=30.0, bpm=72.0, beats=[], keyscale="D major", key_confidence=0.9,
                             timesignature="4", timesignature_confident=True)
    assert song_caption(engine, notes, analysis) == fallback_caption(notes, analysis)


def test_dsp_engine_describes_nothing():
    engine = create_engine(Settings(engine="dsp"))
    assert isinstance(engine, DspEngine) and engine.parameters() == {} and engine.summarize("x") is None
    descs = engine.describe_windows(windows([1.0, 2.0]))
    assert [(d.ok, d.summary, d.raw_text) for d in descs] == [(True, "", ""), (True, "", "")]


def test_unloadable_models_give_a_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EngineError, match=r"cannot load MODEL_ID=.*empty.*local folder"):
        TransformersEngine(str(empty), device="cpu")
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(EngineError, match=r"'bert' model.*ENGINE=openai"):
        TransformersEngine(str(other), device="cpu")


HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None


@pytest.fixture(scope="module")
def tiny_omni_dir(tmp_path_factory):
    """A tiny random Qwen2.5-Omni in the hub's full-checkpoint layout (model_type qwen2_5_omni)."""
    from tests.tiny_model import build_tiny_qwen2_5_omni

    return build_tiny_qwen2_5_omni(tmp_path_factory.mktemp("tiny-qwen2.5-omni"))


def test_omni_thinker_batches_through_the_engine(tiny_omni_dir):
    """The Omni thinker (multimodal rotary positions) with left-padded batches through the engine's generate path.
    Its own processor needs torchvision, so a Qwen2AudioProcessor over the Omni tokenizer and template stands in:
    for text and audio it yields the same inputs (audio tokens per window, 128-bin features, feature mask)."""
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration, Qwen2AudioProcessor, WhisperFeatureExtractor

    from ml_backend.describe.engines.transformers_engine import register_model
    from tests.tiny_model import AUDIO_SPECIALS, OMNI_CHAT_TEMPLATE, VISION_SPECIALS, build_byte_tokenizer

    processor = Qwen2AudioProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=128),
                                    tokenizer=build_byte_tokenizer({**AUDIO_SPECIALS, **VISION_SPECIALS}),
                                    chat_template=OMNI_CHAT_TEMPLATE)
    model = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(tiny_omni_dir).eval()  # hub layout
    register_model("tiny-omni", "cpu", model, processor, family="qwen2_5_omni")
    batched = TransformersEngine("tiny-omni", device="cpu", batch_size=2, max_new_tokens=8, min_new_tokens=8)
    single = TransformersEngine("tiny-omni", device="cpu", batch_size=1, max_new_tokens=8, min_new_tokens=8)
    reqs = windows([7.5, 1.2, 4.0])  # batches: (1.2 s, 4 s) padded, then 7.5 s
    reference = [d.raw_text for d in single.describe_windows(reqs)]
    assert len(set(reference)) > 1
    assert [d.raw_text for d in batched.describe_windows(reqs)] == reference
    assert isinstance(batched.summarize("Write one caption."), str)


@pytest.mark.skipif(HAS_TORCHVISION, reason="torchvision is installed: the Omni processor loads")
def test_omni_without_torchvision_says_what_to_install(tiny_omni_dir):
    with pytest.raises(EngineError, match=r"is Qwen2\.5-Omni, whose processor needs torchvision"):
        TransformersEngine(str(tiny_omni_dir), device="cpu")


@pytest.mark.skipif(not HAS_TORCHVISION, reason="Qwen2.5-Omni's processor needs torchvision (not installed)")
def test_omni_thinker_batches_like_qwen2_audio(tiny_omni_dir):
    omni = TransformersEngine(str(tiny_omni_dir), device="cpu", batch_size=2, max_new_tokens=8, min_new_tokens=8)
    assert omni.loaded.family == "qwen2_5_omni"
    assert type(omni.loaded.model).__name__ == "Qwen2_5OmniThinkerForConditionalGeneration"
    single = TransformersEngine(str(tiny_omni_dir), device="cpu", batch_size=1, max_new_tokens=8, min_new_tokens=8)
    reference = [d.raw_text for d in single.describe_windows(windows())]
    assert len(set(reference)) > 1
    assert [d.raw_text for d in omni.describe_windows(windows())] == reference
    assert isinstance(omni.summarize("Write one caption."), str)
