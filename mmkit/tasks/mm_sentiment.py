"""Image + text sentiment (multimodal sentiment) on CLIP, BLIP-2, LLaVA-style and two-tower backbones.

The family (mmkit/multimodal/) turns a batch of images and texts into one feature vector per row; this task
puts a head on it (`model.head_hidden`, `model.head_dropout`), and the shared classification code judges it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmkit.backbones import resolve_model_path
from mmkit.config import Config
from mmkit.data import Split
from mmkit.errors import UserError
from mmkit.tasks.image_rows import ImageRowsTask


def encoder_class_for(model_cfg, source: str | None = None):
    from mmkit.multimodal import encoder_class, family_for

    base = source if source and (Path(source) / "config.json").is_file() else resolve_model_path(model_cfg.name_or_path)
    return encoder_class(family_for(model_cfg, base))


class MultimodalSentimentTask(ImageRowsTask):
    name = "mm_sentiment"
    uses_text = True

    def load_processor(self, cfg: Config, source: str):
        self._model_cfg = cfg.model  # the collator builds its inputs (prompt, fusion) from these settings
        return encoder_class_for(cfg.model).load_processor(cfg.model, source)

    def preprocess_fn(self, processor):
        return encoder_class_for(self._model_cfg).preprocess

    def prepare(self, split: Split, processor, cfg: Config, labels: list[str] | None):
        """Rows -> (image reference, text, label). Text longer than the model reads is a bad row, unless
        data.max_length asks for truncation (then it is cut there and counted)."""
        self._model_cfg = cfg.model
        encoder_cls = encoder_class_for(cfg.model)
        tokenizer = encoder_cls.text_tokenizer(processor)
        limit = cfg.data.max_length or encoder_cls.max_text_tokens(processor, cfg.model)
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
        if len(keep) < len(split):
            notes.append(f"{split.name}: skipped {len(split) - len(keep)} rows whose text is longer than {limit} tokens (data.on_bad_row=skip)")
        return dataset, notes

    def load_model(self, cfg: Config, source: str, labels: list[str] | None, processor):
        from mmkit.multimodal.classifier import FULL_WEIGHTS_FILE, MultimodalClassifier

        full_run = source is not None and (Path(source) / FULL_WEIGHTS_FILE).is_file()  # a fully fine-tuned run: build the base, then load
        base = resolve_model_path(cfg.model.name_or_path) if full_run else source
        encoder_cls = encoder_class_for(cfg.model, base)
        encoder = encoder_cls.load(cfg.model, base)
        model = MultimodalClassifier(encoder, len(labels), cfg.model.head_hidden, cfg.model.head_dropout)
        model.extra_trainable = encoder.extra_trainable_modules(cfg.model)
        if full_run:
            model.load_full_weights(source)
        return model

    def head_modules(self, model) -> list[str]:
        from mmkit.multimodal.classifier import HEAD_NAME

        return [HEAD_NAME, *model.extra_trainable]

    def predict(self, model, processor, cfg: Config, labels: list[str] | None, inputs: dict[str, Any]) -> Any:
        if not inputs.get("image"):
            raise UserError("this model reads an image and a text: pass --image PATH and the text")
        return predict_one(self, model, processor, cfg, labels, inputs["image"], inputs.get("text") or "")


def predict_one(task: ImageRowsTask, model, processor, cfg: Config, labels, image_path: str, text: str | None):
    """One image (+ text) through the same collator as training; label and probabilities."""
    import torch

    from mmkit.images import check_image

    problem = check_image(Path(image_path).expanduser())
    if problem:
        raise UserError(problem)
    task._model_cfg = cfg.model
    batch = task.collator(processor)([{"image": str(Path(image_path).expanduser()), "text": text, "labels": 0}])
    batch.pop("labels")
    batch = {k: v.to(model.device) for k, v in batch.items()}
    with torch.inference_mode():
        logits = model(**batch).logits[0]
    return task.label_and_probabilities(logits, labels)
