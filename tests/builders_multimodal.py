"""Tiny image(+text) checkpoints and a synthetic task that only a model using BOTH modalities can solve.

The fusion task: each image is a noisy red or blue square, each text holds "good" or "bad" among filler
words, and the label is positive when (red, good) or (blue, bad), negative otherwise (an XOR). The image
alone or the text alone says nothing about the label, so accuracy far above 0.5 proves the model fuses them.
"""

from __future__ import annotations

import random
from pathlib import Path

from builders import FILLER, NOUNS, SPECIALS, write_jsonl

COLOURS = {"red": (200, 40, 40), "blue": (40, 60, 200)}
WORDS = ["good", "bad"]
IMAGE_SIZE = 32
VOCAB_WORDS = WORDS + FILLER + NOUNS + ["photo", "feels", "of", "negative", "positive", "user", "assistant", ":"]


def square_image(colour: str, rng: random.Random):
    """A noisy square of one colour, brightness varying per image (so the colour, not the pixels, matters)."""
    from PIL import Image

    base = COLOURS[colour]
    scale = rng.uniform(0.7, 1.1)
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE))
    image.putdata(
        [tuple(max(0, min(255, int(c * scale + rng.randint(-25, 25)))) for c in base) for _ in range(IMAGE_SIZE * IMAGE_SIZE)]
    )
    return image


def draw_square(path: Path, colour: str, rng: random.Random) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    square_image(colour, rng).save(path)


def fusion_rows(folder: Path, n: int, seed: int, prefix: str) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        colour, word = ("red", "blue")[i % 2], WORDS[(i // 2) % 2]
        positive = (colour == "red") == (word == "good")
        words = [rng.choice(FILLER) for _ in range(rng.randint(1, 4))]
        words.insert(rng.randint(0, len(words)), word)
        words.insert(rng.randint(0, len(words)), rng.choice(NOUNS))
        image = f"images/{prefix}-{i}.png"
        draw_square(folder / image, colour, rng)
        rows.append({"image": image, "text": " ".join(words), "label": "positive" if positive else "negative"})
    rng.shuffle(rows)
    return rows


def fusion_splits(folder: Path, n_train: int = 192, n_eval: int = 64) -> dict[str, Path]:
    return {
        name: write_jsonl(folder / f"{name}.jsonl", fusion_rows(folder, n, seed, name))
        for name, n, seed in (("train", n_train, 1), ("validation", n_eval, 2), ("test", n_eval, 3))
    }


def colour_folder(folder: Path, per_label: int = 48, seed: int = 0, names: dict[str, str] | None = None) -> Path:
    """An image-classification folder root/<colour>/*.png (or root/<names[colour]>/*.png)."""
    rng = random.Random(seed)
    for colour in COLOURS:
        for i in range(per_label):
            draw_square(folder / (names or {}).get(colour, colour) / f"{i}.png", colour, rng)
    return folder


# --- tokenizers ------------------------------------------------------------------------------------------


def word_tokenizer(extra_special: list[str] = (), bos="<s>", eos="</s>", pad="<pad>", unk="<unk>", **kwargs):
    """A fast word-level tokenizer over the toy vocabulary (decoder style: bos ... ; eos/pad/unk)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = list(dict.fromkeys([pad, unk, bos, eos, *extra_special, *VOCAB_WORDS]))
    model = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token=unk))
    model.pre_tokenizer = pre_tokenizers.WhitespaceSplit()  # LLaVA prompts put a newline before the text
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=model, bos_token=bos, eos_token=eos, pad_token=pad, unk_token=unk, **kwargs)
    tokenizer.model_max_length = 64
    return tokenizer


def _vision_config(cls, **extra):
    return cls(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=IMAGE_SIZE, patch_size=8, **extra,
    )


def _image_processor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )


# --- checkpoints -----------------------------------------------------------------------------------------


def build_tiny_clip(folder: Path) -> Path:
    import torch
    from transformers import BertTokenizer, CLIPConfig, CLIPModel, CLIPProcessor, CLIPTextConfig, CLIPVisionConfig

    vocab = list(dict.fromkeys(SPECIALS + VOCAB_WORDS))
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    tokenizer.model_max_length = 32
    text = CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=32, eos_token_id=tokenizer.sep_token_id, pad_token_id=0, bos_token_id=tokenizer.cls_token_id,
    )
    config = CLIPConfig(text_config=text.to_dict(), vision_config=_vision_config(CLIPVisionConfig).to_dict(), projection_dim=32)
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    CLIPProcessor(image_processor=_image_processor(), tokenizer=tokenizer).save_pretrained(folder)
    return folder


# Zero-shot: label names the tiny tokenizers know ("red" and "blue" are not in the toy vocabulary).
ZERO_SHOT_NAMES = {"red": "film", "blue": "song"}
ZERO_SHOT_TRAIN_TEMPLATES = ("a photo of a {label}.", "the {label}", "{label}", "my {label} photo", "this is a {label}")


def build_zero_shot_clip(folder: Path, steps: int = 60) -> Path:
    """A tiny CLIP taught (briefly, contrastively against label prompts) that red squares are a "film" and blue
    ones a "song": zero-shot classification then works on colour folders named by ZERO_SHOT_NAMES, with
    templates it has not seen. A random CLIP's zero-shot predictions are mostly one class: a weak test."""
    import torch
    from transformers import CLIPModel, CLIPProcessor

    build_tiny_clip(folder)
    model, processor = CLIPModel.from_pretrained(folder), CLIPProcessor.from_pretrained(folder)
    rng = random.Random(5)
    colours = [colour for colour in COLOURS for _ in range(64)]
    pixels = processor(images=[square_image(colour, rng) for colour in colours], return_tensors="pt")["pixel_values"]
    names = [ZERO_SHOT_NAMES[colour] for colour in COLOURS]
    targets = torch.tensor([names.index(ZERO_SHOT_NAMES[colour]) for colour in colours])
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    unit = lambda x: torch.nn.functional.normalize(x, dim=-1)  # noqa: E731
    model.train()
    for step in range(steps):
        template = ZERO_SHOT_TRAIN_TEMPLATES[step % len(ZERO_SHOT_TRAIN_TEMPLATES)]
        prompts = processor(text=[template.replace("{label}", name) for name in names], return_tensors="pt", padding=True)
        rows = torch.randperm(len(colours))[:32]
        text = unit(model.get_text_features(**prompts).pooler_output)
        image = unit(model.get_image_features(pixel_values=pixels[rows]).pooler_output)
        loss = torch.nn.functional.cross_entropy(model.logit_scale.exp() * image @ text.T, targets[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval().save_pretrained(folder)
    return folder


def build_tiny_blip2(folder: Path) -> Path:
    import torch
    from transformers import (
        Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, Blip2QFormerConfig, Blip2VisionConfig,
        BlipImageProcessor, OPTConfig,
    )

    tokenizer = word_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    queries = 4
    text = OPTConfig(
        vocab_size=len(tokenizer), hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=2,
        word_embed_proj_dim=32, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    vision = _vision_config(Blip2VisionConfig, initializer_range=0.02)  # the default 1e-10 is degenerate
    qformer = Blip2QFormerConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, encoder_hidden_size=32,
        vocab_size=len(tokenizer),
    )
    config = Blip2Config(
        vision_config=vision.to_dict(), qformer_config=qformer.to_dict(), text_config=text.to_dict(),
        num_query_tokens=queries, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(0)
    model = Blip2ForConditionalGeneration(config)
    with torch.no_grad():
        model.query_tokens.normal_(0, 0.02)  # zero-initialised by default: every query would be the same
    model.save_pretrained(folder)
    processor = Blip2Processor(
        image_processor=BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
        tokenizer=tokenizer, num_query_tokens=queries,
    )
    processor.save_pretrained(folder)
    return folder


def t5_tokenizer():
    """A T5 tokenizer (Unigram, Metaspace) over a fixed toy vocabulary: deterministic, no training, no
    sentencepiece file. Like Flan-T5's: no bos token, `</s>` ends every text, `<pad>` is id 0."""
    from transformers import T5Tokenizer

    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces = [("\u2581" + word, -1.0) for word in dict.fromkeys(VOCAB_WORDS)]
    tokenizer = T5Tokenizer(vocab=specials + pieces, extra_ids=0)
    tokenizer.model_max_length = 64
    return tokenizer


def build_tiny_blip2_t5(folder: Path) -> Path:
    """BLIP-2 with an encoder-decoder language model (T5), shaped like Salesforce/blip2-flan-t5-xl."""
    import torch
    from transformers import (
        Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, Blip2QFormerConfig, Blip2VisionConfig,
        BlipImageProcessor, T5Config,
    )

    tokenizer = t5_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    queries = 4
    text = T5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=16, d_ff=64, num_layers=2, num_decoder_layers=1, num_heads=2,
        feed_forward_proj="gated-gelu", tie_word_embeddings=False,  # as Flan-T5 (T5 v1.1)
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,  # T5 has no bos: its decoder starts from <pad>
    )
    vision = _vision_config(Blip2VisionConfig, initializer_range=0.02)  # the default 1e-10 is degenerate
    qformer = Blip2QFormerConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, encoder_hidden_size=32,
        vocab_size=len(tokenizer),
    )
    config = Blip2Config(
        vision_config=vision.to_dict(), qformer_config=qformer.to_dict(), text_config=text.to_dict(),
        num_query_tokens=queries, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    assert not config.use_decoder_only_language_model
    torch.manual_seed(0)
    model = Blip2ForConditionalGeneration(config)
    with torch.no_grad():
        model.query_tokens.normal_(0, 0.02)  # zero-initialised by default: every query would be the same
    model.save_pretrained(folder)
    processor = Blip2Processor(
        image_processor=BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
        tokenizer=tokenizer, num_query_tokens=queries,
    )
    processor.save_pretrained(folder)
    return folder


def build_tiny_llava(folder: Path) -> Path:
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tokenizer = word_tokenizer(extra_special=["<image>"], extra_special_tokens={"image_token": "<image>"})
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    config = LlavaConfig(
        vision_config=_vision_config(CLIPVisionConfig).to_dict(), text_config=text.to_dict(),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default", vision_feature_layer=-1, projector_hidden_act="gelu",
    )
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    LlavaProcessor(
        image_processor=_image_processor(), tokenizer=tokenizer, patch_size=8,
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
    ).save_pretrained(folder)
    return folder


def build_tiny_vit(folder: Path) -> Path:
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    ViTModel(_vision_config(ViTConfig), add_pooling_layer=False).save_pretrained(folder)
    ViTImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(folder)
    return folder
