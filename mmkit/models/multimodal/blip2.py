"""BLIP-2: the Q-Former reads the image into query tokens; the language model reads them with the text.

Features: the mean of the Q-Former query outputs (the image as BLIP-2 summarises it) concatenated with the
language model's state at the last real token (the image and the text read together).
"""

from __future__ import annotations

import torch

from mmkit.models.families import family_of
from mmkit.models.multimodal.base import FeatureEncoder, check_placeholders, last_token_states, regex_under


class Blip2Encoder(FeatureEncoder):
    family = "blip2"
    towers = ("qformer", "language")
    default_towers = ("qformer", "language")

    def __init__(self, model):
        super().__init__()
        self.model = model
        config = model.config
        self.feature_dim = config.qformer_config.hidden_size + config.text_config.hidden_size

    @classmethod
    def load(cls, model_cfg, source: str) -> "Blip2Encoder":
        from transformers import Blip2ForConditionalGeneration

        from mmkit.models.loading import load_pretrained

        return cls(load_pretrained(Blip2ForConditionalGeneration, source, model_cfg))

    @classmethod
    def max_text_tokens(cls, processor, model_cfg) -> int:
        return super().max_text_tokens(processor, model_cfg) - (processor.num_query_tokens or 0)

    @classmethod
    def preprocess(cls, processor, images, texts, model_cfg):
        prompts = [model_cfg.prompt.format(text=text) for text in texts]
        batch = dict(processor(images=images, text=prompts, return_tensors="pt", padding=True))
        image_token_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token.content if hasattr(processor.image_token, "content") else processor.image_token)
        check_placeholders(batch["input_ids"], image_token_id, processor.num_query_tokens, "BLIP-2")
        return batch

    def lora_regex(self, towers):
        regexes = []
        if "qformer" in towers:
            regexes.append(regex_under("encoder.model.qformer", ("query", "value")))
        if "language" in towers:
            lm_type = self.model.config.text_config.model_type
            names = family_of(lm_type).lora_targets or ("q_proj", "v_proj")
            regexes.append(regex_under("encoder.model.language_model", names))
        return "|".join(regexes)

    def forward(self, input_ids, attention_mask, pixel_values, **_):
        model = self.model
        image_embeds = model.vision_model(pixel_values=pixel_values).last_hidden_state
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        queries = model.query_tokens.expand(image_embeds.shape[0], -1, -1)
        query_output = model.qformer(
            query_embeds=queries, encoder_hidden_states=image_embeds, encoder_attention_mask=image_mask
        ).last_hidden_state
        language = model.language_model
        embeds = language.get_input_embeddings()(input_ids)
        image_tokens = (input_ids == model.config.image_token_id).unsqueeze(-1)
        embeds = embeds.masked_scatter(image_tokens, model.language_projection(query_output).to(embeds.dtype))
        # The base decoder (no LM head): the vocabulary projection is not needed for a classifier.
        hidden = language.base_model(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
        return torch.cat([query_output.mean(1), last_token_states(hidden, attention_mask)], dim=-1)
