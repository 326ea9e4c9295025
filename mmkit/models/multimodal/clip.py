"""CLIP: the projected text and image embeddings, fused (concat, product, difference) for the head."""

from __future__ import annotations

import torch

from mmkit.errors import UserError
from mmkit.models.multimodal.base import FeatureEncoder, regex_under

FUSIONS = ("text", "image", "product", "difference")


class ClipEncoder(FeatureEncoder):
    family = "clip"
    towers = ("text", "vision")
    default_towers = ("text", "vision")

    def __init__(self, model, fusion: list[str] | None):
        super().__init__()
        self.model = model
        self.fusion = list(fusion or FUSIONS)
        unknown = [f for f in self.fusion if f not in FUSIONS]
        if unknown or not self.fusion:
            raise UserError(f"model.fusion {self.fusion} must be some of: {', '.join(FUSIONS)}")
        self.feature_dim = model.config.projection_dim * len(self.fusion)

    @classmethod
    def load(cls, model_cfg, source: str) -> "ClipEncoder":
        from transformers import CLIPModel

        from mmkit.models.loading import load_pretrained

        return cls(load_pretrained(CLIPModel, source, model_cfg), model_cfg.fusion)

    @classmethod
    def preprocess(cls, processor, images, texts, model_cfg):
        return dict(processor(text=texts, images=images, return_tensors="pt", padding=True, truncation=True))

    def lora_regex(self, towers):
        parts = {"text": "text_model", "vision": "vision_model"}
        return "|".join(regex_under(f"encoder.model.{parts[t]}", ("q_proj", "v_proj")) for t in towers)

    def forward(self, input_ids, attention_mask, pixel_values, **_):
        text = self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        image = self.model.get_image_features(pixel_values=pixel_values).pooler_output
        # Unit length, as CLIP compares them: the product is then the cosine's terms.
        text = torch.nn.functional.normalize(text, dim=-1)
        image = torch.nn.functional.normalize(image, dim=-1)
        parts = {"text": text, "image": image, "product": text * image, "difference": (text - image).abs()}
        return torch.cat([parts[name] for name in self.fusion], dim=-1)
