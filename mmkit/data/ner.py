"""NER data: CoNLL column files, tag schemes (BIO / BIOES), and words -> sub-token windows with labels.

Alignment rule: the first sub-token of each word carries the word's tag, the other sub-tokens and the special
tokens carry -100 (ignored by the loss and the metrics). A sentence longer than the model's limit is cut into
windows that overlap by `stride` tokens; every word is *owned* by exactly one window (the one where it sits
furthest from a cut), is labelled only there, and is predicted only there, so windows reassemble into one
prediction per word and nothing is silently truncated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mmkit.errors import UserError

IGNORE = -100


# --- CoNLL column files -------------------------------------------------------------------------------------
def read_conll(path: Path):
    """Sentences of a CoNLL file as a Dataset(tokens, ner_tags) and the 1-based first line of each sentence.

    One token per line with the tag in the last column (any columns in between, e.g. POS and chunk, are
    ignored); a blank line ends a sentence; `-DOCSTART-` lines are document markers, not sentences."""
    import datasets

    tokens: list[list[str]] = []
    tags: list[list[str]] = []
    lines: list[int] = []
    words: list[str] = []
    labels: list[str] = []
    start = 0
    try:
        handle = path.open(encoding="utf-8")
        with handle:
            for line_no, raw in enumerate(handle, 1):
                line = raw.strip()
                if not line or line.startswith("-DOCSTART-"):
                    if words:
                        tokens.append(words), tags.append(labels), lines.append(start)
                    words, labels = [], []
                    continue
                fields = line.split()
                if len(fields) < 2:
                    raise UserError(
                        f"{path} line {line_no}: {line!r} has no tag column; each line needs 'token ... tag' "
                        "separated by spaces or tabs"
                    )
                if not words:
                    start = line_no
                words.append(fields[0])
                labels.append(fields[-1])
    except UnicodeDecodeError as bad:
        raise UserError(f"{path}: not UTF-8 text (byte {bad.start}); save the file as UTF-8") from None
    if words:
        tokens.append(words), tags.append(labels), lines.append(start)
    if not tokens:
        raise UserError(f"{path}: no sentences found (one 'token tag' per line, blank lines between sentences)")
    return datasets.Dataset.from_dict({"tokens": tokens, "ner_tags": tags}), lines


# --- tag schemes ----------------------------------------------------------------------------------------------
def scheme_of(labels: list[str]) -> str:
    """BIOES (also written IOBES, with S-/E- or U-/L- tags) or BIO."""
    prefixes = {label.split("-", 1)[0] for label in labels if "-" in label}
    return "BIOES" if prefixes & {"E", "S", "L", "U"} else "BIO"


def scheme_violations(tags: list[str], scheme: str = "BIO") -> int:
    """How many tags break the scheme: an I- (or E-) that does not continue a B-/I- of the same type.

    (The rule is the same for BIO and BIOES; `scheme` is kept for the reader.)"""
    count = 0
    previous = "O"
    for tag in tags:
        prefix, _, kind = tag.partition("-")
        if prefix in ("I", "E", "L"):
            prev_prefix, _, prev_kind = previous.partition("-")
            if not (prev_kind == kind and prev_prefix in ("B", "I")):
                count += 1
        previous = tag
    return count


def entity_types(labels: list[str]) -> list[str]:
    return sorted({label.split("-", 1)[1] for label in labels if "-" in label})


def sort_tag_names(names: set[str]) -> list[str]:
    """O first, then each entity type's tags in scheme order (B, I, E, S): a stable, readable id order."""
    order = {"B": 0, "I": 1, "E": 2, "L": 2, "S": 3, "U": 3}
    rest = sorted(n for n in names if n != "O")
    rest.sort(key=lambda n: (n.partition("-")[2], order.get(n.partition("-")[0], 9)))
    return (["O"] if "O" in names else []) + rest


# --- words -> windows -----------------------------------------------------------------------------------------
@dataclass
class Window:
    input_ids: list[int]
    word_ids: list[int | None]  # the word each token belongs to (None: special token)
    owned: list[bool]  # per token: this window owns the word and the token is the word's first sub-token


def windows_for_words(tokenizer, words: list[str], max_length: int, stride: int) -> list[Window]:
    """Tokenize one pre-split sentence into overlapping windows and decide which window owns each word."""
    full = tokenizer(words, is_split_into_words=True, add_special_tokens=False)
    ids, word_ids = full["input_ids"], full.word_ids()
    prefix, suffix = special_tokens_around(tokenizer)
    room = max_length - len(prefix) - len(suffix)
    if room <= stride:
        raise UserError(f"ner.stride ({stride}) must be smaller than data.max_length minus special tokens ({room})")
    starts = [0]
    while starts[-1] + room < len(ids):
        starts.append(starts[-1] + room - stride)
    first_position: dict[int, int] = {}
    for position, wid in enumerate(word_ids):
        first_position.setdefault(wid, position)
    owner: dict[int, int] = {}  # word -> window where its first sub-token is furthest from a cut
    for wid, g in first_position.items():
        best = -1
        for w, s in enumerate(starts):
            e = min(s + room, len(ids))
            if s <= g < e and min(g - s, e - 1 - g) > best:
                best, owner[wid] = min(g - s, e - 1 - g), w
    windows = []
    for w, s in enumerate(starts):
        chunk, chunk_words = ids[s : s + room], word_ids[s : s + room]
        with_specials = prefix + list(chunk) + suffix
        token_words = [None] * len(prefix) + list(chunk_words) + [None] * len(suffix)
        owned = [False] * len(prefix)
        owned += [first_position[wid] == s + i and owner[wid] == w for i, wid in enumerate(chunk_words)]
        owned += [False] * len(suffix)
        windows.append(Window(list(with_specials), token_words, owned))
    return windows


def special_tokens_around(tokenizer) -> tuple[list[int], list[int]]:
    """The special token ids the tokenizer puts before and after a sequence ([CLS] / [SEP]; none for GPT-2)."""
    enc = tokenizer(["x"], is_split_into_words=True)
    word_ids = enc.word_ids()
    content = [i for i, wid in enumerate(word_ids) if wid is not None]
    ids = enc["input_ids"]
    return list(ids[: content[0]]), list(ids[content[-1] + 1 :])


def labels_for_window(window: Window, word_tags: list[int], continuation: list[int] | None = None) -> list[int]:
    """Token labels: the word's tag on owned first sub-tokens, -100 everywhere else.

    With `continuation` (tag id -> the tag its later sub-tokens carry, B-X -> I-X), a word's later sub-tokens in
    the window that owns it are labelled too, as `run_ner --label_all_tokens` does."""
    labels, owner_seen = [], set()
    for wid, own in zip(window.word_ids, window.owned):
        if own:
            owner_seen.add(wid)
            labels.append(word_tags[wid])
        elif continuation is not None and wid in owner_seen:
            labels.append(continuation[word_tags[wid]])
        else:
            labels.append(IGNORE)
    return labels


def continuation_tags(names: list[str]) -> list[int]:
    """Tag id -> the tag a word's later sub-tokens carry: B-X -> I-X (the HF `run_ner` rule), others unchanged."""
    return [names.index(f"I-{n[2:]}") if n.startswith("B-") and f"I-{n[2:]}" in names else i for i, n in enumerate(names)]


def word_index_for_window(window: Window) -> list[int]:
    """Per token: the index of the word it predicts (owned first sub-tokens only), -1 elsewhere."""
    return [wid if own else -1 for wid, own in zip(window.word_ids, window.owned)]
