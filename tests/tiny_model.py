"""A tiny, randomly initialised Qwen2-Audio built offline (no downloads) for engine tests and the batching bench.

The real classes are used throughout (Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor with a
WhisperFeatureExtractor and a byte-level Qwen2Tokenizer), so the folder loads through the same
``from_pretrained`` path as ``Qwen/Qwen2-Audio-7B-Instruct``. Its output is random text.
"""

from __future__ import annotations

from pathlib import Path

# The chat template of Qwen2-Audio-7B-Instruct, reduced to what the engine sends (system, text and audio items):
# an audio item becomes "Audio N: <|audio_bos|><|AUDIO|><|audio_eos|>\n".
CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if 'audio' in content or 'audio_url' in content or content['type'] == 'audio' %}"
    "{% set audio_count.value = audio_count.value + 1 %}"
    "Audio {{ audio_count.value }}: <|audio_bos|><|AUDIO|><|audio_eos|>\n"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

SPECIALS = ("<|endoftext|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>")


def _byte_vocab() -> dict[str, int]:
    """The 256 byte-level symbols of GPT-2 style BPE (every byte is one token; no merges), then the specials."""
    from tokenizers.pre_tokenizers import ByteLevel

    vocab = {symbol: i for i, symbol in enumerate(sorted(ByteLevel.alphabet()))}
    for token in SPECIALS:
        vocab[token] = len(vocab)
    return vocab


def build_tiny_processor():
    """A Qwen2AudioProcessor: Whisper features (128 mel bins, 16 kHz, 30 s) and a left-padding byte tokenizer."""
    from transformers import Qwen2AudioProcessor, Qwen2Tokenizer, WhisperFeatureExtractor

    tokenizer = Qwen2Tokenizer(
        vocab=_byte_vocab(), merges=[], eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None,
        padding_side="left",  # set here: assigning it later is lost on save/reload
        extra_special_tokens={"audio_token": "<|AUDIO|>", "audio_bos_token": "<|audio_bos|>",
                              "audio_eos_token": "<|audio_eos|>"},
    )
    tokenizer.add_tokens(["<|im_start|>"], special_tokens=True)  # else it splits into characters
    features = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000)
    return Qwen2AudioProcessor(feature_extractor=features, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)


def build_tiny_qwen2_audio(folder: Path, seed: int = 0, weight_std: float = 1.0) -> Path:
    """Save a tiny random Qwen2-Audio model and its processor into ``folder`` and return the folder.

    Sizes are minimal except ``max_source_positions`` = 1500, which the encoder needs for 30 s of mel frames.
    """
    import torch
    from transformers import (
        GenerationConfig, Qwen2AudioConfig, Qwen2AudioEncoderConfig, Qwen2AudioForConditionalGeneration, Qwen2Config,
    )

    folder = Path(folder)
    processor = build_tiny_processor()
    tok = processor.tokenizer
    eos_id, pad_id = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2AudioConfig(
        audio_config=Qwen2AudioEncoderConfig(
            num_mel_bins=128, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=32, d_model=16,
            max_source_positions=1500,
        ),
        text_config=Qwen2Config(
            vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, eos_token_id=eos_id, pad_token_id=pad_id, bos_token_id=None,
        ),
        audio_token_index=tok.convert_tokens_to_ids("<|AUDIO|>"),
    )
    torch.manual_seed(seed)
    model = Qwen2AudioForConditionalGeneration(config).eval()
    # With the default init (std 0.02) every window gets the same text; larger weights make the text depend on
    # the audio and the prompt, so tests can tell windows (and padding mistakes) apart.
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_(0.0, weight_std)
    model.generation_config = GenerationConfig(eos_token_id=eos_id, pad_token_id=pad_id, do_sample=False)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
