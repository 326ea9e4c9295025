"""Toy translation data: a fixed word-for-word dictionary over short random sentences, so the target is a
deterministic function of the source that a tiny model learns in a few hundred steps. Test sentences are
held back: none of them occurs in the training split."""

from __future__ import annotations

import random
from pathlib import Path

from builders import write_jsonl

DICTIONARY = {
    "the": "die", "cat": "katze", "dog": "hund", "sees": "sieht", "big": "gross", "small": "klein",
    "red": "rot", "eats": "frisst", "fish": "fisch", "bird": "vogel", "and": "und", "house": "haus",
    "runs": "rennt", "green": "gruen", "tree": "baum", "old": "alt",
}
WORDS = sorted(DICTIONARY)


def toy_pairs(n: int, seed: int, exclude: set[str] = frozenset()) -> list[dict]:
    rng = random.Random(seed)
    rows, seen = [], set(exclude)
    while len(rows) < n:
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 6))]
        source = " ".join(words)
        if source in seen:
            continue
        seen.add(source)
        rows.append({"source": source, "target": " ".join(DICTIONARY[w] for w in words)})
    return rows


def toy_translation_splits(folder: Path, n_train: int = 800, n_eval: int = 40) -> dict[str, Path]:
    train = toy_pairs(n_train, seed=1)
    held_back = {row["source"] for row in train}
    validation = toy_pairs(n_eval, seed=2, exclude=held_back)
    test = toy_pairs(n_eval, seed=3, exclude=held_back | {row["source"] for row in validation})
    return {
        "train": write_jsonl(folder / "train.jsonl", train),
        "validation": write_jsonl(folder / "validation.jsonl", validation),
        "test": write_jsonl(folder / "test.jsonl", test),
    }
