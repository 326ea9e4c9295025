"""LLaVA-style: the image's patch features, projected, take the place of the `<image>` tokens in the prompt;
the language model's state at the last real token is the feature (it has read the image and the text)."""

from __future__ import annotations

from mmkit.models.families import family_of
from mmkit.errors import UserError
from mmkit.models.multimodal.base import FeatureEncoder, check_placeholders, last_token_states, regex_under

PROJECTOR = "multi_modal_projector"


class LlavaEncoder(FeatureEncoder):
    family = "llava"
    towers = ("language",)
    default_towers = ("language",)
    supports_quantization = True

    def __init__(self, model):
        super().__init__()
        self.model = model  # LlavaModel: vision tower, projector, language model (no LM head)
        self.feature_dim = model.config.text_config.hidden_size

    @classmethod
    def load(cls, model_cfg, source: str) -> "LlavaEncoder":
        from transformers import LlavaForConditionalGeneration

        from mmkit.models.loading import load_pretrained

        # Checkpoints are saved as LlavaForConditionalGeneration; the LM head is dropped after loading. Under
        # model.quantization the projector stays in model.dtype, so model.train_projector can train it.
        return cls(load_pretrained(LlavaForConditionalGeneration, source, model_cfg, unquantized=(PROJECTOR,)).model)

    @classmethod
    def prompts(cls, processor, texts, model_cfg) -> list[str]:
        image_token = processor.image_token
        user_texts = [model_cfg.prompt.format(text=text) for text in texts]
        if getattr(processor, "chat_template", None):
            return [
                processor.apply_chat_template(
                    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": t}]}],
                    add_generation_prompt=True,
                )
                for t in user_texts
            ]
        return [f"USER: {image_token}\n{t} ASSISTANT:" for t in user_texts]

    @classmethod
    def preprocess(cls, processor, images, texts, model_cfg):
        batch = dict(processor(images=images, text=cls.prompts(processor, texts, model_cfg), return_tensors="pt", padding=True))
        check_placeholders(batch["input_ids"], processor.image_token_id, cls.image_features_per_image(processor, batch), "LLaVA")
        return {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "pixel_values")}

    @staticmethod
    def image_features_per_image(processor, batch) -> int:
        """How many features the vision tower gives one image: its patches (+ CLS unless dropped)."""
        if not getattr(processor, "patch_size", None):
            raise UserError("LLaVA: the processor has no patch_size, so it cannot expand the image token; set it in processor_config.json")
        height, width = batch["pixel_values"].shape[-2:]
        count = (height // processor.patch_size) * (width // processor.patch_size) + (processor.num_additional_image_tokens or 0)
        return count - (processor.vision_feature_select_strategy == "default")

    def lora_regex(self, towers):
        names = family_of(self.model.config.text_config.model_type).lora_targets or ("q_proj", "v_proj")
        return regex_under("encoder.model.language_model", names)

    def extra_trainable_modules(self, model_cfg) -> list[str]:
        return [PROJECTOR] if model_cfg.train_projector else []

    def forward(self, input_ids, attention_mask, pixel_values, **_):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values).last_hidden_state
        return last_token_states(hidden, attention_mask)
