"""Two towers, as the seeds draw it: any text encoder + any image encoder -> pooled features, concatenated.

This is how a user pairs a strong text checkpoint (here the embedded MiniLM) with a vision checkpoint of
their choice. Set `model.text` and `model.vision` instead of `model.name_or_path`.
"""

from __future__ import annotations

import torch

from mmkit.models.families import auto_targets, family_of, resolve_model_path
from mmkit.models.multimodal.base import FeatureEncoder, regex_under


class TwoTowerProcessor:
    """The text tower's tokenizer and the image tower's image processor, saved side by side in one folder."""

    def __init__(self, tokenizer, image_processor):
        self.tokenizer = tokenizer
        self.image_processor = image_processor

    def save_pretrained(self, folder) -> None:
        self.tokenizer.save_pretrained(folder)
        self.image_processor.save_pretrained(folder)


class TwoTowerEncoder(FeatureEncoder):
    family = "two_tower"
    towers = ("text", "vision")
    default_towers = ("text", "vision")

    def __init__(self, text, vision, mean_pool_text: bool):
        super().__init__()
        self.text = text
        self.vision = vision
        self.mean_pool_text = mean_pool_text
        self.feature_dim = text.config.hidden_size + vision.config.hidden_size

    @classmethod
    def load(cls, model_cfg, source: str | None = None) -> "TwoTowerEncoder":
        from transformers import AutoModel

        from mmkit.models.loading import load_pretrained
        from mmkit.models.pooling import is_sentence_embedding

        text_source = source or resolve_model_path(model_cfg.text)
        text = load_pretrained(AutoModel, text_source, model_cfg, what="text tower", add_pooling_layer=False)
        vision = load_pretrained(AutoModel, model_cfg.vision, model_cfg, what="vision tower", add_pooling_layer=False)
        mean = model_cfg.pooling == "mean" or (model_cfg.pooling == "auto" and is_sentence_embedding(text_source))
        return cls(text, vision, mean_pool_text=mean)

    @classmethod
    def load_processor(cls, model_cfg, source: str, run=None):
        from transformers import AutoImageProcessor

        from mmkit.models.loading import load_tokenizer, pretrained_kwargs

        # A finished run saved both parts in its folder; a new run reads each tower's own.
        text_source, vision_source = (str(run), str(run)) if run else (resolve_model_path(model_cfg.text), model_cfg.vision)
        image_processor = AutoImageProcessor.from_pretrained(vision_source, **pretrained_kwargs(model_cfg, with_dtype=False))
        return TwoTowerProcessor(load_tokenizer(text_source, model_cfg), image_processor)

    @classmethod
    def preprocess(cls, processor, images, texts, model_cfg):
        batch = dict(processor.tokenizer(texts, return_tensors="pt", padding=True, truncation=True))
        batch["pixel_values"] = processor.image_processor(images, return_tensors="pt")["pixel_values"]
        return batch

    def lora_regex(self, towers):
        regexes = []
        for tower in towers:
            module = getattr(self, tower)
            regexes.append(regex_under(f"encoder.{tower}", auto_targets(module, family_of(module.config.model_type))))
        return "|".join(regexes)

    def forward(self, input_ids, attention_mask, pixel_values, token_type_ids=None, **_):
        states = self.text(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        if self.mean_pool_text:  # sentence-embedding checkpoints are read by their mean token state
            mask = attention_mask.unsqueeze(-1).to(states.dtype)
            text = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        else:
            text = states[:, 0]
        image = self.vision(pixel_values=pixel_values).last_hidden_state[:, 0]  # the [CLS] patch
        return torch.cat([text, image], dim=-1)
