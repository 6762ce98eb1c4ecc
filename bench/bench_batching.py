"""Batched against one-window-at-a-time generation, on the same windows in the same run.

The original captioning pipeline describes one window per generate() call; the backend batches BATCH_SIZE
windows per call with left padding. Both modes run through the real ``TransformersEngine`` with a fixed output
length (min_new_tokens = max_new_tokens), so they do the same work, and the ratio of their throughputs is the
speed-up from batching.

    python bench/bench_batching.py                      # tiny random Qwen2-Audio on the CPU (a smoke figure)
    python bench/bench_batching.py --full-size          # Qwen2-Audio-7B architecture, random bf16 weights (GPU)
    python bench/bench_batching.py --full-size --dry-run   # build it on the meta device, print its size

The full-size model is built from the Qwen2-Audio-7B-Instruct configuration with random weights (no download);
its tokenizer is the tiny byte-level one, so the prompt is cut to ``--prompt-tokens`` bytes to match the length
the real tokenizer gives the default prompt. Only time is measured; the text is random.
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
# The default analysis prompt is about 1,700 characters; Qwen's BPE tokenizer spends roughly 4 characters a token.
REAL_PROMPT_TOKENS = 420
FULL_SIZE_ID = "random-Qwen2-Audio-7B"


def full_size_config():
    """The architecture of Qwen/Qwen2-Audio-7B-Instruct: Whisper-large-v3 style encoder (32 layers, d_model
    1280, 128 mel bins) and a Qwen-7B decoder (32 layers, hidden 4096, full multi-head attention, vocab 156032)."""
    from transformers import Qwen2AudioConfig, Qwen2AudioEncoderConfig, Qwen2Config

    return Qwen2AudioConfig(
        audio_config=Qwen2AudioEncoderConfig(
            num_mel_bins=128, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120, d_model=1280,
            max_source_positions=1500,
        ),
        text_config=Qwen2Config(
            vocab_size=156032, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
            num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=8192, rope_theta=10000.0,
            bos_token_id=151643, eos_token_id=151645, pad_token_id=151643,
        ),
        audio_token_index=151646,
    )


def build_full_size(device: str):
    """A randomly initialised full-size Qwen2-Audio in bf16 directly on ``device`` ("meta" allocates nothing),
    with the tiny processor (its token ids all exist in the full vocabulary)."""
    import torch
    from transformers import GenerationConfig, Qwen2AudioForConditionalGeneration

    from tests.tiny_model import build_tiny_processor

    processor = build_tiny_processor()
    tok = processor.tokenizer
    config = full_size_config()
    config.audio_token_index = tok.convert_tokens_to_ids("<|AUDIO|>")
    with torch.device(device):
        model = Qwen2AudioForConditionalGeneration._from_config(config, dtype=torch.bfloat16).eval()
    model.generation_config = GenerationConfig(eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
                                               pad_token_id=tok.pad_token_id)
    return model, processor


def make_windows(count: int, seconds: float, prompt: str, seed: int = 0):
    """``count`` windows of noise-like audio, ``seconds`` long each (the last one shorter, as in a real song)."""
    from ml_backend.describe.types import WindowRequest

    rng = np.random.default_rng(seed)
    windows = []
    for i in range(count):
        length = seconds if i < count - 1 else max(1.0, seconds * 0.4)
        audio = (rng.standard_normal(int(length * SR)) * 0.1).astype(np.float32)
        windows.append(WindowRequest(audio=audio, start=i * seconds, end=i * seconds + length, prompt=prompt))
    return windows


def time_mode(engine, windows, repeats: int) -> float:
    """Median seconds for describing all ``windows`` with the engine's current batch size."""
    import torch

    times = []
    for _ in range(repeats):
        if engine.loaded.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        descriptions = engine.describe_windows(windows)
        if engine.loaded.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        failed = [d.error for d in descriptions if not d.ok and "neither JSON" not in d.error]
        if failed:
            raise SystemExit(f"generation failed at batch size {engine.batch_size}: {failed[0]}")
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full-size", action="store_true", help="Qwen2-Audio-7B architecture, random bf16 weights")
    parser.add_argument("--dry-run", action="store_true", help="with --full-size: build on the meta device only")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--windows", type=int, default=None, help="windows per run (default 8 tiny, 16 full size)")
    parser.add_argument("--batch-size", type=int, default=None, help="windows per generate() (default 4 tiny, 8 full)")
    parser.add_argument("--new-tokens", type=int, default=None, help="fixed output length (default 16 tiny, 256 full)")
    parser.add_argument("--window-seconds", type=float, default=30.0)
    parser.add_argument("--prompt-tokens", type=int, default=REAL_PROMPT_TOKENS,
                        help="prompt length in (byte) tokens, to match the real tokenizer")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--song-seconds", type=float, default=240.0, help="song length for the per-song estimate")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)

    import torch

    from ml_backend.describe.engines.transformers_engine import TransformersEngine, register_model, resolve_device
    from ml_backend.describe.prompt import DEFAULT_ANALYSIS_PROMPT

    full = args.full_size
    n_windows = args.windows or (16 if full else 8)
    batch_size = args.batch_size or (8 if full else 4)
    new_tokens = args.new_tokens or (256 if full else 16)
    device = resolve_device(args.device)
    prompt = DEFAULT_ANALYSIS_PROMPT[:args.prompt_tokens]

    if full and args.dry_run:
        model, _ = build_full_size("meta")
        params = sum(p.numel() for p in model.parameters())
        text = model.config.text_config
        kv_mib = 2 * text.num_hidden_layers * text.num_key_value_heads * (text.hidden_size // text.num_attention_heads) * 2 / 2**20
        report = {"model": FULL_SIZE_ID, "parameters_billion": round(params / 1e9, 2),
                  "bf16_gib": round(params * 2 / 2**30, 1), "kv_cache_mib_per_token": round(kv_mib, 2)}
        print(json.dumps(report, indent=2))
        return report
    if full and not device.startswith("cuda"):
        raise SystemExit("--full-size needs a GPU (about 16 GiB of weights in bf16 plus the KV cache); "
                         "use --dry-run to check the architecture without one")

    built = time.perf_counter()
    if full:
        model, processor = build_full_size(device)
        register_model(FULL_SIZE_ID, device, model, processor, family="qwen2_audio")
        model_id = FULL_SIZE_ID
    else:
        from tests.tiny_model import build_tiny_qwen2_audio

        model_id = str(build_tiny_qwen2_audio(Path(tempfile.mkdtemp(prefix="tiny-qwen2-audio-"))))
    engine = TransformersEngine(model_id, device=device, batch_size=batch_size, max_new_tokens=new_tokens,
                                min_new_tokens=new_tokens)
    build_s = time.perf_counter() - built
    windows = make_windows(n_windows, args.window_seconds, prompt)

    engine.batch_size = batch_size
    engine.describe_windows(windows[:batch_size])  # warm-up: kernels, allocator, lazy imports
    results = {}
    for label, size in (("one at a time", 1), (f"batched x{batch_size}", batch_size)):
        engine.batch_size = size
        seconds = time_mode(engine, windows, args.repeats)
        results[label] = {"seconds": round(seconds, 3), "windows_per_s": round(n_windows / seconds, 3)}

    single, batched = results["one at a time"], results[f"batched x{batch_size}"]
    ratio = batched["windows_per_s"] / single["windows_per_s"]
    step = args.window_seconds - 2.0  # fixed windows overlap by OVERLAP_SECONDS = 2 by default
    song_windows = max(1, int(np.ceil((args.song_seconds - 2.0) / step)))
    report = {
        "model": "Qwen2-Audio-7B architecture, random bf16 weights" if full else "tiny random Qwen2-Audio",
        "device": torch.cuda.get_device_name(device) if device.startswith("cuda") else f"cpu ({torch.get_num_threads()} threads)",
        "windows": n_windows, "window_seconds": args.window_seconds, "new_tokens": new_tokens,
        "prompt_tokens": len(prompt.encode()), "build_s": round(build_s, 1), "results": results,
        "speedup": round(ratio, 2),
        "seconds_per_song": {"song_seconds": args.song_seconds, "windows": song_windows,
                             "one_at_a_time": round(song_windows / single["windows_per_s"], 1),
                             "batched": round(song_windows / batched["windows_per_s"], 1)},
    }
    print(f"{report['model']} on {report['device']}: {n_windows} windows of {args.window_seconds:g} s, "
          f"{new_tokens} new tokens each")
    print("| mode | seconds | windows/s |\n|---|---|---|")
    for label, row in results.items():
        print(f"| {label} | {row['seconds']} | {row['windows_per_s']} |")
    print(f"speed-up from batching: {ratio:.2f}x; a {args.song_seconds:g} s song ({song_windows} windows): "
          f"{report['seconds_per_song']['one_at_a_time']} s one at a time, "
          f"{report['seconds_per_song']['batched']} s batched")
    if args.json:  # atomically: a half-written file must not pass for a result
        atomic_write(args.json, (json.dumps(report, indent=2) + "\n").encode())
    return report


if __name__ == "__main__":
    main()
