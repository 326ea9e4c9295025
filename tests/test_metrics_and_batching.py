"""Classification metrics against a hand computation; batch samplers; row subsampling."""

from __future__ import annotations

import datasets
import pytest
import torch

from mmkit.data.batching import EvalBatchSampler, TrainBatchSampler
from mmkit.config import load_config
from mmkit.data import Split, subsample
from mmkit.tasks.sentiment import SentimentTask


def test_classification_metrics_match_a_hand_computation():
    # labels: 0=neg 1=neu 2=pos
    y_true = [0, 0, 0, 1, 1, 2, 2, 2, 2, 2]
    y_pred = [0, 0, 1, 1, 2, 2, 2, 2, 0, 2]
    result = SentimentTask(load_config(None), None).compute_metrics(
        {"label": torch.tensor(y_true), "pred": torch.tensor(y_pred)}, ["neg", "neu", "pos"]
    )
    m = result.metrics
    assert m["accuracy"] == pytest.approx(7 / 10)
    # neg: tp 2, predicted 3, actual 3 -> p 2/3 r 2/3; neu: tp 1, predicted 2, actual 2 -> 1/2 1/2;
    # pos: tp 4, predicted 5, actual 5 -> 4/5 4/5
    f1 = {"neg": 2 / 3, "neu": 1 / 2, "pos": 4 / 5}
    for name, value in f1.items():
        assert m[f"{name}/f1"] == pytest.approx(value)
        assert m[f"{name}/precision"] == pytest.approx(value)
    assert m["macro_f1"] == pytest.approx(sum(f1.values()) / 3)
    assert m["weighted_f1"] == pytest.approx((3 * 2 / 3 + 2 * 1 / 2 + 5 * 4 / 5) / 10)
    assert m["pos/support"] == 5
    assert result.details["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [1, 0, 4]]


def test_train_batches_cover_every_row_once_and_group_lengths():
    lengths = [(i * 7919) % 97 + 3 for i in range(1000)]
    sampler = TrainBatchSampler(lengths, batch_size=32, seed=0)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert all(len(b) == 32 for b in batches[:-1]) and len(batches[-1]) == 1000 % 32
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    random_padded = sum(
        len(b) * max(lengths[i] for i in b) for b in TrainBatchSampler(lengths, 32, 0, group_by_length=False)
    )
    assert padded < 0.7 * random_padded  # grouping removes most of the padding
    # The order depends on (seed, epoch) only.
    assert list(TrainBatchSampler(lengths, 32, seed=0)) == batches
    sampler.set_epoch(1)
    assert list(sampler) != batches


def test_skip_next_resumes_mid_epoch_once():
    sampler = TrainBatchSampler(list(range(100)), batch_size=10, seed=3)
    full = list(sampler)
    sampler.skip_next(4)
    assert list(sampler) == full[4:]
    assert list(sampler) == full  # only the pass right after a resume skips


def test_eval_batches_longest_first():
    lengths = [5, 50, 7, 30, 1]
    assert list(EvalBatchSampler(lengths, 2)) == [[1, 3], [2, 0], [4]]


def test_subsample_is_the_hf_shuffle_then_first_rows():
    rows = datasets.Dataset.from_dict({"text": [f"r{i}" for i in range(50)], "label": [i % 2 for i in range(50)]})
    split = subsample(Split("train", "x.jsonl", rows), 10, seed=0)
    assert split.dataset["text"] == rows.shuffle(seed=0).select(range(10))["text"]
    # Errors still name the row of the original file.
    first = rows["text"].index(split.dataset["text"][0])
    assert split.where(0) == Split("train", "x.jsonl", rows).where(first)


def test_text_batches_pad_to_a_multiple_of_8_and_mask_the_padding(tiny_bert):
    # Few distinct batch shapes keep memory flat as the data grows (README, "Speed on a CPU", the --scaling table).
    from transformers import AutoTokenizer

    from mmkit.data.batching import PAD_TO_MULTIPLE_OF

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    collate = SentimentTask(load_config(None), None).collator(tokenizer)
    for texts in (["good"], ["good film", "a bad bad bad film , really bad bad bad bad"]):
        rows = [{**tokenizer(t), "labels": 0} for t in texts]
        batch = collate(rows)
        assert batch["input_ids"].shape[1] % PAD_TO_MULTIPLE_OF == 0
        assert batch["input_ids"].shape[1] < max(len(r["input_ids"]) for r in rows) + PAD_TO_MULTIPLE_OF
        assert batch["attention_mask"].sum(1).tolist() == [len(r["input_ids"]) for r in rows]
