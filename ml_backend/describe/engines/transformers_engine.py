"""ENGINE=transformers: a Qwen audio-language model run in this process with Hugging Face transformers.

Qwen2-Audio (``Qwen2AudioForConditionalGeneration``) or the text-out "thinker" of Qwen2.5-Omni
(``Qwen2_5OmniThinkerForConditionalGeneration``), chosen from the checkpoint's ``model_type``. The model is loaded
once per process; all windows handed to ``describe_windows`` (every window of every task in a request) go through
``generate`` in batches of BATCH_SIZE with left padding. torch and transformers are imported lazily so that the
CLI stays fast.
"""

from __future__ import annotations

import inspect
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ml_backend.describe.prompt import describe_answer, request_prompt

from ml_backend.describe.engines.base import EngineError
from ml_backend.describe.types import WindowDescription, WindowRequest

log = logging.getLogger(__name__)

MODEL_SR = 16000  # Hz: what the Whisper-style feature extractors of both model families accept
MAX_WINDOW_SAMPLES = 30 * MODEL_SR  # Qwen2-Audio's encoder sees 30 s; the processor would silently cut the rest

# model_type in config.json -> family. A full Qwen2.5-Omni checkpoint ("qwen2_5_omni") loads its thinker only.
FAMILIES = {
    "qwen2_audio": "qwen2_audio",
    "qwen2_5_omni": "qwen2_5_omni",
    "qwen2_5_omni_thinker": "qwen2_5_omni",
}


@dataclass
class LoadedModel:
    """A model, its processor and a lock so that one generate() runs at a time on the device."""

    model: object
    processor: object
    family: str
    device: str
    dtype: object
    lock: threading.Lock = field(default_factory=threading.Lock)


# The one process-wide cache the backend keeps: (model id, device) -> LoadedModel.
_LOADED: dict[tuple[str, str], LoadedModel] = {}
_LOAD_LOCK = threading.Lock()


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when a GPU is visible, else "cpu"; anything else is passed through."""
    import torch

    if device in ("", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def is_local_model(model_id: str) -> bool:
    """True when MODEL_ID names a folder on disk (then nothing is downloaded)."""
    return Path(model_id).expanduser().is_dir()


def load_model(model_id: str, device: str = "auto") -> LoadedModel:
    """The model and processor for ``model_id`` on ``device``, loaded on first use and cached for the process.
    bf16 on a GPU, float32 on the CPU. Raises EngineError with what to do when it cannot be loaded."""
    device = resolve_device(device)
    key = (model_id, device)
    with _LOAD_LOCK:
        if key not in _LOADED:
            _LOADED[key] = _load(model_id, device)
        return _LOADED[key]


def register_model(model_id: str, device: str, model, processor, family: str = "qwen2_audio") -> LoadedModel:
    """Put an already built model under ``model_id`` in the cache (the batching benchmark builds a full-size
    model with random weights in memory instead of loading 16 GiB from disk)."""
    import torch

    processor.tokenizer.padding_side = "left"
    loaded = LoadedModel(model=model, processor=processor, family=family, device=device,
                         dtype=next(model.parameters(), torch.zeros(0)).dtype)
    with _LOAD_LOCK:
        _LOADED[(model_id, device)] = loaded
    return loaded


def _load(model_id: str, device: str) -> LoadedModel:
    import torch
    from transformers import AutoConfig, AutoProcessor, GenerationConfig

    local = is_local_model(model_id)
    source = str(Path(model_id).expanduser()) if local else model_id
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=local)
    except Exception as exc:
        raise EngineError(
            f"cannot load MODEL_ID={model_id!r}: {exc}. Use a Hugging Face id such as Qwen/Qwen2-Audio-7B-Instruct "
            "(downloaded into HF_HOME on first start) or a local folder holding config.json, the weights and the "
            "processor files (huggingface-cli download <id> --local-dir <folder>)."
        ) from exc
    family = FAMILIES.get(getattr(config, "model_type", ""))
    if family is None:
        raise EngineError(
            f"MODEL_ID={model_id!r} is a {config.model_type!r} model; the transformers engine runs Qwen2-Audio "
            "(qwen2_audio) and Qwen2.5-Omni (qwen2_5_omni). Serve other models with vLLM and ENGINE=openai."
        )
    if family == "qwen2_audio":
        from transformers import Qwen2AudioForConditionalGeneration as model_cls
    else:
        from transformers import Qwen2_5OmniThinkerForConditionalGeneration as model_cls
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    if family == "qwen2_5_omni" and not _has_torchvision():
        # Omni's processor bundles image and video processors; transformers' video processor needs torchvision
        # and the processor refuses stand-ins, even though we only send audio and text.
        raise EngineError(f"MODEL_ID={model_id!r} is Qwen2.5-Omni, whose processor needs torchvision: pip install "
                          "the torchvision build that matches your torch (or serve it with vLLM and ENGINE=openai)")
    try:
        processor = AutoProcessor.from_pretrained(source, local_files_only=local)
        model = model_cls.from_pretrained(source, dtype=dtype, local_files_only=local)
        model.to(device).eval()
    except Exception as exc:
        raise EngineError(f"cannot load MODEL_ID={model_id!r} on {device}: {_short(exc)}") from exc
    # Left padding: generation continues every prompt from its last real token (right padding changes outputs).
    processor.tokenizer.padding_side = "left"
    # Keep only the stop/pad ids of the checkpoint's generation defaults; sampling comes from our settings alone
    # (Qwen2-Audio's hub defaults would otherwise add top_k and a repetition penalty).
    defaults = model.generation_config
    pad_id = defaults.pad_token_id if defaults.pad_token_id is not None else processor.tokenizer.pad_token_id
    model.generation_config = GenerationConfig(
        eos_token_id=defaults.eos_token_id, pad_token_id=pad_id, bos_token_id=defaults.bos_token_id,
    )
    log.info("loaded %s (%s) on %s as %s", model_id, family, device, dtype)
    return LoadedModel(model=model, processor=processor, family=family, device=device, dtype=dtype)


def _has_torchvision() -> bool:
    import importlib.util

    return importlib.util.find_spec("torchvision") is not None



def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/CPU allocation failures, which a smaller batch may avoid."""
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(exc, (oom_type, MemoryError)) or "out of memory" in str(exc).lower()


def batches(order: list[int], size: int) -> list[list[int]]:
    """``order`` cut into consecutive chunks of at most ``size`` indices."""
    return [order[i:i + size] for i in range(0, len(order), size)]


def prepare_audio(audio: np.ndarray) -> np.ndarray:
    """Mono float32 at 16 kHz, at most 30 s, non-finite samples zeroed; raises ValueError for an empty window."""
    samples = np.nan_to_num(np.asarray(audio, dtype=np.float32).reshape(-1), nan=0.0, posinf=0.0, neginf=0.0)
    if samples.size == 0:
        raise ValueError("the window holds no audio samples")
    return samples[:MAX_WINDOW_SAMPLES]


class TransformersEngine:
    """Describe windows with a local Qwen2-Audio or Qwen2.5-Omni thinker."""

    name = "transformers"

    def __init__(self, model_id: str, device: str = "auto", batch_size: int = 4, max_new_tokens: int = 384,
                 temperature: float = 0.0, top_p: float = 1.0, min_new_tokens: int = 0, seed: int = 0):
        """``min_new_tokens`` (tests, benchmarks) forces a fixed output length when it equals max_new_tokens;
        ``seed`` makes sampling (temperature > 0) repeatable per batch."""
        self.model_id = model_id
        self.batch_size = max(1, batch_size)
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.min_new_tokens = min_new_tokens
        self.seed = seed
        self.prefill_apart = True  # see _generate; False: one left-padded prefill per batch (the benchmark's baseline)
        self.loaded = load_model(model_id, device)

    @classmethod
    def from_settings(cls, settings) -> "TransformersEngine":
        return cls(settings.model_id, device=settings.device, batch_size=settings.batch_size,
                   max_new_tokens=settings.max_new_tokens, temperature=settings.temperature, top_p=settings.top_p)

    def parameters(self) -> dict:
        """Decoding parameters that change the text (hashed into model_version)."""
        params = {"max_new_tokens": self.max_new_tokens, "do_sample": self.temperature > 0}
        if self.temperature > 0:
            params.update(temperature=self.temperature, top_p=self.top_p, seed=self.seed)
        if self.min_new_tokens:
            params["min_new_tokens"] = self.min_new_tokens
        params["dtype"] = str(self.loaded.dtype).replace("torch.", "")
        return params

    # ------------------------------------------------------------------------------------------ windows

    def describe_windows(self, requests: list[WindowRequest]) -> list[WindowDescription]:
        """One description per request, same order. Windows are batched by similar length (less padding); a
        batch that fails (out of memory, anything else) is retried one window at a time, and a window that still
        fails gets ok=False."""
        texts: list[str | None] = [None] * len(requests)
        errors: list[str] = [""] * len(requests)
        audios: list[np.ndarray | None] = [None] * len(requests)
        for i, req in enumerate(requests):
            try:
                audios[i] = prepare_audio(req.audio)
            except ValueError as exc:
                errors[i] = f"window {req.start:.1f}-{req.end:.1f} s: {exc}"
        ready = sorted((i for i, a in enumerate(audios) if a is not None), key=lambda i: audios[i].size)
        for chunk in batches(ready, self.batch_size):
            try:
                outputs = self._generate([self._conversation(requests[i]) for i in chunk], [audios[i] for i in chunk])
            except Exception as exc:
                if len(chunk) == 1:
                    errors[chunk[0]] = self._window_error(requests[chunk[0]], exc)
                    continue
                log.warning("batch of %d windows failed (%s); retrying one at a time", len(chunk), _short(exc))
                outputs = [self._retry_alone(requests[i], audios[i], errors, i) for i in chunk]
            for i, text in zip(chunk, outputs):
                texts[i] = text
        results = []
        for req, text, error in zip(requests, texts, errors):
            if text is None:
                results.append(WindowDescription.failed(error))
            else:
                results.append(describe_answer(text, req))
        return results

    def _retry_alone(self, req: WindowRequest, audio: np.ndarray, errors: list[str], index: int) -> str | None:
        """Generate one window by itself after its batch failed; on failure record the error and return None."""
        try:
            return self._generate([self._conversation(req)], [audio])[0]
        except Exception as exc:
            errors[index] = self._window_error(req, exc)
            return None

    def _window_error(self, req: WindowRequest, exc: BaseException) -> str:
        kind = "out of memory" if is_out_of_memory(exc) else "generation failed"
        log.warning("window %.1f-%.1f s: %s: %s", req.start, req.end, kind, _short(exc))
        hint = " (lower BATCH_SIZE or MAX_NEW_TOKENS)" if kind == "out of memory" else ""
        return f"{kind}{hint}: {_short(exc)}"

    def _conversation(self, req: WindowRequest) -> list[dict]:
        """The chat for one window: an audio item, then the prompt with the window length filled in."""
        prompt = request_prompt(req)
        return [{"role": "user", "content": [{"type": "audio", "audio": "window.wav"},
                                             {"type": "text", "text": prompt}]}]

    # ------------------------------------------------------------------------------------------ caption

    def summarize(self, text_prompt: str) -> str | None:
        """A text-only answer to ``text_prompt`` (the song caption); ``None`` when generation fails."""
        try:
            conversation = [{"role": "user", "content": [{"type": "text", "text": text_prompt}]}]
            return self._generate([conversation], None)[0]
        except Exception as exc:
            log.warning("caption generation failed: %s", _short(exc))
            return None

    # ------------------------------------------------------------------------------------------ generate

    def _generate(self, conversations: list[list[dict]], audios: list[np.ndarray] | None) -> list[str]:
        """Run one batch through generate() and decode only the new tokens.

        Qwen2-Audio windows of a batch are prefilled one at a time and decoded together (``_prefill_apart``):
        windows differ in length (25 audio tokens a second, prompts with more or fewer parts), and a left-padded
        prefill pays for the padding and, on the CPU, for attention with a padding mask, which took longer than
        prefilling each window alone; decoding is where a batch pays (one pass of the weights per step for all)."""
        import torch

        lm = self.loaded
        prompts = [lm.processor.apply_chat_template(c, add_generation_prompt=True, tokenize=False)
                   for c in conversations]
        gen = {"max_new_tokens": self.max_new_tokens, "do_sample": self.temperature > 0}
        if self.temperature > 0:
            gen.update(temperature=self.temperature, top_p=self.top_p, top_k=0)
        if self.min_new_tokens:
            gen["min_new_tokens"] = self.min_new_tokens
        with lm.lock, torch.inference_mode():
            if self.temperature > 0:
                torch.manual_seed(self.seed)  # generate() takes no generator; under the lock this is per batch
            try:
                if self.prefill_apart and audios is not None and len(prompts) > 1 and lm.family == "qwen2_audio":
                    input_ids, out = self._prefill_apart(prompts, audios, gen)
                else:
                    inputs = self._inputs(prompts, audios)
                    input_ids = inputs["input_ids"]
                    out = lm.model.generate(**inputs, **gen)
            except Exception:
                if lm.device.startswith("cuda"):
                    torch.cuda.empty_cache()  # give the retry the memory this batch held
                raise
        new_tokens = out[:, input_ids.shape[1]:]
        return lm.processor.batch_decode(new_tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _inputs(self, prompts: list[str], audios: list[np.ndarray] | None):
        """The processor's tensors for a left-padded batch, on the model's device and dtype."""
        lm = self.loaded
        kwargs = {"text": prompts, "return_tensors": "pt", "padding": True}
        if audios is not None:
            kwargs.update(audio=audios, sampling_rate=MODEL_SR)
        inputs = lm.processor(**kwargs).to(lm.device)
        if "input_features" in inputs:
            inputs["input_features"] = inputs["input_features"].to(lm.dtype)
        return inputs

    def _prefill_apart(self, prompts: list[str], audios: list[np.ndarray], gen: dict):
        """Prefill each window alone (no padding, causal attention without a mask) up to its last prompt token,
        join the key/value caches left-padded into one batch, and let generate() go on from there: it runs the
        last prompt token of every row and decodes them together. Returns (padded input ids, generate output)."""
        import torch
        from transformers import DynamicCache

        lm = self.loaded
        rows, caches = [], []
        for prompt, audio in zip(prompts, audios):
            inputs = self._inputs([prompt], [audio])
            ids = inputs["input_ids"]
            out = lm.model(input_ids=ids[:, :-1], attention_mask=inputs["attention_mask"][:, :-1],
                           input_features=inputs["input_features"],
                           feature_attention_mask=inputs["feature_attention_mask"], use_cache=True)
            rows.append(ids[0])
            caches.append(out.cache if getattr(out, "cache", None) is not None else out.past_key_values)
            del out
        width = max(r.shape[0] for r in rows)
        input_ids = torch.full((len(rows), width), lm.processor.tokenizer.pad_token_id, dtype=rows[0].dtype,
                               device=rows[0].device)
        mask = torch.zeros_like(input_ids)
        for i, row in enumerate(rows):
            input_ids[i, width - row.shape[0]:] = row
            mask[i, width - row.shape[0]:] = 1
        layers = []
        for layer in range(len(caches[0].layers)):
            layers.append((_left_pad_cat([c.layers[layer].keys for c in caches], width - 1),
                           _left_pad_cat([c.layers[layer].values for c in caches], width - 1)))
            for c in caches:  # free each window's copy as soon as it is joined
                c.layers[layer].keys = c.layers[layer].values = None
        cache = DynamicCache(ddp_cache_data=layers)
        del caches, layers
        # transformers renamed past_key_values to cache in 5.x; the GPU image may hold a release from before
        name = "cache" if "cache" in inspect.signature(lm.model.forward).parameters else "past_key_values"
        return input_ids, lm.model.generate(input_ids=input_ids, attention_mask=mask, **{name: cache}, **gen)


def _left_pad_cat(tensors: list, length: int):
    """Cache tensors of shape (1, heads, tokens, dim) left-padded with zeros to ``length`` tokens and stacked
    into one batch (the padding is masked out, so its values never count)."""
    import torch

    padded = [torch.nn.functional.pad(t, (0, 0, length - t.shape[2], 0)) for t in tensors]
    return torch.cat(padded, dim=0)


def _short(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text if len(text) <= limit else text[:limit] + "…"
