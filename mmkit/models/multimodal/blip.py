"""BLIP (v1): the image-text matching (ITM) feature, as BLIP's own ITM head reads it.

The ITM text encoder (a BERT with a cross-attention block in every layer) reads the text while attending to
the ViT's patch states; its [CLS] state is what `BlipForImageTextRetrieval.itm_head` classifies "matches /
does not match" from, so it is the fused image+text summary a sentiment head needs. The contrastive path
(`use_itm_head=False`) encodes text and image apart and would leave the fusion to the head.

Checkpoints: Salesforce/blip-itm-{base,large}-{coco,flickr}. A captioning checkpoint
(blip-image-captioning-*) has a text *decoder* and no ITM encoder: refused, not trained from random weights.
"""

from __future__ import annotations

import torch

from mmkit.errors import UserError
from mmkit.models.multimodal.base import FeatureEncoder, regex_under

# The parts whose weights must come from the checkpoint (the ITM/contrastive heads are not used).
_NEEDED = ("vision_model.", "text_encoder.")


class BlipEncoder(FeatureEncoder):
    family = "blip"
    towers = ("text", "vision")
    # The text encoder's self- and cross-attention are where image and text meet; the ViT stays frozen unless
    # lora.towers asks for it.
    default_towers = ("text",)
    supports_quantization = True

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.feature_dim = model.config.text_config.hidden_size

    @classmethod
    def load(cls, model_cfg, source: str) -> "BlipEncoder":
        from transformers import BlipForImageTextRetrieval

        from mmkit.models.loading import load_pretrained

        model, missing = load_pretrained(BlipForImageTextRetrieval, source, model_cfg, loading_info=True)
        random = sorted(k for k in missing if k.startswith(_NEEDED))
        if random:
            raise UserError(
                f"{source} has no BLIP image-text matching encoder (e.g. {random[0]} is missing): mmkit's BLIP feature "
                "is the ITM encoder's; use an ITM checkpoint such as Salesforce/blip-itm-base-coco"
            )
        return cls(model)

    @classmethod
    def max_text_tokens(cls, processor, model_cfg) -> int:
        return super().max_text_tokens(processor, model_cfg) - 2  # [CLS] and [SEP] take two of the positions

    @classmethod
    def preprocess(cls, processor, images, texts, model_cfg):
        batch = dict(processor(images=images, text=texts, return_tensors="pt", padding=True, truncation=True))
        batch.pop("token_type_ids", None)
        return batch

    def lora_regex(self, towers):
        regexes = []
        if "text" in towers:  # self-attention and cross-attention (over the image) alike: `...attention.self.query`
            regexes.append(regex_under("encoder.model.text_encoder", ("query", "value")))
        if "vision" in towers:  # BLIP's ViT fuses q, k, v in one Linear
            regexes.append(regex_under("encoder.model.vision_model", ("qkv",)))
        return "|".join(regexes)

    def forward(self, input_ids, attention_mask, pixel_values, **_):
        model = self.model
        pixel_values = pixel_values.to(model.vision_model.embeddings.patch_embedding.weight.dtype)
        image = model.vision_model(pixel_values=pixel_values).last_hidden_state
        # transformers builds this mask on the CPU whatever the device; here it follows the image states.
        image_mask = torch.ones(image.shape[:-1], dtype=torch.long, device=image.device)
        text = model.text_encoder(
            input_ids=input_ids, attention_mask=attention_mask, encoder_hidden_states=image,
            encoder_attention_mask=image_mask,
        ).last_hidden_state
        return text[:, 0]
