"""Token-level losses (NER, translation) that weigh every labelled token the same, whatever rows share its batch.

A model's own loss is the mean over the labelled tokens of its batch. With length-grouped batches that gives a
token in a batch of short lines many times the weight of a token in a batch of long sentences (CoNLL-2003's
batches of 32 hold 53 to 1,997 labelled sub-tokens), and training leans towards the short rows. Measured on CoNLL-2003 (MiniLM LoRA, 3,000 sentences, 3
epochs, one seed): test F1 0.800 with the batch mean, 0.816 with the weighting here, 0.814 with ungrouped
batches (2.4x slower). As in fairseq's summed losses and transformers' `num_items_in_batch`: a batch's loss is
its sum over labelled tokens divided by a constant, the mean labelled tokens per batch over the epoch, so the
epoch's mean loss is still the mean loss per token and the learning rate keeps its meaning.
"""

from __future__ import annotations

from mmkit.training.class_weights import IGNORE_INDEX


def labelled_weight(labels, class_weights=None):
    """A batch's labelled tokens (-100 left out), or with class weights the sum of their weights."""
    mask = labels != IGNORE_INDEX
    if class_weights is None:
        return mask.sum()
    return class_weights.to(labels.device)[labels[mask]].sum()


def mean_labelled_weight(train, batches: int, class_weights: list[float] | None = None) -> float | None:
    """The mean of `labelled_weight` over the `batches` batches of an epoch of `train`; None when its labels are
    one per row (classification: every batch holds the same number of rows, the mean is already fair)."""
    if len(train) == 0 or not isinstance(train[0]["labels"], list):
        return None
    weight = (lambda _: 1.0) if class_weights is None else class_weights.__getitem__
    total = sum(weight(t) for row in train["labels"] for t in row if t != IGNORE_INDEX)
    return total / batches if total else None
