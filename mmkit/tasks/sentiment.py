"""Sentiment (text sequence classification) on encoder (BERT-style) and decoder (GPT-style) backbones."""

from __future__ import annotations

from typing import Any

from mmkit.config import Config
from mmkit.data import Split, check_text_column
from mmkit.modeling import head_modules_of, load_pretrained, load_tokenizer
from mmkit.tasks.base import TaskData
from mmkit.tasks.classification import ClassificationTask

# Past this, attention cost grows fast and few sentiment texts need more; longer rows are truncated and
# counted in the start banner.
MAX_LENGTH_CAP = 512


def max_length_for(cfg: Config, tokenizer) -> int:
    if cfg.data.max_length:
        return cfg.data.max_length
    limit = getattr(tokenizer, "model_max_length", MAX_LENGTH_CAP) or MAX_LENGTH_CAP
    return min(int(limit), MAX_LENGTH_CAP)


class SentimentTask(ClassificationTask):
    name = "sentiment"
    peft_task_type = "SEQ_CLS"

    def load_data(self, cfg: Config, splits: dict[str, Split], labels: list[str] | None = None) -> TaskData:
        for split in splits.values():
            check_text_column(split, cfg.data.text_column, "data.text_column")
        names = self.settle_labels(cfg, splits, labels)
        return TaskData(splits=splits, labels=names)

    def load_processor(self, cfg: Config, source: str):
        return load_tokenizer(source, cfg.model)

    def prepare(self, split: Split, tokenizer, cfg: Config, labels: list[str] | None):
        max_length = max_length_for(cfg, tokenizer)
        text_column = cfg.data.text_column

        def tokenize(rows, indices):
            # Overflowing windows tell exactly which rows were longer than max_length; keep the first one.
            enc = tokenizer(
                rows[text_column], truncation=True, max_length=max_length, return_overflowing_tokens=True
            )
            sample_of = enc.pop("overflow_to_sample_mapping")
            keep = [i for i, s in enumerate(sample_of) if i == 0 or sample_of[i - 1] != s]
            out = {key: [values[i] for i in keep] for key, values in enc.items() if key != "overflowing_tokens"}
            out["labels"] = rows["labels"]
            out["row_index"] = indices
            out["length"] = [len(ids) for ids in out["input_ids"]]
            out["truncated"] = [sample_of.count(s) > 1 for s in range(len(indices))]
            return out

        dataset = split.dataset.map(
            tokenize,
            batched=True,
            with_indices=True,
            remove_columns=split.dataset.column_names,
            desc=f"tokenizing {split.name}",
        )
        truncated = sum(dataset["truncated"])
        notes = [f"{split.name}: {truncated} of {len(dataset)} rows truncated to {max_length} tokens"] if truncated else []
        return dataset.remove_columns("truncated"), notes

    def collator(self, tokenizer):
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def load_model(self, cfg: Config, source: str, labels: list[str] | None, tokenizer):
        from transformers import AutoModel, AutoModelForSequenceClassification

        from mmkit.backbones import resolve_model_path
        from mmkit.pooling import MeanPooledClassifier, pooling_for

        names = {"id2label": dict(enumerate(labels)), "label2id": {name: i for i, name in enumerate(labels)}}
        # The pooling is a property of the base checkpoint, also when `source` is a fully fine-tuned run.
        if pooling_for(cfg.model, resolve_model_path(cfg.model.name_or_path)) == "mean":
            encoder = load_pretrained(AutoModel, source, cfg.model, add_pooling_layer=False, **names)
            model = MeanPooledClassifier(encoder, len(labels))
            model.load_head_from(source)
            return model
        return load_pretrained(
            AutoModelForSequenceClassification, source, cfg.model, num_labels=len(labels), pad_token_id=tokenizer.pad_token_id, **names
        )

    def head_modules(self, model) -> list[str]:
        return head_modules_of(model)

    def predict(self, model, tokenizer, cfg: Config, labels: list[str] | None, inputs: dict[str, Any]) -> Any:
        import torch

        enc = tokenizer(inputs["text"], truncation=True, max_length=max_length_for(cfg, tokenizer), return_tensors="pt")
        enc = {k: v.to(model.device) for k, v in enc.items()}
        with torch.inference_mode():
            logits = model(**enc).logits[0]
        return self.label_and_probabilities(logits, labels)
