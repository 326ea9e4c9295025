"""Image + text sentiment (multimodal sentiment) on CLIP, BLIP, BLIP-2, LLaVA-style, image-text-to-text
(Qwen2-VL, SmolVLM, ...) and two-tower backbones.

The family (mmkit/multimodal/) turns a batch of images and texts into one feature vector per row; this task
puts a head on it (`model.head_hidden`, `model.head_dropout`), and the shared classification code judges it.
"""

from __future__ import annotations

import sys
from typing import Any

from mmkit.config import Config
from mmkit.data import Split
from mmkit.errors import UserError
from mmkit.tasks.image_rows import ImageRowsTask


class MultimodalSentimentTask(ImageRowsTask):
    name = "mm_sentiment"
    head = "image-text-classification"
    uses_text = True
    hub_tags = ("multimodal", "sentiment-analysis", "image-text")  # the Hub has no pipeline for image+text classification
    example_input = {"text": "what a day", "image": "photo.jpg"}

    def __init__(self, cfg: Config, spec):
        super().__init__(cfg, spec)
        self.encoder_class = spec.encoder_class  # the family: how a batch of images + texts becomes inputs

    def batch_inputs(self, processor, images, texts, model_cfg):
        return self.encoder_class.preprocess(processor, images, texts, model_cfg)

    def prepare(self, split: Split, processor, labels: list[str] | None):
        """Rows -> (image reference, text, label). Text longer than the model reads is a bad row, unless
        data.max_length asks for truncation (then it is cut there and counted)."""
        cfg = self.cfg
        encoder_cls = self.encoder_class
        tokenizer = encoder_cls.text_tokenizer(processor)
        limit = self.text_limit(processor)
        image_col, text_col = cfg.data.image_column, cfg.data.text_column
        texts, lengths, keep, truncated = [], [], [], 0
        encoded = tokenizer(list(split.dataset[text_col]), add_special_tokens=False, return_offsets_mapping=True)
        for i, (text, offsets) in enumerate(zip(split.dataset[text_col], encoded["offset_mapping"])):
            if len(offsets) > limit:
                if cfg.data.max_length:
                    text = text[: offsets[limit - 1][1]]
                    truncated += 1
                elif cfg.data.on_bad_row == "skip":
                    continue
                else:
                    raise UserError(
                        f"{split.where(i)}: the text is {len(offsets)} tokens, more than the {limit} this model reads; "
                        "shorten it, set data.max_length to truncate long texts, or data.on_bad_row=skip"
                    )
            keep.append(i)
            texts.append(text)
            lengths.append(min(len(offsets), limit))
        dataset = split.dataset.select(keep) if len(keep) < len(split) else split.dataset
        dataset = dataset.select_columns([image_col, "labels"]).rename_columns({image_col: "image"} if image_col != "image" else {})
        dataset = dataset.add_column("text", texts).add_column("length", lengths).add_column("row_index", keep)
        notes = []
        if truncated:
            notes.append(f"{split.name}: {truncated} of {len(split)} texts truncated to {limit} tokens (data.max_length)")
        if split.name == "train":  # dynamic-resolution models: how many tokens the images become
            notes += [f"{split.name}: {note}" for note in encoder_cls.image_notes(processor, dataset["image"])]
        if len(keep) < len(split):
            notes.append(f"{split.name}: skipped {len(split) - len(keep)} rows whose text is longer than {limit} tokens (data.on_bad_row=skip)")
        return dataset, notes

    def text_limit(self, processor) -> int:
        """Text tokens per row: data.max_length (refused above what the model reads), else what it reads."""
        cfg = self.cfg
        reads = self.encoder_class.max_text_tokens(processor, cfg.model)
        if cfg.data.max_length and cfg.data.max_length > reads:
            raise UserError(
                f"data.max_length={cfg.data.max_length} is more than this model reads ({reads} text tokens); "
                f"set data.max_length={reads} or less, or leave it empty for the model's limit"
            )
        return cfg.data.max_length or reads

    def predict(self, model, processor, labels: list[str] | None, inputs: dict[str, Any]) -> Any:
        if not inputs.get("image"):
            raise UserError("this model reads an image and a text: pass --image PATH and the text")
        text = inputs.get("text")
        if not isinstance(text, str) or not text.strip():
            raise UserError('the text is empty; this model reads an image and a text: mmkit predict RUN "the text" --image PATH')
        # As in training (prepare): the text is cut where the model stops reading, and the user is told.
        limit = self.text_limit(processor)
        tokenizer = self.encoder_class.text_tokenizer(processor)
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]
        if len(offsets) > limit:
            print(f"note: the text is {len(offsets)} tokens; the model read the first {limit}", file=sys.stderr, flush=True)
            text = text[: offsets[limit - 1][1]]
        return self.predict_one(model, processor, labels, inputs["image"], text)
