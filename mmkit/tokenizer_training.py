"""`mmkit tokenizer train|inspect`: train a BPE, WordPiece or Unigram tokenizer with the `tokenizers` library and
save it so that `AutoTokenizer.from_pretrained(DIR)` loads it (for `model.tokenizer` of a from-scratch run).

- bpe: byte-level BPE (GPT-2 style): no unknown tokens, any script, and its training is deterministic.
- wordpiece: BERT-style (CJK characters split one by one, `##` continuations).
- unigram: SentencePiece-style (`▁` marks word starts).
WordPiece and Unigram training are not bit-for-bit reproducible between runs; keep the trained folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from mmkit.errors import UserError

TYPES = ("bpe", "wordpiece", "unigram")
DEFAULT_SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>"]
# Which special token plays which role, by its usual spellings.
ROLES = {
    "pad_token": ("<pad>", "[PAD]", "<|pad|>"),
    "unk_token": ("<unk>", "[UNK]", "<|unk|>"),
    "bos_token": ("<s>", "[CLS]", "<|startoftext|>", "<|begin_of_text|>"),
    "eos_token": ("</s>", "[SEP]", "<|endoftext|>", "<|end_of_text|>"),
}


def read_texts(files: list[str], columns: list[str]) -> list[str]:
    """Lines of text files, or the `columns` of JSONL rows; every problem names the file and line."""
    texts: list[str] = []
    for name in files:
        path = Path(name)
        if not path.is_file():
            raise UserError(f"{path}: {'a folder, not a file' if path.is_dir() else 'not found'}; pass text or JSONL files")
        with path.open(encoding="utf-8") as handle:
            try:
                lines = list(handle)
            except UnicodeDecodeError as bad:
                raise UserError(f"{path}: not UTF-8 text (byte {bad.start}); save the file as UTF-8") from None
        found = 0
        for line_no, line in enumerate(lines, 1):
            if not line.strip():
                continue
            if path.suffix.lower() != ".jsonl":
                texts.append(line.rstrip("\n"))
                found += 1
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as bad:
                raise UserError(f"{path} line {line_no}: not valid JSON ({bad.msg}); fix or remove that line") from None
            values = [row.get(c) for c in columns] if isinstance(row, dict) else []
            values = [v for v in values if isinstance(v, str) and v.strip()]
            if not values:
                raise UserError(
                    f"{path} line {line_no}: no text in the columns {', '.join(columns)}; fix the row or pass --columns"
                )
            texts.extend(values)
            found += len(values)
        if not found:
            raise UserError(f"{path}: no text found; the tokenizer needs training text")
    return texts


def special_token_roles(special_tokens: list[str]) -> dict[str, str]:
    """pad / unk / bos / eos among the special tokens (eos falls back to bos: GPT-2's <|endoftext|> is both)."""
    roles = {}
    for role, spellings in ROLES.items():
        match = next((tok for tok in special_tokens if tok in spellings), None)
        if match:
            roles[role] = match
    if "eos_token" not in roles:
        raise UserError(
            f"--special-tokens {','.join(special_tokens)} has no end-of-sequence token; add one of {', '.join(ROLES['eos_token'])}"
        )
    return roles


def build_tokenizer(kind: str, vocab_size: int, special_tokens: list[str], min_frequency: int = 2):
    """An untrained `tokenizers.Tokenizer` of `kind` and its trainer."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if kind not in TYPES:
        raise UserError(f"--type must be one of {', '.join(TYPES)}, got {kind!r}")
    roles = special_token_roles(special_tokens)
    unk = roles.get("unk_token")
    if kind == "bpe":
        tokenizer = Tokenizer(models.BPE())
        # A prefix space makes a sentence's first word the same token as the same word anywhere else.
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=special_tokens,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
    elif kind == "wordpiece":
        if not unk:
            raise UserError("wordpiece needs an unknown token in --special-tokens (<unk> or [UNK])")
        tokenizer = Tokenizer(models.WordPiece(unk_token=unk))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False, handle_chinese_chars=True)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=special_tokens)
    else:
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=special_tokens, unk_token=unk)
    return tokenizer, trainer


def train_tokenizer(
    files: list[str],
    output: str,
    kind: str = "bpe",
    vocab_size: int = 8000,
    special_tokens: list[str] | None = None,
    columns: list[str] | None = None,
    min_frequency: int = 2,
    model_max_length: int = 512,
):
    """Train on `files`, save to `output` as a transformers tokenizer; return the loaded-back tokenizer."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    special_tokens = list(dict.fromkeys(special_tokens or DEFAULT_SPECIAL_TOKENS))
    if vocab_size <= len(special_tokens):
        raise UserError(f"--vocab-size {vocab_size} leaves no room beside {len(special_tokens)} special tokens")
    out = Path(output)
    if out.is_file() or (out.is_dir() and any(out.iterdir())):
        raise UserError(f"--output {out} exists and is not an empty folder; choose a new folder")
    texts = read_texts(files, columns or ["source", "target"])
    tokenizer, trainer = build_tokenizer(kind, vocab_size, special_tokens, min_frequency)
    tokenizer.train_from_iterator(texts, trainer, length=len(texts))
    roles = special_token_roles(special_tokens)
    extra = [tok for tok in special_tokens if tok not in roles.values()]
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, model_max_length=model_max_length, additional_special_tokens=extra or None, **roles
    )
    out.mkdir(parents=True, exist_ok=True)
    wrapped.save_pretrained(out)
    return AutoTokenizer.from_pretrained(out)


def inspect_rows(tokenizer, text: str) -> list[tuple[int, str]]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return list(zip(ids, tokenizer.convert_ids_to_tokens(ids)))


def describe(tokenizer, text: str) -> str:
    rows = inspect_rows(tokenizer, text)
    specials = ", ".join(f"{role}={getattr(tokenizer, role)}" for role in ROLES if getattr(tokenizer, role, None))
    lines = [f"vocabulary {len(tokenizer):,} tokens; special: {specials}", f"{len(rows)} tokens:"]
    lines += [f"  {token_id:>7}  {token!r}" for token_id, token in rows]
    lines.append(f"decoded: {tokenizer.decode([i for i, _ in rows])!r}")
    return "\n".join(lines)
