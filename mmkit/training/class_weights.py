"""`train.class_weights`: per-class weights of the cross-entropy loss, for imbalanced label sets.

"balanced" is scikit-learn's `compute_class_weight("balanced")` (n_samples / (n_classes x count)) on the labels
the loss actually sees: one per training row for classification, one per labelled token for NER (the -100 of
padding, special tokens and continuation sub-words left out). The resolved weights are written to the run
(`class_weights.json`) so that evaluation and reports can say what the model was trained with.
"""

from __future__ import annotations

import math
from typing import Any

from mmkit.config import Config
from mmkit.errors import UserError

CLASS_WEIGHTS_FILE = "class_weights.json"
IGNORE_INDEX = -100
# Tasks whose loss is a cross-entropy over the label set (translation's is over the vocabulary).
TASKS_WITH_CLASSES = ("sentiment", "mm_sentiment", "image_classification", "ner")


def check_class_weights_setting(cfg: Config) -> None:
    """What can be refused from the config alone (before any data is read)."""
    setting = cfg.train.class_weights
    if setting == "none":
        return
    if cfg.task not in TASKS_WITH_CLASSES:
        raise UserError(
            f"train.class_weights applies to {', '.join(TASKS_WITH_CLASSES)}; task {cfg.task} has no classes to weight: "
            "remove train.class_weights"
        )
    if isinstance(setting, list):
        bad = [w for w in setting if not math.isfinite(w) or w <= 0]
        if bad:
            raise UserError(f"train.class_weights must all be positive numbers; got {bad[0]!r} in {setting}")


def resolve_class_weights(cfg: Config, labels: list[str] | None, train_labels) -> list[float] | None:
    """The weights in label-id order (None for train.class_weights=none). `train_labels`: the prepared training
    split's `labels` column (ints, or lists of ints for NER)."""
    setting = cfg.train.class_weights
    if setting == "none":
        return None
    check_class_weights_setting(cfg)
    labels = list(labels or [])
    if isinstance(setting, list):
        if len(setting) != len(labels):
            raise UserError(
                f"train.class_weights has {len(setting)} weights but there are {len(labels)} labels "
                f"({', '.join(labels)}); give one weight per label, in that order"
            )
        return [float(w) for w in setting]
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    ids = np.asarray([i for row in train_labels for i in (row if isinstance(row, list) else [row]) if i != IGNORE_INDEX], dtype=np.int64)
    counts = np.bincount(ids, minlength=len(labels))
    unseen = [name for name, count in zip(labels, counts) if count == 0]
    if unseen:
        what = "tokens" if cfg.task == "ner" else "rows"
        raise UserError(
            f"train.class_weights=balanced: no training {what} carry {', '.join(repr(n) for n in unseen)} in {cfg.data.train}, "
            f"so no balanced weight exists for them; give the weights as a list in label order ({', '.join(labels)})"
        )
    weights = compute_class_weight("balanced", classes=np.arange(len(labels)), y=ids)
    return [float(w) for w in weights]


def weighted_cross_entropy(logits, labels, weights):
    """Cross-entropy with class weights, the mean taken over the weights of the targets (as torch defines it):
    for NER, over every labelled token of the batch; -100 is ignored."""
    import torch.nn.functional as F

    logits = logits.float()
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.reshape(-1).to(logits.device), weight=weights.to(logits.device), ignore_index=IGNORE_INDEX
    )


def class_weights_record(cfg: Config, labels: list[str], weights: list[float]) -> dict[str, Any]:
    return {"setting": cfg.train.class_weights, "weights": dict(zip(labels, weights))}
