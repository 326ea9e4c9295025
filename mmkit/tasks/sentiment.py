"""Sentiment (text sequence classification) on encoder (BERT-style), decoder (GPT-style) and seq2seq backbones."""

from __future__ import annotations

from typing import Any

from mmkit.config import Config
from mmkit.data import Split, check_text_column
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
    head = "sequence-classification"
    pipeline_tag = "text-classification"
    hub_tags = ("sentiment-analysis", "text-classification")

    def load_data(self, splits: dict[str, Split], labels: list[str] | None = None) -> TaskData:
        for split in splits.values():
            check_text_column(split, self.cfg.data.text_column, "data.text_column")
        names = self.settle_labels(splits, labels)
        return TaskData(splits=splits, labels=names)

    def prepare(self, split: Split, tokenizer, labels: list[str] | None):
        max_length = max_length_for(self.cfg, tokenizer)
        text_column = self.cfg.data.text_column

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

    def predict(self, model, tokenizer, labels: list[str] | None, inputs: dict[str, Any]) -> Any:
        import torch

        enc = tokenizer(inputs["text"], truncation=True, max_length=max_length_for(self.cfg, tokenizer), return_tensors="pt")
        enc = {k: v.to(model.device) for k, v in enc.items()}
        with torch.inference_mode():
            logits = model(**enc).logits[0]
        return self.label_and_probabilities(logits, labels)
