"""Tiny random checkpoints and toy datasets, built by the tests (nothing is downloaded).

Each builder saves a checkpoint folder that loads with the Auto classes, exactly like a Hub checkpoint.
Tokenizers are built from fixed vocabularies (or deterministic byte-level BPE), so every run is identical.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

# Toy sentiment: the label is carried by one polar word in a sentence of neutral filler. Learnable by a
# tiny model in a few hundred steps; impossible to guess from length or position.
POSITIVE = ["good", "great", "lovely", "superb", "fine", "happy", "bright", "warm"]
NEGATIVE = ["bad", "awful", "dull", "poor", "sad", "broken", "cold", "grim"]
NOUNS = ["film", "meal", "room", "book", "phone", "song", "trip", "show", "game", "park"]
FILLER = ["the", "a", "was", "very", "really", "this", "that", "it", "is", "quite", "so", "and", "my", "our"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TOY_WORDS = POSITIVE + NEGATIVE + NOUNS + FILLER + ["not", "neutral", "ok"]


def toy_sentiment_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        word = rng.choice(POSITIVE if label else NEGATIVE)
        words = [rng.choice(FILLER) for _ in range(rng.randint(2, 9))]
        words.insert(rng.randint(0, len(words)), rng.choice(NOUNS))
        words.insert(rng.randint(0, len(words)), word)
        rows.append({"text": " ".join(words), "label": "positive" if label else "negative"})
    rng.shuffle(rows)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def toy_sentiment_splits(folder: Path, n_train: int = 320, n_eval: int = 80) -> dict[str, Path]:
    return {
        "train": write_jsonl(folder / "train.jsonl", toy_sentiment_rows(n_train, seed=1)),
        "validation": write_jsonl(folder / "validation.jsonl", toy_sentiment_rows(n_eval, seed=2)),
        "test": write_jsonl(folder / "test.jsonl", toy_sentiment_rows(n_eval, seed=3)),
    }


def build_tiny_bert(folder: Path, extra_words: list[str] = ()) -> Path:
    """A 2-layer BERT (hidden 64) with a WordPiece vocab of the toy words, single letters and digits."""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    letters = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-")
    vocab = list(dict.fromkeys(SPECIALS + TOY_WORDS + list(extra_words) + letters + ["##" + c for c in letters]))
    tokenizer = BertTokenizer(vocab={word: i for i, word in enumerate(vocab)}, do_lower_case=True)
    tokenizer.model_max_length = 128
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_gpt2(folder: Path, corpus: list[str] | None = None) -> Path:
    """A 2-layer GPT-2 (hidden 64) with a byte-level BPE tokenizer trained on `corpus` (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    corpus = corpus or [" ".join(TOY_WORDS)] * 8
    bpe = Tokenizer(models.BPE())
    # A prefix space makes a sentence's first word the same token as anywhere else (Ġgood).
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    tokenizer.model_max_length = 128
    config = GPT2Config(
        vocab_size=bpe.get_vocab_size(),
        n_embd=64,
        n_layer=2,
        n_head=2,
        n_positions=128,
        bos_token_id=0,
        eos_token_id=0,
    )
    import torch

    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
