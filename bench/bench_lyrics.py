"""What the lyrics stage costs per minute of audio: voice activity (Silero VAD) and Whisper transcription, with
chunks one at a time (the baseline) and batched, on the same song in the same run.

    python bench/bench_lyrics.py                       # tiny random Whisper on the CPU (a smoke figure)
    python bench/bench_lyrics.py --full-size           # whisper-large-v3-turbo's architecture, random fp16 (GPU;
                                                       # on the CPU: float32, slow, --minutes 1 --repeats 1)
    python bench/bench_lyrics.py --full-size --with-qwen   # ... beside a full-size Qwen2-Audio-7B (peak memory)
    python bench/bench_lyrics.py --full-size --dry-run     # build it on the meta device, print its size

Transcription runs through the real ``LyricsStage`` and ``WhisperEngine`` (features, language detection,
generate with token timestamps, the log-probability pass, stitching) with a fixed output length per chunk
(end-of-text suppressed, ``--tokens`` new tokens: about what 30 s of dense singing needs), so every run does the
same work. The voice check is timed on its own and then turned off, so every chunk is transcribed. The audio is
noise: only time is measured, the text is random. With ``--with-qwen`` the full-size description model is built
first on the same GPU and one batch of windows described, so the peak memory shows whether both fit one 24 GB card.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ls_acestep.files import atomic_write  # noqa: E402 (the repository is on sys.path now)

SR = 16000  # Hz
FULL_SIZE_ID = "random-whisper-large-v3-turbo"


def build_full_size(device: str):
    """A random whisper-large-v3-turbo (809 M parameters) directly on ``device`` ("meta" allocates nothing), in
    fp16 on a GPU and float32 on the CPU (as the engine loads it), with the byte-level tokenizer padded to the real vocabulary size and Whisper's generation config."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from tests.tiny_whisper import TURBO_SIZES, TURBO_VOCAB, build_tokenizer, generation_config, processor_for

    tokenizer = build_tokenizer(pad_to=TURBO_VOCAB)
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = WhisperConfig(vocab_size=len(tokenizer), num_mel_bins=128, max_source_positions=1500,
                           max_target_positions=448, pad_token_id=eot, bos_token_id=eot, eos_token_id=eot,
                           decoder_start_token_id=tokenizer.convert_tokens_to_ids("<|startoftranscript|>"),
                           **TURBO_SIZES)
    with torch.device(device):
        dtype = torch.float32 if device == "cpu" else torch.float16
        model = WhisperForConditionalGeneration._from_config(config, dtype=dtype).eval()
    model.generation_config = generation_config(tokenizer, TURBO_SIZES["decoder_layers"], max_length=448)
    return model, processor_for(tokenizer)


def fix_output_length(engine, tokens: int) -> None:
    """Every chunk writes exactly ``tokens`` tokens: end-of-text suppressed, max_length = prompt (4) + tokens."""
    config = engine.model.generation_config
    config.max_length = 4 + tokens
    config.suppress_tokens = sorted(set(config.suppress_tokens or []) | {engine.eot})


def time_transcription(stage, songs: list[np.ndarray], repeats: int) -> float:
    import torch

    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        transcripts = stage.transcribe(songs)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        failed = [t.error for t in transcripts if not t.ok]
        if failed:
            raise SystemExit(f"transcription failed: {failed[0]}")
    return statistics.median(times)


def time_single_pass_vad(song: np.ndarray) -> float:
    """Seconds for Silero VAD run frame by frame over the whole song (the baseline of the batched streams)."""
    import torch

    from ml_backend.lyrics import voice

    model = voice._model()
    frames = torch.from_numpy(song[: song.size // voice.FRAME * voice.FRAME].reshape(-1, voice.FRAME))
    start = time.perf_counter()
    with torch.inference_mode():
        model.reset_states()
        for frame in frames:
            model(frame, SR)
    return time.perf_counter() - start


def describe_with_qwen(device: str) -> dict:
    """Build the full-size random Qwen2-Audio on ``device`` and describe one batch of 8 windows of 30 s (256 new
    tokens), as the backend would before the lyrics stage; returns its figures."""
    from bench.bench_batching import FULL_SIZE_ID as QWEN_ID
    from bench.bench_batching import build_full_size as build_qwen
    from bench.bench_batching import make_windows
    from ml_backend.describe.engines.transformers_engine import TransformersEngine, register_model
    from ml_backend.describe.prompt import DEFAULT_ANALYSIS_PROMPT

    model, processor = build_qwen(device)
    register_model(QWEN_ID, device, model, processor, family="qwen2_audio")
    engine = TransformersEngine(QWEN_ID, device=device, batch_size=8, max_new_tokens=256, min_new_tokens=256)
    start = time.perf_counter()
    engine.describe_windows(make_windows(8, 30.0, DEFAULT_ANALYSIS_PROMPT[:420]))
    return {"qwen_batch_of_8_s": round(time.perf_counter() - start, 2)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full-size", action="store_true", help="whisper-large-v3-turbo architecture, random fp16")
    parser.add_argument("--dry-run", action="store_true", help="with --full-size: build on the meta device only")
    parser.add_argument("--with-qwen", action="store_true", help="with --full-size: Qwen2-Audio-7B on the same GPU")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--minutes", type=float, default=None, help="song length (default 1 tiny, 4 full size)")
    parser.add_argument("--batch-size", type=int, default=4, help="chunks per generate() when batched")
    parser.add_argument("--tokens", type=int, default=None, help="new tokens per chunk (default 20 tiny, 120 full)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)

    import torch

    import ml_backend.lyrics.engines.whisper_engine as whisper_engine
    from ml_backend.describe.engines.transformers_engine import resolve_device
    from ml_backend.lyrics.chunks import plan_chunks
    from ml_backend.lyrics.stage import LyricsStage
    from ml_backend.lyrics.voice import voice_activity
    from ml_backend.settings import Settings

    full = args.full_size
    minutes = args.minutes or (4.0 if full else 1.0)
    tokens = args.tokens or (120 if full else 20)
    device = resolve_device(args.device)
    if full and args.dry_run:
        model, _ = build_full_size("meta")
        params = sum(p.numel() for p in model.parameters())
        report = {"model": FULL_SIZE_ID, "parameters_million": round(params / 1e6),
                  "fp16_gib": round(params * 2 / 2**30, 2)}
        print(json.dumps(report, indent=2))
        return report
    if full and not device.startswith("cuda"):
        print("note: --full-size on the CPU (float32, 3 GB of memory): slow; this measures why lyrics are off on "
              "CPU machines", file=sys.stderr)

    extra = {}
    if full and args.with_qwen:
        extra = describe_with_qwen(device)
    built = time.perf_counter()
    if full:
        model, processor = build_full_size(device)
        whisper_engine._LOADED[(FULL_SIZE_ID, device)] = (model, processor)  # as if loaded from disk
        model_id = FULL_SIZE_ID
    else:
        from tests.tiny_whisper import build_whisper

        model_id = str(build_whisper(Path(tempfile.mkdtemp(prefix="tiny-whisper-"))))
    settings = Settings(lyrics_engine="whisper", lyrics_model_id=model_id, device=device,
                        batch_size=args.batch_size, lyrics_min_voice_seconds=0.0)
    stage = LyricsStage(settings)
    engine = stage.engine()
    if engine is None:
        raise SystemExit(f"the whisper engine did not start: {stage.load_error}")
    fix_output_length(engine, tokens)
    build_s = time.perf_counter() - built

    song = (np.random.default_rng(0).standard_normal(int(minutes * 60 * SR)) * 0.1).astype(np.float32)
    chunks = len(plan_chunks(song.size / SR))
    voice_activity(song[: 60 * SR])  # warm-up: loads the model; TorchScript specialises on the first calls
    time_single_pass_vad(song[: 10 * SR])
    single_runs, stream_runs = [], []
    for _ in range(args.repeats):  # interleaved, so that a busy moment of the machine hits both
        single_runs.append(time_single_pass_vad(song))
        start = time.perf_counter()
        voice_activity(song)
        stream_runs.append(time.perf_counter() - start)
    vad_single_s, vad_s = statistics.median(single_runs), statistics.median(stream_runs)

    stage.transcribe([song[: 30 * SR]])  # warm-up: kernels, allocator, lazy imports
    results = {}
    for label, size in (("one at a time", 1), (f"batched x{args.batch_size}", args.batch_size)):
        engine.batch_size = size
        seconds = time_transcription(stage, [song], args.repeats)
        results[label] = {"seconds": round(seconds, 3), "seconds_per_audio_minute": round(seconds / minutes, 3)}
    single, batched = results["one at a time"], results[f"batched x{args.batch_size}"]
    report = {
        "model": (f"whisper-large-v3-turbo architecture, random {'fp16' if device.startswith('cuda') else 'float32'}"
                  " weights") if full else "tiny random Whisper",
        "device": torch.cuda.get_device_name(device) if device.startswith("cuda")
        else f"cpu ({torch.get_num_threads()} threads)",
        "audio_minutes": minutes, "chunks": chunks, "new_tokens_per_chunk": tokens, "build_s": round(build_s, 1),
        "vad_seconds_per_audio_minute": round(vad_s / minutes, 3),
        "vad_single_pass_seconds_per_audio_minute": round(vad_single_s / minutes, 3), "results": results,
        "speedup": round(single["seconds"] / batched["seconds"], 2), **extra,
    }
    if device.startswith("cuda"):
        report["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    print(f"{report['model']} on {report['device']}: {minutes:g} min of audio, {chunks} chunks, "
          f"{tokens} tokens each")
    print("| mode | seconds | seconds per audio minute |\n|---|---|---|")
    for label, row in results.items():
        print(f"| {label} | {row['seconds']} | {row['seconds_per_audio_minute']} |")
    print(f"voice activity: {report['vad_seconds_per_audio_minute']} s per audio minute in streams, "
          f"{report['vad_single_pass_seconds_per_audio_minute']} s in one frame-by-frame pass; "
          f"speed-up from batching: {report['speedup']}x"
          + (f"; peak GPU memory {report['peak_gpu_gib']} GiB" if "peak_gpu_gib" in report else ""))
    if args.json:  # atomically: a half-written file must not pass for a result
        atomic_write(args.json, (json.dumps(report, indent=2) + "\n").encode())
    return report


if __name__ == "__main__":
    main()
