"""A tiny, randomly initialised Whisper built offline (no downloads) for the lyrics engine tests and bench.

The real classes are used throughout (WhisperForConditionalGeneration, WhisperProcessor with a
WhisperFeatureExtractor and a WhisperTokenizer), with the special tokens in Whisper's own order (end of text,
start of transcript, the language tokens, task tokens, no-speech, no-timestamps, then 1501 timestamp tokens), and
a generation config that carries what word timestamps and language detection need (``lang_to_id``,
``task_to_id``, ``no_timestamps_token_id``, ``alignment_heads``). So the folder loads through the same
``from_pretrained`` path as ``openai/whisper-large-v3-turbo``. Its output is random text. bench/bench_lyrics.py
builds whisper-large-v3-turbo's architecture (TURBO_SIZES) from the same parts.
"""

from __future__ import annotations

from pathlib import Path

TIMESTAMP_TOKENS = 1501  # <|0.00|> ... <|30.00|> in steps of 0.02 s, as in every Whisper checkpoint
TURBO_VOCAB = 51866  # vocab_size of whisper-large-v3(-turbo)

# whisper-large-v3-turbo's architecture (its config.json): 32 encoder layers, 4 decoder layers, d_model 1280.
TURBO_SIZES = dict(d_model=1280, encoder_layers=32, decoder_layers=4, encoder_attention_heads=20,
                   decoder_attention_heads=20, encoder_ffn_dim=5120, decoder_ffn_dim=5120)
TINY_SIZES = dict(d_model=16, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2,
                  decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32)


def special_tokens() -> list[str]:
    """Whisper's special tokens in checkpoint order (timestamp tokens must follow <|notimestamps|>)."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return (["<|endoftext|>", "<|startoftranscript|>"] + [f"<|{code}|>" for code in LANGUAGES]
            + ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>",
               "<|notimestamps|>"]
            + [f"<|{i * 0.02:.2f}|>" for i in range(TIMESTAMP_TOKENS)])


def build_tokenizer(pad_to: int = 0):
    """A WhisperTokenizer over the 256 byte-level symbols (every byte one token, no merges) and Whisper's special
    tokens; with ``pad_to``, filler entries bring the vocabulary to that size (so that every id a full-size
    random model writes decodes)."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import WhisperTokenizer

    vocab = {symbol: i for i, symbol in enumerate(sorted(ByteLevel.alphabet()))}
    specials = special_tokens()
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[])
    tokenizer.add_tokens(specials, special_tokens=True)
    if pad_to > len(tokenizer):
        tokenizer.add_tokens([f"w{i}" for i in range(pad_to - len(tokenizer))])
    return tokenizer


def generation_config(tokenizer, decoder_layers: int, max_length: int):
    """Whisper's generation config for ``tokenizer``: what language detection, forced languages and word
    timestamps need. Task and timestamp tokens are suppressed (random weights would mostly write them)."""
    from transformers import GenerationConfig
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    ids = tokenizer.convert_tokens_to_ids
    eot, sot = ids("<|endoftext|>"), ids("<|startoftranscript|>")
    return GenerationConfig(
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, bos_token_id=eot, max_length=max_length,
        begin_suppress_tokens=[ids("Ġ"), eot],
        suppress_tokens=[ids(t) for t in special_tokens() if t != "<|endoftext|>"],
        is_multilingual=True, lang_to_id={f"<|{c}|>": ids(f"<|{c}|>") for c in LANGUAGES},
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        no_timestamps_token_id=ids("<|notimestamps|>"), prev_sot_token_id=ids("<|startofprev|>"),
        max_initial_timestamp_index=50,
        # cross-attention heads whose weights follow the audio (layer, head): the real checkpoints name heads of
        # their last decoder layers; any will do for random weights
        alignment_heads=[[decoder_layers - 1, 0], [decoder_layers - 1, 1]],
    )


def processor_for(tokenizer):
    """A WhisperProcessor: large-v3's features (128 mel bins, 16 kHz, 30 s) and ``tokenizer``."""
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    return WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=128, sampling_rate=16000),
                            tokenizer=tokenizer)


def build_whisper(folder: Path, seed: int = 0, weight_std: float = 0.5) -> Path:
    """Save a tiny random Whisper and its processor into ``folder``; return the folder. 128 mel bins and 1500
    encoder positions (30 s) as in large-v3; it stops after 20 new tokens to keep tests fast."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    folder = Path(folder)
    tokenizer = build_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    eot = ids("<|endoftext|>")
    config = WhisperConfig(
        vocab_size=len(tokenizer), num_mel_bins=128, max_source_positions=1500, max_target_positions=448,
        pad_token_id=eot, bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=ids("<|startoftranscript|>"),
        **TINY_SIZES,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    # With the default init every chunk gets the same text; larger weights make it depend on the audio.
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_(0.0, weight_std)
    model.generation_config = generation_config(tokenizer, TINY_SIZES["decoder_layers"], max_length=24)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor_for(tokenizer).save_pretrained(folder)
    return folder
