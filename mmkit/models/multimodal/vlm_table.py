"""The per-architecture facts of the generic image-text-to-text family (mmkit/models/multimodal/vlm.py).

Plain data (no torch import): `mmkit.models.multimodal` reads the model types from here to pick the family.
Module paths are relative to the inner model (`XForConditionalGeneration.model`), as the encoder holds it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Architecture:
    name: str  # for messages
    processor: str  # the transformers processor class (built without its video part)
    inputs: tuple[str, ...]  # model inputs beyond input_ids, attention_mask, pixel_values
    language: str  # the language model (LoRA's default tower)
    vision: str  # the vision tower (lora.towers: vision)
    projector: tuple[str, ...]  # module names trained in full with model.train_projector (PEFT name suffixes)
    vision_targets: tuple[str, ...]  # the vision tower's attention projections
    language_targets: tuple[str, ...] = ("q_proj", "v_proj")
    # Dynamic resolution: (min_pixels, max_pixels) defaults that keep an image to a few hundred tokens
    # (Qwen2-VL: one token per 28x28 pixels, so 200,704 pixels = 256 tokens); None: fixed tokens per image/tile.
    pixel_limits: tuple[int, int] | None = None
    tokenizer_image_token: bool = False  # count placeholders by the tokenizer's image token (Gemma 3)
    nested_images: bool = False  # the processor takes one list of images per row (Idefics3, SmolVLM, Gemma 3)


_QWEN = dict(
    inputs=("image_grid_thw", "mm_token_type_ids"), language="model.language_model", vision="model.visual.blocks",
    vision_targets=("qkv",),
)
ARCHITECTURES: dict[str, Architecture] = {
    "qwen2_vl": Architecture("Qwen2-VL", "Qwen2VLProcessor", projector=("merger",), pixel_limits=(56 * 56, 256 * 28 * 28), **_QWEN),
    "qwen2_5_vl": Architecture("Qwen2.5-VL", "Qwen2_5_VLProcessor", projector=("merger",), pixel_limits=(56 * 56, 256 * 28 * 28), **_QWEN),
    # Qwen3-VL: 16-pixel patches (32x32 per token) and DeepStack mergers feeding early LM layers.
    "qwen3_vl": Architecture(
        "Qwen3-VL", "Qwen3VLProcessor", projector=("merger", "deepstack_merger_list"), pixel_limits=(64 * 64, 256 * 32 * 32), **_QWEN,
    ),
    "llava_next": Architecture(
        "LLaVA-NeXT", "LlavaNextProcessor", inputs=("image_sizes",), language="model.language_model",
        vision="model.vision_tower", projector=("multi_modal_projector",), vision_targets=("q_proj", "v_proj"),
    ),
    "llava_onevision": Architecture(
        "LLaVA-OneVision", "LlavaOnevisionProcessor", inputs=("image_sizes",), language="model.language_model",
        vision="model.vision_tower", projector=("multi_modal_projector",), vision_targets=("q_proj", "v_proj"),
    ),
    "idefics3": Architecture(
        "Idefics3", "Idefics3Processor", inputs=("pixel_attention_mask",), language="model.text_model",
        vision="model.vision_model", projector=("connector",), vision_targets=("q_proj", "v_proj"), nested_images=True,
    ),
    "smolvlm": Architecture(
        "SmolVLM", "SmolVLMProcessor", inputs=("pixel_attention_mask",), language="model.text_model",
        vision="model.vision_model", projector=("connector",), vision_targets=("q_proj", "v_proj"), nested_images=True,
    ),
    "gemma3": Architecture(
        "Gemma 3", "Gemma3Processor", inputs=("token_type_ids",), language="model.language_model",
        vision="model.vision_tower", projector=("multi_modal_projector",), vision_targets=("q_proj", "v_proj"),
        tokenizer_image_token=True, nested_images=True,
    ),
}
