"""Toy NER data: names from fixed lists among filler words. The tag depends on the word (and, for two-word
places, on its neighbour), so a tiny model can learn it; rare names split into several sub-tokens."""

from __future__ import annotations

import random
from pathlib import Path

from builders import write_jsonl

PEOPLE = ["alice", "bob", "carol", "dmitri", "zoltanova", "quillfeather"]  # the last two: several sub-tokens
PLACES = ["paris", "rome", "oslo", "lima", "kyoto"]
TWO_WORD_PLACES = [("new", "york"), ("san", "jose")]
FILLER = ["the", "a", "was", "very", "this", "that", "it", "is", "and", "my", "our", "film", "trip", "park"]
NER_WORDS = PEOPLE[:4] + PLACES + [w for pair in TWO_WORD_PLACES for w in pair] + ["visited", "met", "in"]
CHINESE = list("张伟李娜北京上海去了在见到的很好今天我们")


def toy_ner_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        tokens, tags = [], []
        for _ in range(rng.randint(1, 3)):
            for _ in range(rng.randint(0, 3)):
                tokens.append(rng.choice(FILLER)), tags.append("O")
            kind = rng.random()
            if kind < 0.4:
                tokens.append(rng.choice(PEOPLE)), tags.append("B-PER")
            elif kind < 0.75:
                tokens.append(rng.choice(PLACES)), tags.append("B-LOC")
            else:
                first, second = rng.choice(TWO_WORD_PLACES)
                tokens += [first, second]
                tags += ["B-LOC", "I-LOC"]
            tokens.append(rng.choice(["visited", "met", "in"])), tags.append("O")
        rows.append({"tokens": tokens, "ner_tags": tags})
    return rows


def toy_ner_splits(folder: Path) -> dict[str, Path]:
    return {
        "train": write_jsonl(folder / "train.jsonl", toy_ner_rows(400, 1)),
        "validation": write_jsonl(folder / "validation.jsonl", toy_ner_rows(80, 2)),
        "test": write_jsonl(folder / "test.jsonl", toy_ner_rows(80, 3)),
    }


def toy_chinese_rows(n: int, seed: int) -> list[dict]:
    """Character-level Chinese NER: 张伟 / 李娜 are people, 北京 / 上海 places."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        chars, tags = [], []
        for _ in range(rng.randint(1, 2)):
            chars += list(rng.choice(["我们", "今天", "很好"]))
            tags += ["O", "O"]
            name, kind = rng.choice([("张伟", "PER"), ("李娜", "PER"), ("北京", "LOC"), ("上海", "LOC")])
            chars += list(name)
            tags += [f"B-{kind}", f"I-{kind}"]
            chars += list(rng.choice(["去了", "在", "见到"]))
            tags += ["O"] * (len(chars) - len(tags))
        rows.append({"tokens": chars, "ner_tags": tags})
    return rows
