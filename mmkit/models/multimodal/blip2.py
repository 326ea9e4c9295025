"""BLIP-2: the Q-Former reads the image into query tokens; the language model reads them with the text.

Features: the mean of the Q-Former query outputs (the image as BLIP-2 summarises it) concatenated with what
the language model made of the image and the text read together:
- a decoder-only LM (OPT: blip2-opt-*): its state at the last real token, the one that has read everything;
- an encoder-decoder LM (T5 / Flan-T5: blip2-flan-t5-*): its *encoder* reads the image tokens and the text,
  and the mean of the encoder states over the real tokens is the feature (the decoder is not run).
"""

from __future__ import annotations

import torch

from mmkit.errors import UserError
from mmkit.models.families import family_of
from mmkit.models.multimodal.base import FeatureEncoder, check_placeholders, last_token_states, regex_under


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of each row's states over its real tokens (padding left out, whichever side it is on)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


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
        if not processor.num_query_tokens:  # the processor would not insert the image tokens at all
            raise UserError(
                "BLIP-2: the processor has no num_query_tokens, so its rows would carry no image tokens and the model "
                "would ignore the image; set num_query_tokens (the model config's, e.g. 32) in processor_config.json"
            )
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
            config = self.model.config
            names = family_of(config.text_config.model_type).lora_targets or ("q_proj", "v_proj")  # T5: q, v
            # An encoder-decoder LM runs only its encoder here: adapters on its decoder would never see a gradient
            # (dead weights in the adapter, and unused parameters break DDP's gradient reduction).
            prefix = "encoder.model.language_model" + ("" if config.use_decoder_only_language_model else ".encoder")
            regexes.append(regex_under(prefix, names))
        return "|".join(regexes)

    def forward(self, input_ids, attention_mask, pixel_values, **_):
        model = self.model
        image_embeds = model.vision_model(pixel_values=pixel_values).last_hidden_state
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        queries = model.query_tokens.expand(image_embeds.shape[0], -1, -1)
        query_output = model.qformer(
            query_embeds=queries, encoder_hidden_states=image_embeds, encoder_attention_mask=image_mask
        ).last_hidden_state
        # The collator checked this already (preprocess); inputs built elsewhere must not scatter the queries
        # into the wrong places or leave the image out without a word.
        check_placeholders(input_ids, model.config.image_token_id, queries.shape[1], "BLIP-2")
        language = model.language_model
        embeds = language.get_input_embeddings()(input_ids)
        image_tokens = (input_ids == model.config.image_token_id).unsqueeze(-1)
        embeds = embeds.masked_scatter(image_tokens, model.language_projection(query_output).to(embeds.dtype))
        if model.config.use_decoder_only_language_model:
            # The base decoder (no LM head): the vocabulary projection is not needed for a classifier. Causal
            # attention: only the last real token has read the image and the whole text.
            hidden = language.base_model(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
            return torch.cat([query_output.mean(1), last_token_states(hidden, attention_mask)], dim=-1)
        # T5 / Flan-T5: the encoder reads image tokens and text bidirectionally (what BLIP-2's decoder would
        # cross-attend to). No position is a summary here: every state has seen the whole sequence, T5 has no
        # [CLS]-like token, and its last real token is the `</s>` appended to every text, trained only as an end
        # marker. The masked mean over the real tokens (image queries and text, padding excluded) keeps what all
        # of them carry; it is also what Sentence-T5 found best for T5 encoder embeddings.
        hidden = language.get_encoder()(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
        return torch.cat([query_output.mean(1), masked_mean(hidden, attention_mask)], dim=-1)
