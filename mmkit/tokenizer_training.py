"""`mmkit tokenizer train|inspect`: train a BPE, WordPiece or Unigram tokenizer with the `tokenizers` library and
save it so that `AutoTokenizer.from_pretrained(DIR)` loads it (for `model.tokenizer` of a from-scratch run).

- bpe: byte-level BPE (GPT-2 style): no unknown tokens, any script, and its training is deterministic.
- wordpiece: BERT-style (`##` continuations).
- unigram: SentencePiece-style (`▁` marks word starts).
WordPiece and Unigram training are not bit-for-bit reproducible between runs; keep the trained folder.

CJK: every type makes each Han, kana and CJK punctuation / full-width character of the training text one token of
its own (a pre-tokenizer isolates them, as BERT does for Han): the natural unit of scripts written without spaces,
and the unit sacrebleu's zh BLEU counts. On the Tatoeba en-zh test targets, plain byte-level BPE (8k) cut 3.7% of
the Han characters into byte pieces and glued 62% into multi-character tokens, often across word boundaries
("的事情"); now 98.6% are one token and the rest (characters unseen in training) fall back to bytes.
Byte-level BPE also isolates Hangul syllables and, after training, adds the merges that complete every corpus CJK
character the trainer left in byte pieces (too rare for --min-frequency); the vocabulary stays within --vocab-size
by dropping the trainer's last merges. WordPiece and Unigram are character-based: every corpus character is in
their alphabet (so Hangul stays in words for WordPiece). A corpus without CJK text learns the same merges as before.
Round trip: bpe and unigram give decode(encode(text)) == text (the prefix space comes from a normalizer and the
decoder strips it; a text that already starts with a space loses that one); WordPiece drops spaces by design, and
its decoder puts none between two CJK characters. Characters unseen in training are <unk> for WordPiece/Unigram.
"""

from __future__ import annotations

import json
from pathlib import Path

from mmkit.errors import UserError

TYPES = ("bpe", "wordpiece", "unigram")
# Scripts written without spaces between words: Han (CJK radicals, ideographs, extensions A-H, compatibility),
# kana, bopomofo, CJK symbols and punctuation, CJK compatibility forms, half-width and full-width forms.
SPACELESS_RANGES = (
    (0x2E80, 0x2FDF), (0x2FF0, 0x303F), (0x3040, 0x30FF), (0x3100, 0x312F), (0x3190, 0x31FF), (0x3200, 0x33FF),
    (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0xFE30, 0xFE4F), (0xFF00, 0xFFEF), (0x1B000, 0x1B16F),
    (0x20000, 0x2FA1F), (0x30000, 0x323AF),
)
# Hangul (jamo, compatibility jamo, syllables): written with spaces between words.
HANGUL_RANGES = ((0x1100, 0x11FF), (0x3130, 0x318F), (0xA960, 0xA97F), (0xAC00, 0xD7FF))
CJK_RANGES = tuple(sorted(SPACELESS_RANGES + HANGUL_RANGES))
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


def is_cjk(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in CJK_RANGES)


def cjk_characters(texts: list[str]) -> list[str]:
    """The distinct CJK characters (see CJK_RANGES) of `texts`, in code point order."""
    return sorted({char for text in texts for char in text if is_cjk(char)})


def _char_class(ranges) -> str:
    """An Oniguruma (tokenizers.Regex) character class of the code point ranges."""
    return "[" + "".join(f"\\x{{{low:X}}}-\\x{{{high:X}}}" for low, high in ranges) + "]"


def _prefix_space():
    """A normalizer that puts a space before a text that does not start with one."""
    from tokenizers import Regex, normalizers

    # (A zero-width Replace(r"\A(?! )", " ") makes the trainer panic: prepend, then fold a doubled space.)
    return normalizers.Sequence([normalizers.Prepend(" "), normalizers.Replace(Regex(r"\A  "), " ")])


def _isolate(ranges):
    """A pre-tokenizer that makes each character of `ranges` a piece of its own (never merged with a neighbour)."""
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Split(Regex(_char_class(ranges)), behavior="isolated")


def build_tokenizer(kind: str, vocab_size: int, special_tokens: list[str], min_frequency: int = 2):
    """An untrained `tokenizers.Tokenizer` of `kind` and its trainer."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if kind not in TYPES:
        raise UserError(f"--type must be one of {', '.join(TYPES)}, got {kind!r}")
    roles = special_token_roles(special_tokens)
    unk = roles.get("unk_token")
    if kind == "bpe":
        tokenizer = Tokenizer(models.BPE())
        # A prefix space makes a sentence's first word the same token as the same word anywhere else; added by a
        # normalizer (ByteLevel's own add_prefix_space would put one before every isolated CJK character), to each
        # text between special tokens that does not start with one, and stripped again by the decoder.
        tokenizer.normalizer = _prefix_space()
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [_isolate(CJK_RANGES), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
        )
        tokenizer.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=special_tokens,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
    elif kind == "wordpiece":
        if not unk:
            raise UserError("wordpiece needs an unknown token in --special-tokens (<unk> or [UNK])")
        tokenizer = Tokenizer(models.WordPiece(unk_token=unk))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False, handle_chinese_chars=True)
        # BertNormalizer isolates Han only: kana and CJK punctuation too. WordPiece joins tokens with spaces when
        # decoding: none between two such characters.
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [_isolate(SPACELESS_RANGES), pre_tokenizers.BertPreTokenizer()]
        )
        cjk = _char_class(SPACELESS_RANGES)
        tokenizer.decoder = decoders.Sequence(
            [decoders.WordPiece(), decoders.Fuse(), decoders.Replace(Regex(f"(?<={cjk}) (?={cjk})"), "")]
        )
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=special_tokens)
    else:
        tokenizer = Tokenizer(models.Unigram())
        # The leading space (-> `▁`) comes from a normalizer: a first CJK character is not `▁我` but `▁`, `我`.
        tokenizer.normalizer = _prefix_space()
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [_isolate(CJK_RANGES), pre_tokenizers.Metaspace(prepend_scheme="never")]
        )
        tokenizer.decoder = decoders.Metaspace(prepend_scheme="always")  # drops the first `▁`'s space
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
    if kind == "bpe":
        tokenizer = _train_byte_level(texts, vocab_size, special_tokens, min_frequency)
    else:
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


def _train_byte_level(texts: list[str], vocab_size: int, special_tokens: list[str], min_frequency: int):
    """Byte-level BPE in which every CJK character of `texts` is one token: the trainer's merges, then merges that
    complete the characters it left in byte pieces (too rare for --min-frequency, or past the vocabulary's end).
    When those overflow --vocab-size, the trainer's last merges make room: BPE training is greedy, so its first N
    merges are exactly what training a smaller vocabulary gives (same ids too), and the result stays deterministic."""
    from tokenizers import Tokenizer, pre_tokenizers

    tokenizer, trainer = build_tokenizer("bpe", vocab_size, special_tokens, min_frequency)
    tokenizer.train_from_iterator(texts, trainer, length=len(texts))
    chars = cjk_characters(texts)
    if not chars:
        return tokenizer
    state = json.loads(tokenizer.to_str())
    vocab = state["model"]["vocab"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in state["model"]["merges"]]
    base = len(vocab) - len(merges)  # special tokens and the byte alphabet
    if sorted(vocab.values()) != list(range(len(vocab))) or [vocab[a + b] for a, b in merges] != list(
        range(base, len(vocab))
    ):
        raise RuntimeError("this tokenizers version numbers BPE merges differently; CJK completion needs an update")
    to_bytes = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    words = [list(to_bytes.pre_tokenize_str(char)[0][0]) for char in chars]
    keep = len(merges)
    while True:
        kept = {token: i for token, i in vocab.items() if i < base + keep}
        new_vocab, new_merges = _complete_characters(kept, merges[:keep], words)
        if len(new_vocab) <= vocab_size:
            break
        if keep == 0:
            raise UserError(
                f"--vocab-size {vocab_size} cannot hold the 256 bytes, {len(special_tokens)} special tokens and the "
                f"{len(chars):,} CJK characters of the corpus; use --vocab-size {len(new_vocab)} or more"
            )
        keep = max(0, keep - (len(new_vocab) - vocab_size))
    state["model"]["vocab"], state["model"]["merges"] = new_vocab, [list(pair) for pair in new_merges]
    completed = Tokenizer.from_str(json.dumps(state, ensure_ascii=False))
    wrong = [c for c, w in zip(chars, words) if len(completed.model.tokenize("".join(w))) != 1]
    if wrong:  # _apply_merges disagrees with the library
        raise RuntimeError(f"byte-level BPE left {len(wrong)} CJK characters in pieces, e.g. {wrong[:5]}")
    return completed


def _complete_characters(vocab: dict, merges: list[tuple], words: list[list[str]]):
    """`vocab` and `merges` plus merges (lowest priority) until each word (a character's bytes) is one token."""
    vocab, merges = dict(vocab), list(merges)
    ranks = {pair: rank for rank, pair in enumerate(merges)}
    for word in words:
        while len(pieces := _apply_merges(list(word), ranks)) > 1:
            pair = (pieces[0], pieces[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            vocab.setdefault(pair[0] + pair[1], len(vocab))
    return vocab, merges


def _apply_merges(symbols: list[str], ranks: dict) -> list[str]:
    """BPE on one word: merge the best-ranked adjacent pair (leftmost on ties) until none is in `ranks`."""
    while len(symbols) > 1:
        best = min(
            ((ranks[pair], i) for i, pair in enumerate(zip(symbols, symbols[1:])) if pair in ranks), default=None
        )
        if best is None:
            break
        i = best[1]
        symbols[i : i + 2] = [symbols[i] + symbols[i + 1]]
    return symbols


def cjk_tokens(tokenizer) -> int:
    """How many (non-special) tokens of a transformers tokenizer decode to exactly one CJK character."""
    special = set(tokenizer.all_special_ids)
    ids = [i for i in range(len(tokenizer)) if i not in special]
    return sum(len(text) == 1 and is_cjk(text) for text in tokenizer.batch_decode([[i] for i in ids]))


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
