"""A tiny random BLIP image-text-matching checkpoint, laid out as Salesforce/blip-itm-base-coco: the
BlipForImageTextRetrieval architecture, a BlipProcessor with a BlipImageProcessor and a lower-casing
BertTokenizer whose vocabulary ends in [DEC] (BLIP's bos) and [ENC]; hidden 32, 2 layers, 32-pixel images."""

from __future__ import annotations

from pathlib import Path

from builders import SPECIALS
from builders_multimodal import IMAGE_SIZE, VOCAB_WORDS


def blip_tokenizer():
    from transformers import BertTokenizer

    vocab = list(dict.fromkeys(SPECIALS + VOCAB_WORDS)) + ["[DEC]", "[ENC]"]
    tokenizer = BertTokenizer(
        vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True, bos_token="[DEC]",
        extra_special_tokens=["[ENC]"],
    )
    tokenizer.model_max_length = 32
    return tokenizer


def build_tiny_blip(folder: Path, hidden: int = 32, seed: int = 0) -> Path:
    """`hidden=64` for 4-bit tests: bitsandbytes' CPU kernels quantize in blocks of 64 input features."""
    import torch
    from transformers import BlipConfig, BlipForImageTextRetrieval, BlipImageProcessor, BlipProcessor

    tokenizer = blip_tokenizer()
    # Text initializer 0.1, not the usual 0.02: at 0.02 a tiny random text encoder's [CLS] state barely changes with
    # the image or the words (measured: 0.12 and 0.02 against a norm of 5.7); at 0.1 both come through.
    text = dict(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=32, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        sep_token_id=tokenizer.sep_token_id, initializer_range=0.1,
    )
    vision = dict(
        hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2, num_attention_heads=2, image_size=IMAGE_SIZE,
        patch_size=8, initializer_range=0.02,  # the default 1e-10 (class and position embeddings) is degenerate
    )
    config = BlipConfig(text_config=text, vision_config=vision, projection_dim=hidden, image_text_hidden_size=hidden)
    config.architectures = ["BlipForImageTextRetrieval"]
    torch.manual_seed(seed)
    BlipForImageTextRetrieval(config).save_pretrained(folder)
    processor = BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}), tokenizer=tokenizer,
    )
    processor.save_pretrained(folder)
    return folder
