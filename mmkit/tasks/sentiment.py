"""Sentiment (text sequence classification) on encoder (BERT-style), decoder (GPT-style) and seq2seq backbones."""

from __future__ import annotations

import sys
from typing import Any

from mmkit.config import Config
from mmkit.data import Split, check_text_column
from mmkit.errors import UserError
from mmkit.tasks.base import TaskData
from mmkit.tasks.classification import ClassificationTask

# Past this, attention cost grows fast and few sentiment texts need more; longer rows are truncated and
# counted in the start banner.
MAX_LENGTH_CAP = 512


# A tokenizer's model_max_length from here up means "not set" (transformers' default is int(1e30)).
UNSET_TOKENIZER_LIMIT = 1_000_000
# Families whose position ids start after the padding index: max_position_embeddings - (pad id + 1) are usable.
_POSITIONS_AFTER_PAD = ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "mpnet", "longformer", "data2vec-text")


def max_length_for(cfg: Config, tokenizer, spec=None) -> int:
    """Tokens per example: data.max_length (refused when the model cannot read that many), else the model's
    limit, at most MAX_LENGTH_CAP. `spec`: the task's model spec, whose base config knows the position limit."""
    limit = model_length_limit(cfg, tokenizer, spec)
    if cfg.data.max_length:
        if limit is not None and cfg.data.max_length > limit[0]:
            raise UserError(
                f"data.max_length={cfg.data.max_length} is more than this model reads ({limit[0]} tokens: {limit[1]}); "
                f"set data.max_length={limit[0]} or less, or leave it empty for the model's limit"
            )
        return cfg.data.max_length
    return min(limit[0], MAX_LENGTH_CAP) if limit is not None else MAX_LENGTH_CAP


def model_length_limit(cfg: Config, tokenizer, spec=None) -> tuple[int, str] | None:
    """The most tokens the model reads, with where that number comes from; None when nothing says."""
    found = []
    announced = getattr(tokenizer, "model_max_length", None)
    if isinstance(announced, int) and 0 < announced < UNSET_TOKENIZER_LIMIT:
        found.append((announced, "the tokenizer's model_max_length"))
    if cfg.model.init == "scratch" and not cfg.model.name_or_path:
        found.append((cfg.model.config.max_positions, "model.config.max_positions"))
    elif spec is not None:
        positions = _position_limit(getattr(spec, "config", None))
        if positions is not None:
            found.append(positions)
    if not found:
        return None
    limit = min(value for value, _ in found)
    return limit, " and ".join(source for value, source in found if value == limit)


def _position_limit(config) -> tuple[int, str] | None:
    """Absolute position embeddings in a transformers config (`n_positions` for GPT-2), if it has any."""
    if config is None or getattr(config, "position_biased_input", True) is False:  # DeBERTa-v2/3: relative only
        return None
    names = ("n_positions", "max_position_embeddings")  # GPT-2 names it n_positions (the other is an alias)
    if all(getattr(config, name, None) is None for name in names) and hasattr(config, "get_text_config"):
        config = config.get_text_config()
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            if getattr(config, "model_type", None) in _POSITIONS_AFTER_PAD:
                value -= (getattr(config, "pad_token_id", None) or 0) + 1
            return value, f"{name} in the model's config.json"
    return None


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
        max_length = max_length_for(self.cfg, tokenizer, self.spec)
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

        from mmkit.data.batching import PAD_TO_MULTIPLE_OF

        return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=PAD_TO_MULTIPLE_OF)

    def predict(self, model, tokenizer, labels: list[str] | None, inputs: dict[str, Any]) -> Any:
        import torch

        text = inputs.get("text")
        if not isinstance(text, str) or not text.strip():
            raise UserError("the text to predict for is empty; pass a text, e.g. mmkit predict RUN \"a warm, funny film\"")
        enc = tokenizer(text, truncation=True, max_length=max_length_for(self.cfg, tokenizer, self.spec), return_tensors="pt")
        note_truncation(tokenizer, text, enc["input_ids"].shape[1] - tokenizer.num_special_tokens_to_add())
        enc = {k: v.to(model.device) for k, v in enc.items()}
        with torch.inference_mode():
            logits = model(**enc).logits[0]
        return self.label_and_probabilities(logits, labels)


def note_truncation(tokenizer, text: str, read: int) -> None:
    """Say on stderr when the model read only the first `read` tokens of `text` (special tokens not counted)."""
    total = len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
    if total > read:
        print(f"note: the text is {total} tokens; the model read the first {max(read, 0)}", file=sys.stderr, flush=True)
