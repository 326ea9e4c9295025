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


def build_tiny_marian(folder: Path, tokenizer_folder: Path) -> Path:
    """A 1-layer Marian checkpoint (d_model 32, random weights) with the given tokenizer, saved like a Hub one."""
    from transformers import AutoTokenizer, MarianConfig, MarianMTModel

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    config = MarianConfig(
        vocab_size=len(tokenizer), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id, scale_embedding=True,
    )
    folder.mkdir(parents=True, exist_ok=True)
    MarianMTModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
