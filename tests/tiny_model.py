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

AUDIO_SPECIALS = {"audio_token": "<|AUDIO|>", "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>"}
VISION_SPECIALS = {"image_token": "<|IMAGE|>", "video_token": "<|VIDEO|>", "vision_bos_token": "<|vision_bos|>",
                   "vision_eos_token": "<|vision_eos|>"}


def build_byte_tokenizer(extra_specials: dict[str, str]):
    """A left-padding Qwen2Tokenizer over the 256 byte-level symbols (every byte one token, no merges), with
    <|endoftext|> (pad), <|im_end|> (eos), <|im_start|> and ``extra_specials`` (attribute name -> token)."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2Tokenizer

    vocab = {symbol: i for i, symbol in enumerate(sorted(ByteLevel.alphabet()))}
    for token in ("<|endoftext|>", "<|im_end|>", *extra_specials.values()):
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab, merges=[], eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None,
        padding_side="left",  # set here: assigning it later is lost on save/reload
        extra_special_tokens=dict(extra_specials),
    )
    tokenizer.add_tokens(["<|im_start|>"], special_tokens=True)  # else it splits into characters
    return tokenizer


def build_tiny_processor():
    """A Qwen2AudioProcessor: Whisper features (128 mel bins, 16 kHz, 30 s) and a left-padding byte tokenizer."""
    from transformers import Qwen2AudioProcessor, WhisperFeatureExtractor

    features = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000)
    return Qwen2AudioProcessor(feature_extractor=features, tokenizer=build_byte_tokenizer(AUDIO_SPECIALS),
                               chat_template=CHAT_TEMPLATE)


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


# Qwen2.5-Omni's chat template, reduced to system, text and audio items (an audio item has no "Audio N:" prefix).
OMNI_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'audio' or 'audio' in content %}<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_qwen2_5_omni(folder: Path, seed: int = 0, weight_std: float = 1.0) -> Path:
    """Save a tiny random Qwen2.5-Omni in the layout of ``Qwen/Qwen2.5-Omni-7B`` (config ``model_type``
    "qwen2_5_omni" holding a ``thinker_config``, weights under ``thinker.``) and return the folder.

    Its processor bundles image and video processors; transformers' video processor needs torchvision, so
    without torchvision the tokenizer, feature extractor and chat template are saved as separate files.
    """
    import json

    import torch
    from safetensors.torch import load_file, save_file
    from transformers import (
        GenerationConfig, Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration,
        WhisperFeatureExtractor,
    )
    from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import (
        Qwen2_5OmniAudioEncoderConfig, Qwen2_5OmniTextConfig, Qwen2_5OmniVisionEncoderConfig,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = build_byte_tokenizer({**AUDIO_SPECIALS, **VISION_SPECIALS})
    ids = tok.convert_tokens_to_ids
    eos_id, pad_id = ids("<|im_end|>"), ids("<|endoftext|>")
    thinker = Qwen2_5OmniThinkerConfig(
        audio_config=Qwen2_5OmniAudioEncoderConfig(
            num_mel_bins=128, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=32, d_model=16,
            output_dim=32, max_source_positions=1500,
        ),
        vision_config=Qwen2_5OmniVisionEncoderConfig(
            depth=1, hidden_size=16, num_heads=2, intermediate_size=32, out_hidden_size=32, fullatt_block_indexes=[0],
        ),
        text_config=Qwen2_5OmniTextConfig(
            vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, eos_token_id=eos_id, pad_token_id=pad_id,
            # multimodal rotary sections (time, height, width) must add up to head_dim / 2 = 4
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 1, 1]},
        ),
        audio_token_index=ids("<|AUDIO|>"), image_token_index=ids("<|IMAGE|>"), video_token_index=ids("<|VIDEO|>"),
        audio_start_token_id=ids("<|audio_bos|>"), audio_end_token_id=ids("<|audio_eos|>"),
        vision_start_token_id=ids("<|vision_bos|>"),  # read by the rotary index code, as in the hub config
        user_token_id=ids("u"),
    )
    torch.manual_seed(seed)
    model = Qwen2_5OmniThinkerForConditionalGeneration(thinker).eval()
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_(0.0, weight_std)
    model.generation_config = GenerationConfig(eos_token_id=eos_id, pad_token_id=pad_id, do_sample=False)
    model.save_pretrained(folder)

    # Re-shape into the full Omni checkpoint layout the hub serves.
    weights = folder / "model.safetensors"
    save_file({f"thinker.{k}": v.contiguous() for k, v in load_file(weights).items()}, weights,
              metadata={"format": "pt"})
    config = {"model_type": "qwen2_5_omni", "architectures": ["Qwen2_5OmniForConditionalGeneration"],
              "enable_audio_output": False, "thinker_config": json.loads(thinker.to_json_string())}
    (folder / "config.json").write_text(json.dumps(config, indent=2))

    features = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000)
    try:
        from transformers import Qwen2_5OmniProcessor, Qwen2VLImageProcessor
        from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

        processor = Qwen2_5OmniProcessor(image_processor=Qwen2VLImageProcessor(), video_processor=Qwen2VLVideoProcessor(),
                                         feature_extractor=features, tokenizer=tok, chat_template=OMNI_CHAT_TEMPLATE)
        processor.save_pretrained(folder)
    except ImportError:  # no torchvision: save the parts as the hub has them
        tok.save_pretrained(folder)
        features.save_pretrained(folder)
        (folder / "processor_config.json").write_text(json.dumps({"processor_class": "Qwen2_5OmniProcessor"}))
        (folder / "chat_template.jinja").write_text(OMNI_CHAT_TEMPLATE)
    return folder
