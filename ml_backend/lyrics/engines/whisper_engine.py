"""LYRICS_ENGINE=whisper: any Whisper checkpoint through transformers (default openai/whisper-large-v3-turbo).

Per batch of chunks (at most 30 s each, BATCH_SIZE at a time): the encoder runs once (its output is reused by
every later step); one decoder step from
<|startoftranscript|> gives each chunk's language probabilities and its no-speech probability (as Whisper itself
computes them); the song's language is the one its chunks give most weight (by 1 - no-speech probability); then
``generate`` writes each chunk in that language with token timestamps from the cross-attention of the
checkpoint's alignment heads, and one teacher-forced decoder pass gives the mean log-probability of what it wrote.
Tokens are grouped into words with transformers' own Whisper word splitter. Loaded once per process.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from pathlib import Path

import numpy as np

from ml_backend.lyrics.engines.base import ChunkAudio, ChunkResult, LyricsEngineError
from ml_backend.lyrics.guards import compression_ratio
from ml_backend.lyrics.types import Segment, Word

log = logging.getLogger(__name__)

SR = 16000  # Hz, Whisper's input rate

_LOADED: dict = {}  # (model id, device) -> (model, processor): one copy per process
_LOAD_LOCK = threading.Lock()


def load_whisper(model_id: str, device: str):
    """(model, processor) for ``model_id`` on ``device`` ("auto" = cuda when visible), loaded once per process:
    fp16 on a GPU (1.6 GB for large-v3-turbo), float32 on the CPU. Raises LyricsEngineError saying what to do."""
    from ml_backend.describe.engines.transformers_engine import is_local_model, resolve_device

    device = resolve_device(device)
    with _LOAD_LOCK:
        key = (model_id, device)
        if key not in _LOADED:
            _LOADED[key] = _load(model_id, device, is_local_model(model_id))
        return _LOADED[key]


def _load(model_id: str, device: str, local: bool):
    import torch
    from transformers import AutoConfig, WhisperForConditionalGeneration, WhisperProcessor

    source = str(Path(model_id).expanduser()) if local else model_id
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=local)
    except Exception as exc:
        raise LyricsEngineError(
            f"cannot load LYRICS_MODEL_ID={model_id!r}: {exc}. Use a Whisper checkpoint id such as "
            "openai/whisper-large-v3-turbo (downloaded into HF_HOME on first start) or a local folder") from exc
    if getattr(config, "model_type", "") != "whisper":
        raise LyricsEngineError(f"LYRICS_MODEL_ID={model_id!r} is a {config.model_type!r} model; the whisper "
                                "lyrics engine runs Whisper checkpoints (serve others with LYRICS_ENGINE=openai)")
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    try:
        processor = WhisperProcessor.from_pretrained(source, local_files_only=local)
        model = WhisperForConditionalGeneration.from_pretrained(source, dtype=dtype, local_files_only=local)
        model.to(device).eval()
    except Exception as exc:
        raise LyricsEngineError(f"cannot load LYRICS_MODEL_ID={model_id!r} on {device}: "
                                f"{type(exc).__name__}: {str(exc)[:300]}") from exc
    missing = [k for k in ("lang_to_id", "alignment_heads", "no_timestamps_token_id")
               if not getattr(model.generation_config, k, None)]
    if missing:
        raise LyricsEngineError(f"LYRICS_MODEL_ID={model_id!r}: its generation_config.json lacks {', '.join(missing)}"
                                " (needed for language detection and word timestamps); use a multilingual "
                                "checkpoint from the openai/whisper-* family or one saved with its generation config")
    log.info("loaded %s (whisper) on %s as %s", model_id, device, dtype)
    return model, processor


class WhisperEngine:
    """Transcribe 30 s chunks with a Whisper model in this process (one generate at a time)."""

    name = "whisper"

    def __init__(self, model_id: str, device: str = "auto", batch_size: int = 4):
        self.model_id = model_id
        self.batch_size = max(1, batch_size)
        self.model, self.processor = load_whisper(model_id, device)
        tokenizer = self.processor.tokenizer
        config = self.model.generation_config
        self.eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
        self.sot = config.decoder_start_token_id
        self.no_speech = tokenizer.convert_tokens_to_ids("<|nospeech|>")
        self.lang_ids = {token[2:-2]: i for token, i in config.lang_to_id.items()}  # "en" -> id
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings) -> "WhisperEngine":
        return cls(settings.lyrics_model_id, settings.device, settings.batch_size)

    def transcribe_chunks(self, chunks: list[ChunkAudio]) -> list[ChunkResult]:
        """One result per chunk (same order). A batch that fails (out of memory) fails only its chunks."""
        results: list[ChunkResult | None] = [None] * len(chunks)
        order = list(range(len(chunks)))
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        encoded = []  # per batch: (attention mask, language probabilities, no-speech probabilities, encoder output)
        with self._lock:
            for batch in batches:
                try:
                    encoded.append(self._first_step([chunks[i].audio for i in batch]))
                except Exception as exc:
                    log.exception("whisper: language detection failed on %d chunks", len(batch))
                    encoded.append(exc)
            languages = self._song_languages(chunks, batches, encoded)
            for batch, enc in zip(batches, encoded):
                if isinstance(enc, Exception):
                    for i in batch:
                        results[i] = ChunkResult.failed(f"{type(enc).__name__}: {enc}")
                    continue
                try:
                    written = self._write(enc, [languages[chunks[i].song] for i in batch],
                                          [chunks[i].audio.size / SR for i in batch])
                except Exception as exc:
                    log.exception("whisper: transcription failed on %d chunks", len(batch))
                    written = [ChunkResult.failed(f"{type(exc).__name__}: {exc}")] * len(batch)
                for i, result in zip(batch, written):
                    results[i] = result
        return [r if r is not None else ChunkResult.failed("not transcribed") for r in results]

    # --- steps ----------------------------------------------------------------------------------------------

    def _first_step(self, audios: list[np.ndarray]):
        """The features' attention mask, each chunk's language probabilities (code -> p) and no-speech
        probability from one decoder step at <|startoftranscript|>, and the encoder's output."""
        import torch

        features = self.processor.feature_extractor(
            [np.nan_to_num(np.asarray(a, dtype=np.float32)) for a in audios], sampling_rate=SR,
            return_tensors="pt", return_attention_mask=True)
        model = self.model
        input_features = features.input_features.to(model.device, model.dtype)
        start = torch.full((len(audios), 1), self.sot, dtype=torch.long, device=model.device)
        with torch.inference_mode():
            encoded = model.get_encoder()(input_features).last_hidden_state  # reused by generate and the log-probs
            logits = model(encoder_outputs=(encoded,), decoder_input_ids=start).logits[:, -1].float()
        probs = torch.softmax(logits, dim=-1)
        codes = list(self.lang_ids)
        lang_logits = logits[:, [self.lang_ids[c] for c in codes]]
        lang_probs = torch.softmax(lang_logits, dim=-1).cpu().numpy()
        no_speech = probs[:, self.no_speech].cpu().numpy() if self.no_speech is not None else np.zeros(len(audios))
        languages = [dict(zip(codes, row)) for row in lang_probs]
        return features.attention_mask.to(model.device), languages, no_speech, encoded

    def _song_languages(self, chunks, batches, encoded) -> dict[int, str]:
        """The language code of each song: the one with the most probability over its chunks, each chunk weighted
        by how likely it holds speech."""
        totals: dict[int, dict] = defaultdict(lambda: defaultdict(float))
        for batch, enc in zip(batches, encoded):
            if isinstance(enc, Exception):
                continue
            for i, probs, no_speech in zip(batch, enc[1], enc[2]):
                weight = max(1e-3, 1.0 - float(no_speech))
                for code, p in probs.items():
                    totals[chunks[i].song][code] += weight * float(p)
        return {song: max(t, key=t.get) for song, t in totals.items() if t}

    def _write(self, enc, languages: list[str], durations: list[float]) -> list[ChunkResult]:
        """Generate each chunk's text in its song's language with token timestamps; words, one segment each."""
        import torch

        attention_mask, _, no_speech, encoded = enc
        model = self.model
        from transformers.modeling_outputs import BaseModelOutput

        with torch.inference_mode():  # the encoder's output from the first step: it runs once per batch
            out = model.generate(encoder_outputs=BaseModelOutput(last_hidden_state=encoded),
                                 attention_mask=attention_mask, language=languages, task="transcribe",
                                 return_token_timestamps=True)
        sequences = out["sequences"].cpu()
        stamps = out["token_timestamps"].cpu().float().numpy()
        prompts = [self._prompt(code) for code in languages]
        logprobs = self._mean_logprobs(encoded, prompts, sequences)
        results = []
        for row, (seq, times, code, duration) in enumerate(zip(sequences.tolist(), stamps, languages, durations)):
            tokens, positions = self._text_tokens(seq)
            words = self._words(tokens, positions, times, code, duration)
            text = self.processor.tokenizer.decode(tokens, skip_special_tokens=True).strip()
            segment = Segment(start=0.0, end=duration, text=text, no_speech_prob=float(no_speech[row]),
                              avg_logprob=logprobs[row], compression_ratio=compression_ratio(text) if text else None)
            results.append(ChunkResult(words=words, segments=[segment], language=code))
        return results

    def _prompt(self, code: str) -> list[int]:
        """The decoder prompt generate() starts from: start of transcript, language, transcribe, no timestamps."""
        ids = self.processor.tokenizer.convert_tokens_to_ids
        return [self.sot, self.lang_ids[code], ids("<|transcribe|>"), ids("<|notimestamps|>")]

    def _text_tokens(self, sequence: list[int]) -> tuple[list[int], list[int]]:
        """The written text tokens (before the first end-of-text; special and timestamp tokens, which Whisper
        numbers after the text vocabulary, left out) and their positions in ``sequence``."""
        tokens, positions = [], []
        for position, token in enumerate(sequence):
            if token == self.eot:
                if tokens:
                    break
                continue
            if token < self.eot:
                tokens.append(token)
                positions.append(position)
        return tokens, positions

    def _mean_logprobs(self, encoded, prompts: list[list[int]], sequences) -> list[float | None]:
        """Mean log-probability of each chunk's written tokens and its end-of-text (Whisper's avg_logprob), from
        one teacher-forced decoder pass."""
        import torch

        rows = []
        for prompt, seq in zip(prompts, sequences.tolist()):
            tokens, _ = self._text_tokens(seq)
            rows.append(prompt + tokens + [self.eot])
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.eot, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = torch.tensor(row)
            mask[i, :len(row)] = 1
        model = self.model
        with torch.inference_mode():
            logits = model(encoder_outputs=(encoded,), decoder_input_ids=ids.to(model.device),
                           decoder_attention_mask=mask.to(model.device)).logits.float()
        logp = torch.log_softmax(logits, dim=-1).cpu()
        means: list[float | None] = []
        for i, (prompt, row) in enumerate(zip(prompts, rows)):
            targets = range(len(prompt), len(row))  # the written tokens and the end-of-text
            values = [float(logp[i, t - 1, row[t]]) for t in targets]
            means.append(sum(values) / len(values) if values else None)
        return means

    def _words(self, tokens: list[int], positions: list[int], times: np.ndarray, code: str,
               duration: float) -> list[Word]:
        """Words from text tokens with Whisper's own splitter (spaces, or characters for languages written
        without them); a word starts at its first token's time and ends at the next token's, within the chunk."""
        from transformers.models.whisper.tokenization_whisper import LANGUAGES, _combine_tokens_into_words

        if not tokens:
            return []
        words, _, indices = _combine_tokens_into_words(self.processor.tokenizer, tokens, LANGUAGES.get(code))
        result = []
        for text, idx in zip(words, indices):
            if not text.strip() or not idx:
                continue
            first, last = positions[idx[0]], positions[idx[-1]]
            start = float(times[first]) if first < len(times) else 0.0
            end = float(times[last + 1]) if last + 1 < len(times) else float(times[min(last, len(times) - 1)])
            start = min(max(0.0, start), duration)
            end = min(max(start, end), duration)
            result.append(Word(text=text.strip(), start=start, end=end))
        return result
