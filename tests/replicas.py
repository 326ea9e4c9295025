"""Tiny random replicas of the Hub checkpoints mmkit supports, one per model family, for conformance tests.

Each replica copies what loading code sees of the real checkpoint: the `model_type` and saved architecture, the
tokenizer / processor class named in its files, the special-token convention (which of bos / eos / unk / pad
exist, their layout), chat templates and multimodal processor settings; only the sizes are tiny (hidden 32,
2 layers, 128 positions; images 32 px, patch 8) and the weights random. A folder built here loads with
`AutoConfig / AutoTokenizer / AutoProcessor / AutoModel*.from_pretrained(folder)` fully offline, like the real one.

Everything is deterministic, the same bytes on every run and machine: weights come from `torch.manual_seed(0)`
then `redraw_weights` (integer random numbers, so no CPU-kernel differences in the last bits);
vocabularies come from fixed lists (WordPiece, Unigram) or from `learn_bpe` below (a pure-Python BPE over the
toy corpus, ties broken by the pair's text); Marian's SentencePiece models are trained by `sentencepiece` with the
BPE algorithm on one thread (integer pair counts only, no floating-point EM; see `_train_spm`).

Every tokenizer covers the toy corpus (`toy_corpus()`): all the words of the test builders get a piece of their
own, except the two names that builders_ner keeps rare on purpose, which split into sub-word pieces; letters,
digits and punctuation are single pieces; byte-level and byte-fallback tokenizers never produce unk at all.

Not replicated: the SentencePiece `.model` files next to tokenizer.json (T5, XLM-R, DeBERTa-v3, mBART, NLLB, Llama,
Gemma: transformers 5 loads tokenizer.json first, and save_pretrained of a tokenizer built from a vocabulary writes
only that); opus-mt's spm files are Unigram models, these are BPE ones (MarianTokenizer reads both the same way);
NLLB's Precompiled nmt_nfkc table comes from the installed sentencepiece (same rule, not the real file's bytes);
real vocab sizes, sizes and learned weights. Hub-name rules (transformers' MODEL_IDS_TO_TOKENIZERS_BACKEND, e.g.
"salesforce/blip2-opt-*" -> TokenizersBackend) match the Hub id, so they never fire for a local folder.

Usage: `build_replica("llama", tmp_path / "llama")` returns the folder. `REPLICAS` is the table.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import builders
import builders_multimodal
import builders_ner
import builders_translation

# --- the toy corpus every tokenizer covers ------------------------------------------------------------------

PROMPT_WORDS = ["translate", "english", "german", "chinese", "to", "user", "assistant", "label", "text", "image"]
PUNCTUATION = list(".,!?'\"-:;()")
LOWER = list("abcdefghijklmnopqrstuvwxyz")
UPPER = [c.upper() for c in LOWER]
DIGITS = list("0123456789")
RARE_WORDS = builders_ner.PEOPLE[4:]  # builders_ner keeps these out of whole-word vocabularies: they split
CHINESE_TARGET_WORDS = ["猫", "狗", "看见", "大", "小", "红", "吃", "鱼", "鸟", "和", "房子", "跑", "绿", "树", "老"]


@dataclass(frozen=True)
class Corpus:
    words: tuple[str, ...]  # every toy word: none may tokenize to unk
    whole: tuple[str, ...]  # the words that get a piece of their own (all but RARE_WORDS)
    chars: tuple[str, ...]  # single characters that are pieces: letters (both cases), digits, punctuation, CJK

    def sentences(self) -> list[str]:
        """Training text for SentencePiece: each whole word, a line of all of them, a line of every character."""
        return [*self.whole, " ".join(self.whole), " ".join(self.chars)]


@lru_cache(maxsize=None)
def toy_corpus() -> Corpus:
    """Every word the test builders put in toy data (sentiment, NER incl. Chinese, translation, multimodal)."""
    ner_words = [
        *builders_ner.PEOPLE, *builders_ner.PLACES, *(w for pair in builders_ner.TWO_WORD_PLACES for w in pair),
        *builders_ner.FILLER, *builders_ner.NER_WORDS, "visited", "met", "in",
    ]
    translation = [w for pair in builders_translation.DICTIONARY.items() for w in pair]
    multimodal = [*builders_multimodal.VOCAB_WORDS, *builders_multimodal.WORDS, *builders_multimodal.COLOURS]
    words = [*builders.TOY_WORDS, *ner_words, *translation, *multimodal, *PROMPT_WORDS, *builders_ner.CHINESE]
    words = [w for w in dict.fromkeys(words) if w not in PUNCTUATION]
    chars = list(dict.fromkeys([*LOWER, *UPPER, *DIGITS, *PUNCTUATION, *(c for w in words for c in w)]))
    return Corpus(tuple(words), tuple(w for w in words if w not in RARE_WORDS), tuple(chars))


# --- deterministic vocabulary construction --------------------------------------------------------------------


@lru_cache(maxsize=None)
def _learn_bpe_cached(words: tuple[tuple[str, ...], ...]) -> tuple[tuple[str, str], ...]:
    return tuple(learn_bpe(list(words)))


def learn_bpe(words: list[tuple[str, ...]]) -> list[tuple[str, str]]:
    """Greedy BPE over symbol sequences (each counted once) until every word is one symbol.

    The most frequent adjacent pair is merged first, ties broken by the pair's text: plain Python on a fixed
    input, so the merges are the same everywhere. Applying them (by rank) to a training word gives that word back
    as a single token.
    """
    seqs = [list(w) for w in dict.fromkeys(words)]
    merges: list[tuple[str, str]] = []
    while True:
        counts: Counter = Counter()
        for s in seqs:
            counts.update(zip(s, s[1:]))
        if not counts:
            return merges
        a, b = min(counts, key=lambda p: (-counts[p], p))
        merges.append((a, b))
        for s in seqs:
            i, out = 0, []
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            s[:] = out


def _bpe_vocab(base: list[str], merges: list[tuple[str, str]], head: list[str] = (), tail: list[str] = ()) -> dict:
    tokens = dict.fromkeys([*head, *base, *(a + b for a, b in merges), *tail])
    return {t: i for i, t in enumerate(tokens)}


@lru_cache(maxsize=None)
def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (the byte-level BPE alphabet, in GPT-2's order)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _bytes(text: str) -> tuple[str, ...]:
    table = _byte_to_unicode()
    return tuple(table[b] for b in text.encode("utf-8"))


def byte_level_bpe(head: list[str] = (), tail: list[str] = ()) -> tuple[dict, list[tuple[str, str]]]:
    """GPT-2 style vocab + merges: the 256 byte symbols, then every toy word with and without a leading space."""
    corpus = toy_corpus()
    words = [_bytes(w) for w in corpus.whole] + [_bytes(" " + w) for w in corpus.whole]
    merges = list(_learn_bpe_cached(tuple(words)))
    return _bpe_vocab(list(_byte_to_unicode().values()), merges, head, tail), merges


def clip_bpe(tail: list[str]) -> tuple[dict, list[tuple[str, str]]]:
    """CLIP style: bytes, bytes + '</w>', then merges of lower-cased words ending in '</w>' (no leading space)."""
    corpus = toy_corpus()
    alphabet = list(_byte_to_unicode().values())
    words = [(*s[:-1], s[-1] + "</w>") for s in (_bytes(w.lower()) for w in corpus.whole)]
    merges = list(_learn_bpe_cached(tuple(words)))
    return _bpe_vocab(alphabet + [c + "</w>" for c in alphabet], merges, tail=tail), merges


def sentencepiece_bpe(head: list[str], tail: list[str] = (), bare_words: bool = False) -> tuple[dict, list]:
    """Llama / Gemma style (SentencePiece BPE with byte fallback): specials, <0x00>..<0xFF>, merged pieces, then
    the single characters. Words start with '▁'; Gemma (no prefix space) also needs them bare."""
    corpus = toy_corpus()
    words = [tuple("▁" + w) for w in corpus.whole] + ([tuple(w) for w in corpus.whole] if bare_words else [])
    merges = list(_learn_bpe_cached(tuple(words)))
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    chars = list(dict.fromkeys(["▁", *corpus.chars]))
    vocab = dict.fromkeys([*head, *byte_tokens, *(a + b for a, b in merges), *chars, *tail])
    return {t: i for i, t in enumerate(vocab)}, merges


def unigram_pieces() -> list[tuple[str, float]]:
    """SentencePiece Unigram pieces: '▁word' for every whole word (score -2), '▁' (-3), single characters (-8)."""
    corpus = toy_corpus()
    return [*(("▁" + w, -2.0) for w in corpus.whole), ("▁", -3.0), *((c, -8.0) for c in corpus.chars)]


def wordpiece_vocab(head: list[str], tail: list[str] = (), lowercase: bool = True) -> dict[str, int]:
    corpus = toy_corpus()
    chars = [c for c in corpus.chars if not (lowercase and c.isupper())]
    words = [w.lower() if lowercase else w for w in corpus.whole]
    tokens = dict.fromkeys([*head, *words, *chars, *("##" + c for c in chars if c.isascii()), *tail])
    return {t: i for i, t in enumerate(tokens)}


BERT_HEAD = ["[PAD]", *(f"[unused{i}]" for i in range(99)), "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # ids as bert-base


def _train_spm(lines: list[str]) -> bytes:
    """A SentencePiece model trained in memory, deterministically.

    Determinism: the BPE trainer on one thread only counts pairs (integers) and breaks ties in a fixed order, so
    a fixed input gives the same bytes; `_spm_pair` trains twice and compares. The Unigram trainer (what opus-mt
    used) runs floating-point EM whose last bits can depend on the machine's libm, so it is not used.
    """
    import sentencepiece as spm

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buffer, model_type="bpe", vocab_size=2000, hard_vocab_limit=False,
        character_coverage=1.0, num_threads=1, minloglevel=2, shuffle_input_sentence=False,
    )
    return buffer.getvalue()


def _spm_pair(lines: list[str]) -> bytes:
    first, second = _train_spm(lines), _train_spm(lines)
    if first != second:
        raise RuntimeError("SentencePiece training is not deterministic here: two runs gave different models")
    return first


# --- small helpers ----------------------------------------------------------------------------------------

HUGE = 1000000000000000019884624838656  # the "no limit" model_max_length several Hub tokenizers ship
IMAGE_SIZE = builders_multimodal.IMAGE_SIZE
PATCH = 8


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def redraw_weights(model, seed: int = 0) -> None:
    """Re-draw every random parameter so that the bytes do not depend on the CPU.

    torch's seeded normal_() differs in the last bits between CPU kernels (measured here: ATEN_CPU_CAPABILITY
    default vs avx2 give different model.safetensors, |diff| ~ 1e-8). So each parameter that the model's own
    init left non-constant gets new values with the same spread (its std rounded to 2 significant digits):
    Irwin-Hall samples (sum of 12 uniform 20-bit integers cut from the raw stream of numpy's PCG64 bit
    generator, which numpy keeps fixed across versions; centred, scaled by a power of two, then one multiply):
    integer arithmetic and exactly rounded float operations only. Constant parameters
    (norm weights, zero biases, zero-initialised tokens) and all-zero rows (padding_idx embeddings) are kept.
    """
    import numpy as np
    import torch

    bits = np.random.PCG64(seed)
    mask, shifts = np.uint64((1 << 20) - 1), [np.uint64(k) for k in (0, 20, 40)]
    for _, param in model.named_parameters():
        data = param.data
        if data.numel() < 2 or not data.is_floating_point() or bool((data == data.flatten()[0]).all()):
            continue
        std = float(f"{float(data.float().std()):.2g}")
        raw = bits.random_raw(4 * data.numel()).reshape(4, -1)  # 4 x 64 bits -> 12 chunks of 20 bits
        draws = sum(((raw >> k) & mask).astype(np.int64) for k in shifts).sum(axis=0) - 6 * (1 << 20)
        values = torch.from_numpy(((draws.astype(np.float64) / (1 << 20)) * std).astype(np.float32))
        values = values.view(data.shape).to(data.dtype)
        if data.dim() == 2:
            values[(data == 0).all(dim=1)] = 0  # keep padding rows zero
        data.copy_(values)


def _save(
    folder: Path, model_cls, config, *savables, after_init: Callable | None = None, tokenizer_config=None,
    architecture: str | None = None,
) -> Path:
    """Seed, build the model, save it and the tokenizer / processor. `tokenizer_config` adds keys the real
    tokenizer_config.json carries but transformers 5 no longer writes (add_bos_token, legacy, ...);
    `architecture` overrides the class config.json names (a checkpoint whose weights hold more than it)."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = model_cls(config)
    with torch.no_grad():
        if after_init is not None:
            after_init(model)
        redraw_weights(model)
    model.save_pretrained(folder)
    for item in savables:
        item.save_pretrained(folder)
    if tokenizer_config:
        _patch_json(folder / "tokenizer_config.json", **tokenizer_config)
    if architecture:
        _patch_json(folder / "config.json", architectures=[architecture])
    return folder


def _patch_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def _llama_keys(add_bos: bool = True, legacy: bool = False) -> dict:
    return {"add_bos_token": add_bos, "add_eos_token": False, "legacy": legacy}


def _tiny(**kwargs) -> dict:
    """The common tiny sizes (BERT-style names)."""
    sizes = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    sizes.update(kwargs)
    return sizes


# --- encoders ---------------------------------------------------------------------------------------------


def _bert_tokenizer(cls_name: str = "BertTokenizer"):
    import transformers

    tokenizer = getattr(transformers, cls_name)(vocab=wordpiece_vocab(BERT_HEAD), do_lower_case=True)
    tokenizer.model_max_length = 128
    return tokenizer


def build_bert(folder: Path) -> Path:
    from transformers import BertConfig, BertForPreTraining

    tokenizer = _bert_tokenizer()
    config = BertConfig(vocab_size=len(tokenizer), max_position_embeddings=128, pad_token_id=0, **_tiny())
    # bert-base-uncased: config.json names BertForMaskedLM, the weights are the pre-training ones (pooler and
    # next-sentence head too), so a classifier loads a pre-trained pooler and MaskedLM reports unused weights
    return _save(folder, BertForPreTraining, config, tokenizer, architecture="BertForMaskedLM")


def build_electra(folder: Path) -> Path:
    from transformers import ElectraConfig, ElectraForPreTraining

    tokenizer = _bert_tokenizer("ElectraTokenizer")  # in transformers 5 ElectraTokenizer *is* BertTokenizer
    config = ElectraConfig(
        vocab_size=len(tokenizer), embedding_size=16, max_position_embeddings=128, pad_token_id=0, **_tiny()
    )  # embedding_size < hidden_size, as electra-small (128 vs 256): the embeddings_project layer exists
    return _save(folder, ElectraForPreTraining, config, tokenizer)


def build_distilbert(folder: Path) -> Path:
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    tokenizer = _bert_tokenizer("DistilBertTokenizer")  # no token_type_ids in its model inputs
    config = DistilBertConfig(
        vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=128,
        pad_token_id=0,
    )
    return _save(folder, DistilBertForMaskedLM, config, tokenizer)


def build_mpnet(folder: Path) -> Path:
    from transformers import MPNetConfig, MPNetForMaskedLM, MPNetTokenizer

    # mpnet-base: <s> <pad> </s> <unk>, then bert-base-uncased's vocab (unk_token is its [UNK]), <mask> last
    vocab = wordpiece_vocab(["<s>", "<pad>", "</s>", "<unk>", *BERT_HEAD], tail=["<mask>"])
    tokenizer = MPNetTokenizer(vocab=vocab, do_lower_case=True)
    tokenizer.model_max_length = 128
    config = MPNetConfig(
        vocab_size=len(tokenizer), max_position_embeddings=130, relative_attention_num_buckets=32, pad_token_id=1,
        bos_token_id=0, eos_token_id=2, **_tiny(),
    )  # mpnet-base: 514 positions for 512 tokens (padding_idx 1 offsets them, like RoBERTa)
    return _save(folder, MPNetForMaskedLM, config, tokenizer)


ROBERTA_HEAD = ["<s>", "<pad>", "</s>", "<unk>"]


def build_roberta(folder: Path) -> Path:
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaTokenizer

    vocab, merges = byte_level_bpe(head=ROBERTA_HEAD, tail=["<mask>"])
    tokenizer = RobertaTokenizer(vocab=vocab, merges=merges)
    tokenizer.model_max_length = 128
    config = RobertaConfig(
        vocab_size=len(vocab), max_position_embeddings=130, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        type_vocab_size=1, **_tiny(),
    )  # roberta-base: 514 positions = 512 + padding_idx + 1
    return _save(folder, RobertaForMaskedLM, config, tokenizer)


def build_xlm_roberta(folder: Path) -> Path:
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM, XLMRobertaTokenizer

    vocab = [(t, 0.0) for t in ROBERTA_HEAD] + unigram_pieces() + [("<mask>", 0.0)]
    tokenizer = XLMRobertaTokenizer(vocab=vocab)
    tokenizer.model_max_length = 128
    config = XLMRobertaConfig(
        vocab_size=len(vocab), max_position_embeddings=130, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        type_vocab_size=1, **_tiny(),
    )
    return _save(folder, XLMRobertaForMaskedLM, config, tokenizer)


def build_deberta(folder: Path) -> Path:
    from transformers import DebertaConfig, DebertaModel, DebertaTokenizer

    # deberta-base: GPT-2 byte-level BPE with [PAD] [CLS] [SEP] [UNK] first and [MASK] last
    vocab, merges = byte_level_bpe(head=["[PAD]", "[CLS]", "[SEP]", "[UNK]"], tail=["[MASK]"])
    tokenizer = DebertaTokenizer(vocab=vocab, merges=merges)
    tokenizer.model_max_length = 128
    config = DebertaConfig(
        vocab_size=len(vocab), max_position_embeddings=128, relative_attention=True, max_relative_positions=-1,
        position_biased_input=False, pos_att_type=["c2p", "p2c"], type_vocab_size=0, pad_token_id=0, **_tiny(),
    )
    return _save(folder, DebertaModel, config, tokenizer)


def build_deberta_v2(folder: Path) -> Path:
    from transformers import DebertaV2Config, DebertaV2Model, DebertaV2Tokenizer

    # deberta-v3: SentencePiece Unigram, [PAD] [CLS] [SEP] [UNK] first, [MASK] last; the model's vocab is larger
    vocab = [(t, 0.0) for t in ["[PAD]", "[CLS]", "[SEP]", "[UNK]"]] + unigram_pieces() + [("[MASK]", 0.0)]
    tokenizer = DebertaV2Tokenizer(vocab=vocab, do_lower_case=False, split_by_punct=False)
    tokenizer.model_max_length = 128
    config = DebertaV2Config(
        vocab_size=_round_up(len(vocab) + 1, 100), max_position_embeddings=128, relative_attention=True,
        max_relative_positions=-1, position_buckets=32, norm_rel_ebd="layer_norm", share_att_key=True,
        pos_att_type=["p2c", "c2p"], position_biased_input=False, type_vocab_size=0, pad_token_id=0, **_tiny(),
    )  # v3-small: vocab_size 128100 for 128001 tokens
    return _save(folder, DebertaV2Model, config, tokenizer)


# --- decoders ---------------------------------------------------------------------------------------------


def build_gpt2(folder: Path) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    vocab, merges = byte_level_bpe(tail=["<|endoftext|>"])  # gpt2: 50256 = <|endoftext|>, the last id
    tokenizer = GPT2Tokenizer(vocab=vocab, merges=merges)  # bos = eos = unk = <|endoftext|>, no pad
    tokenizer.model_max_length = 128
    eot = vocab["<|endoftext|>"]
    config = GPT2Config(
        vocab_size=len(vocab), n_embd=32, n_layer=2, n_head=2, n_positions=128, bos_token_id=eot, eos_token_id=eot,
    )
    return _save(folder, GPT2LMHeadModel, config, tokenizer)


LLAMA_HEAD = ["<unk>", "<s>", "</s>"]


def _llama_tokenizer(extra_tail: list[str] = (), **kwargs):
    from transformers import LlamaTokenizer

    vocab, merges = sentencepiece_bpe(LLAMA_HEAD, tail=list(extra_tail))
    options = dict(add_bos_token=True, add_eos_token=False, legacy=False, model_max_length=HUGE)
    options.update(kwargs)
    return LlamaTokenizer(vocab=vocab, merges=merges, **options)


def _rope_lm(cls_name: str, tokenizer, vocab_size: int | None = None, **kwargs):
    import transformers

    options = dict(
        vocab_size=vocab_size or len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    options.update(kwargs)
    return getattr(transformers, cls_name)(**options)


def build_llama(folder: Path) -> Path:
    from transformers import LlamaForCausalLM

    tokenizer = _llama_tokenizer(padding_side="right")  # Llama-2: <unk>=0 <s>=1 </s>=2, bos added, no pad
    config = _rope_lm("LlamaConfig", tokenizer, head_dim=16)
    return _save(folder, LlamaForCausalLM, config, tokenizer, tokenizer_config=_llama_keys())


def build_mistral(folder: Path) -> Path:
    from transformers import MistralForCausalLM

    tokenizer = _llama_tokenizer(legacy=True)  # Mistral-7B-v0.1 names LlamaTokenizer, legacy=true, no pad
    config = _rope_lm(
        "MistralConfig", tokenizer, num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=4096,
    )  # 32 heads / 8 KV heads (grouped-query attention) in the real one
    return _save(folder, MistralForCausalLM, config, tokenizer, tokenizer_config=_llama_keys(legacy=True))


PHI3_TOKENS = [
    "<|endoftext|>", "<|assistant|>", "<|placeholder1|>", "<|placeholder2|>", "<|placeholder3|>",
    "<|placeholder4|>", "<|system|>", "<|end|>", "<|placeholder5|>", "<|placeholder6|>", "<|user|>",
]
PHI3_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + "
    "'<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)


def build_phi3(folder: Path) -> Path:
    from tokenizers import AddedToken
    from transformers import Phi3ForCausalLM

    # Phi-3-mini-4k-instruct: the Llama vocab + 11 added tokens from 32000; eos = pad = <|endoftext|>
    tokenizer = _llama_tokenizer(
        add_bos_token=False, eos_token="<|endoftext|>", pad_token="<|endoftext|>", model_max_length=4096,
        padding_side="left", chat_template=PHI3_CHAT_TEMPLATE,
    )
    tokenizer.add_tokens(
        [AddedToken(t, special=t == "<|endoftext|>", normalized=False, rstrip=True) for t in PHI3_TOKENS]
    )
    config = _rope_lm(
        "Phi3Config", tokenizer, vocab_size=_round_up(len(tokenizer), 64), original_max_position_embeddings=128,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    )  # vocab_size 32064 for 32011 tokens; 4k context = original context, plain RoPE (no longrope factors)
    return _save(folder, Phi3ForCausalLM, config, tokenizer, tokenizer_config=_llama_keys(add_bos=False))


GEMMA_HEAD = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]


def build_gemma(folder: Path) -> Path:
    from transformers import GemmaForCausalLM, GemmaTokenizer

    vocab, merges = sentencepiece_bpe(GEMMA_HEAD + ["<start_of_turn>", "<end_of_turn>"], bare_words=True)
    tokenizer = GemmaTokenizer(
        vocab=vocab, merges=merges, add_bos_token=True, add_eos_token=False, model_max_length=HUGE,
        additional_special_tokens=["<start_of_turn>", "<end_of_turn>"],
    )  # gemma-2b: <pad>=0 <eos>=1 <bos>=2 <unk>=3, has a pad token, bos added
    config = _rope_lm(
        "GemmaConfig", tokenizer, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
        hidden_act="gelu_pytorch_tanh",
    )  # gemma-2b: 8 heads of 256 (= hidden 2048), one KV head (multi-query)
    keys = {"add_bos_token": True, "add_eos_token": False}
    return _save(folder, GemmaForCausalLM, config, tokenizer, tokenizer_config=keys)


CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
QWEN3_TEMPLATE = (  # the real one also renders tools and strips earlier turns' reasoning; this keeps ChatML + think
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% if enable_thinking is defined and "
    "enable_thinking is false %}{{ '<think>\n\n</think>\n\n' }}{% endif %}{% endif %}"
)


def _qwen_tokenizer(specials: list[str], eos: str, template: str, max_length: int):
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    vocab, merges = byte_level_bpe()
    tokenizer = Qwen2Tokenizer(
        vocab=vocab, merges=merges, unk_token=None, bos_token=None, eos_token=eos, pad_token="<|endoftext|>",
        errors="replace", split_special_tokens=False, model_max_length=max_length, chat_template=template,
    )
    tokenizer.add_tokens([AddedToken(t, special=t.startswith("<|"), normalized=False) for t in specials])
    return tokenizer


def build_qwen2(folder: Path) -> Path:
    from transformers import Qwen2ForCausalLM

    # Qwen2-0.5B: byte-level BPE, no bos, no unk, eos = pad = <|endoftext|>, then <|im_start|> <|im_end|>
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokenizer = _qwen_tokenizer(specials, "<|endoftext|>", CHATML_TEMPLATE, 32768)
    config = _rope_lm(
        "Qwen2Config", tokenizer, vocab_size=_round_up(len(tokenizer), 64), num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=True, use_sliding_window=False, bos_token_id=tokenizer.eos_token_id,
    )  # vocab_size 151936 for 151646 tokens; q/k/v have biases; 14 heads / 2 KV heads; config bos = eos id
    return _save(folder, Qwen2ForCausalLM, config, tokenizer)


def build_qwen3(folder: Path) -> Path:
    from transformers import Qwen3ForCausalLM

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>", "<think>", "</think>"]
    tokenizer = _qwen_tokenizer(specials, "<|im_end|>", QWEN3_TEMPLATE, 131072)  # Qwen3-0.6B: eos <|im_end|>
    config = _rope_lm(
        "Qwen3Config", tokenizer, vocab_size=_round_up(len(tokenizer), 64), num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, tie_word_embeddings=True,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )  # head_dim * heads (64) != hidden (32), as in Qwen3-0.6B (128 * 16 vs 1024); q_norm / k_norm
    return _save(folder, Qwen3ForCausalLM, config, tokenizer)


# --- sequence to sequence -----------------------------------------------------------------------------------


def _t5_tokenizer():
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + unigram_pieces()
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=100)  # <extra_id_0..99> after the pieces, as in t5-small
    tokenizer.model_max_length = 512  # T5 has relative positions: no position table to overflow
    return tokenizer


def _t5_config(tokenizer, flan: bool):
    from transformers import T5Config

    return T5Config(
        vocab_size=_round_up(len(tokenizer), 128), d_model=32, d_kv=16, d_ff=64, num_layers=2, num_decoder_layers=2,
        num_heads=2, relative_attention_num_buckets=32, relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu" if flan else "relu", tie_word_embeddings=not flan,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )  # vocab_size 32128 for 32100 tokens; flan-t5: gated-gelu, untied lm_head


def build_t5(folder: Path) -> Path:
    from transformers import T5ForConditionalGeneration

    tokenizer = _t5_tokenizer()
    return _save(folder, T5ForConditionalGeneration, _t5_config(tokenizer, flan=False), tokenizer)


def build_flan_t5(folder: Path) -> Path:
    from transformers import T5ForConditionalGeneration

    tokenizer = _t5_tokenizer()
    return _save(folder, T5ForConditionalGeneration, _t5_config(tokenizer, flan=True), tokenizer)


def _bart_sizes(**kwargs) -> dict:
    sizes = dict(
        d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=64, decoder_ffn_dim=64,
    )
    sizes.update(kwargs)
    return sizes


def build_bart(folder: Path) -> Path:
    from transformers import BartConfig, BartModel, BartTokenizer

    vocab, merges = byte_level_bpe(head=ROBERTA_HEAD, tail=["<mask>"])
    tokenizer = BartTokenizer(vocab=vocab, merges=merges)  # = RobertaTokenizer in transformers 5
    tokenizer.model_max_length = 128
    config = BartConfig(
        vocab_size=len(vocab), max_position_embeddings=128, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        decoder_start_token_id=2, forced_bos_token_id=0, forced_eos_token_id=2, **_bart_sizes(),
    )
    return _save(folder, BartModel, config, tokenizer)  # bart-base ships the bare BartModel


MBART_LANGS = ["en_XX", "de_DE", "zh_CN", "fr_XX"]  # all 52 mBART-50 codes are in the vocab; these are checked


def build_mbart(folder: Path) -> Path:
    from transformers import MBart50Tokenizer, MBartConfig, MBartForConditionalGeneration
    from transformers.models.mbart50.tokenization_mbart50 import FAIRSEQ_LANGUAGE_CODES

    vocab = (
        [(t, 0.0) for t in ROBERTA_HEAD] + unigram_pieces() + [(c, 0.0) for c in FAIRSEQ_LANGUAGE_CODES]
        + [("<mask>", 0.0)]
    )  # fairseq order: <s> <pad> </s> <unk>, pieces, the 52 language codes, <mask> (as mbart-large-50)
    tokenizer = MBart50Tokenizer(vocab=vocab, src_lang="en_XX", tgt_lang="de_DE")
    tokenizer.model_max_length = 128
    config = MBartConfig(
        vocab_size=len(vocab), max_position_embeddings=128, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        decoder_start_token_id=2, forced_eos_token_id=2, scale_embedding=True, **_bart_sizes(),
    )
    return _save(folder, MBartForConditionalGeneration, config, tokenizer)


NLLB_LANGS = ["eng_Latn", "deu_Latn", "zho_Hans", "fra_Latn"]  # all 202 FLORES-200 codes are in the vocab; checked


def _proto_fields(data: bytes):
    """(field number, bytes or None) for each field of a serialised protobuf message (no protobuf package here)."""

    def varint(i: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = data[i]
            value, shift, i = value | (byte & 0x7F) << shift, shift + 7, i + 1
            if byte < 0x80:
                return value, i

    i = 0
    while i < len(data):
        key, i = varint(i)
        kind = key & 7
        if kind == 2:
            size, i = varint(i)
            yield key >> 3, data[i:i + size]
            i += size
        elif kind == 0:
            i = varint(i)[1]
        elif kind in (1, 5):
            i += 8 if kind == 1 else 4
        else:
            raise ValueError(f"protobuf wire type {kind} not handled")


@lru_cache(maxsize=None)
def _nmt_nfkc_charsmap() -> bytes:
    """SentencePiece's compiled `nmt_nfkc` normalisation table (NormalizerSpec.precompiled_charsmap), as the real
    NLLB tokenizer.json carries in its Precompiled normalizer. The table is built into the sentencepiece library (the
    training text does not matter), so the bytes depend only on the installed sentencepiece version."""
    import sentencepiece as spm

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["a b c", "abc"]), model_writer=buffer, model_type="bpe", vocab_size=8,
        hard_vocab_limit=False, num_threads=1, minloglevel=2, normalization_rule_name="nmt_nfkc",
    )
    normalizer = next(value for field, value in _proto_fields(buffer.getvalue()) if field == 3)  # normalizer_spec
    return next(value for field, value in _proto_fields(normalizer) if field == 2)  # precompiled_charsmap


def build_nllb(folder: Path) -> Path:
    from transformers import M2M100Config, M2M100ForConditionalGeneration, NllbTokenizer
    from transformers.models.nllb.tokenization_nllb import FAIRSEQ_LANGUAGE_CODES

    # nllb-200-distilled-600M, fairseq order: <s>=0 <pad>=1 </s>=2 <unk>=3, the SentencePiece BPE pieces (merged
    # pieces, then single characters; no byte fallback), the 202 FLORES-200 codes in FAIRSEQ_LANGUAGE_CODES order
    # (eng_Latn = 256047 there), <mask> last (256203); one vocabulary for every language, source and target
    corpus = toy_corpus()
    merges = list(_learn_bpe_cached(tuple(tuple("▁" + w) for w in corpus.whole)))
    tokens = dict.fromkeys([*ROBERTA_HEAD, *(a + b for a, b in merges), "▁", *corpus.chars, *FAIRSEQ_LANGUAGE_CODES])
    tokens["<mask>"] = None
    # no languages set, as the real one: src_lang falls back to eng_Latn (5.24 saves that), tgt_lang to src_lang;
    # legacy_behaviour False (the default since transformers 4.28; the real tokenizer_config leaves it unset): source
    # [src_lang] tokens </s>, target [tgt_lang] tokens </s>; nmt_nfkc (Precompiled), then runs of spaces collapsed
    tokenizer = NllbTokenizer(
        vocab={t: i for i, t in enumerate(tokens)}, merges=merges, src_lang=None, tgt_lang=None,
        legacy_behaviour=False, _spm_precompiled_charsmap=_nmt_nfkc_charsmap(), model_max_length=128,
    )  # the real model_max_length is 1024 (its position table); 128 here

    config = M2M100Config(
        vocab_size=len(tokenizer) + 2, max_position_embeddings=128, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        decoder_start_token_id=2, scale_embedding=True, activation_function="relu", encoder_layerdrop=0,
        decoder_layerdrop=0, tokenizer_class="NllbTokenizer", **_bart_sizes(),
    )  # vocab_size 256206 for 256204 tokens; sinusoidal positions (not saved); config.json names NllbTokenizer

    def generation_defaults(model):
        model.generation_config.max_length = 200  # the real config's max_length (generation_config.json in v5)

    return _save(folder, M2M100ForConditionalGeneration, config, tokenizer, after_init=generation_defaults)


MARIAN_ZH_CODES = [
    ">>cmn<<", ">>cmn_Hans<<", ">>cmn_Hant<<", ">>yue<<", ">>yue_Hans<<", ">>yue_Hant<<", ">>wuu<<", ">>lzh<<",
]


def _build_marian(folder: Path, target_words: list[str], target_lang: str, codes: list[str]) -> Path:
    """opus-mt: source.spm + target.spm (SentencePiece), one vocab.json shared by both sides: </s>=0, <unk>=1,
    the pieces, <pad> last (= decoder_start_token_id). Multi-target models put >>id<< codes in the vocab."""
    import sentencepiece as spm
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    corpus = toy_corpus()
    english = list(builders_translation.DICTIONARY) + PROMPT_WORDS
    source = _spm_pair([*corpus.sentences(), *english, " ".join(english)])
    target = _spm_pair([*corpus.sentences(), *target_words, " ".join(target_words)])
    (folder / "source.spm").write_bytes(source)
    (folder / "target.spm").write_bytes(target)
    pieces = []
    for model in (source, target):
        sp = spm.SentencePieceProcessor(model_proto=model)
        pieces += [
            sp.id_to_piece(i) for i in range(sp.get_piece_size()) if not sp.is_control(i) and not sp.is_unknown(i)
        ]
    tokens = list(dict.fromkeys(["</s>", "<unk>", *codes, *pieces, "<pad>"]))
    vocab_json = json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False, indent=2)
    (folder / "vocab.json").write_text(vocab_json, encoding="utf-8")
    tokenizer = MarianTokenizer(
        source_spm=str(folder / "source.spm"), target_spm=str(folder / "target.spm"), vocab=str(folder / "vocab.json"),
        source_lang="en", target_lang=target_lang, model_max_length=128,
    )
    pad = tokenizer.pad_token_id
    config = MarianConfig(
        vocab_size=len(tokens), max_position_embeddings=128, pad_token_id=pad, eos_token_id=0,
        decoder_start_token_id=pad, forced_eos_token_id=0, bad_words_ids=[[pad]], scale_embedding=True,
        static_position_embeddings=True, share_encoder_decoder_embeddings=True, activation_function="swish",
        **_bart_sizes(),
    )
    return _save(folder, MarianMTModel, config, tokenizer)


def build_marian(folder: Path) -> Path:
    return _build_marian(folder, list(builders_translation.DICTIONARY.values()), "de", codes=[])


def build_marian_zh(folder: Path) -> Path:
    return _build_marian(folder, [*builders_ner.CHINESE, *CHINESE_TARGET_WORDS], "zh", codes=MARIAN_ZH_CODES)


# --- vision and vision-language ---------------------------------------------------------------------------


def _vision(cls_name: str, **extra):
    import transformers

    return getattr(transformers, cls_name)(**_tiny(image_size=IMAGE_SIZE, patch_size=PATCH), **extra)


def _clip_image_processor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})


def build_vit(folder: Path) -> Path:
    from transformers import ViTForImageClassification, ViTImageProcessor

    # vit-base-patch16-224 ships its ImageNet-1k head: a new task head needs ignore_mismatched_sizes=True
    labels = {i: f"imagenet_{i}" for i in range(1000)}
    config = _vision("ViTConfig", id2label=labels, label2id={v: k for k, v in labels.items()})
    processor = ViTImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    return _save(folder, ViTForImageClassification, config, processor)


def build_clip(folder: Path) -> Path:
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab, merges = clip_bpe(tail=["<|startoftext|>", "<|endoftext|>"])  # the two specials are the last ids
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)  # pad = unk = eos = <|endoftext|>
    text = dict(
        vocab_size=len(vocab), max_position_embeddings=77, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        **_tiny(),
    )  # the real config's ids (0 / 1 / 2) are not the tokenizer's: eos 2 selects CLIP's argmax(input_ids) pooling
    config = CLIPConfig(text_config=text, vision_config=_vision("CLIPVisionConfig").to_dict(), projection_dim=32)
    processor = CLIPProcessor(image_processor=_clip_image_processor(), tokenizer=tokenizer)
    return _save(folder, CLIPModel, config, processor)


def _blip2(folder: Path, tokenizer, text_config: dict, model_vocab: int, tokenizer_config=None) -> Path:
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessor

    queries = 4  # 32 in the real ones
    processor = Blip2Processor(
        image_processor=BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}), tokenizer=tokenizer,
        num_query_tokens=queries,
    )  # registers <image> in the tokenizer (do not pass extra_special_tokens: see STACK_NOTES)
    image_token = processor.tokenizer.convert_tokens_to_ids("<image>")
    text_config["vocab_size"] = max(model_vocab, _round_up(len(processor.tokenizer), 64))
    config = Blip2Config(
        vision_config=_vision("Blip2VisionConfig", initializer_range=0.02).to_dict(),  # default 1e-10 is degenerate
        qformer_config=dict(_tiny(num_hidden_layers=1), encoder_hidden_size=32, vocab_size=len(processor.tokenizer)),
        text_config=text_config, num_query_tokens=queries, image_token_index=image_token,
    )

    def init_queries(model):
        model.query_tokens.normal_(0, 0.02)  # zero-initialised by default: all queries would be identical

    return _save(
        folder, Blip2ForConditionalGeneration, config, processor, after_init=init_queries,
        tokenizer_config=tokenizer_config,
    )


def build_blip2_opt(folder: Path) -> Path:
    from transformers import GPT2Tokenizer

    # opt-2.7b: GPT-2 BPE, <s>=0 <pad>=1 </s>=2 <unk>=3; bos = eos = unk = </s>, pad <pad>, bos added
    vocab, merges = byte_level_bpe(head=ROBERTA_HEAD)
    tokenizer = GPT2Tokenizer(
        vocab=vocab, merges=merges, bos_token="</s>", eos_token="</s>", unk_token="</s>", pad_token="<pad>",
        add_bos_token=True, model_max_length=128,
    )
    tokenizer_config = {"add_bos_token": True, "add_prefix_space": False, "errors": "replace"}
    text = dict(
        model_type="opt", hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=2,
        word_embed_proj_dim=32, max_position_embeddings=128, pad_token_id=1, bos_token_id=2, eos_token_id=2,
    )
    return _blip2(folder, tokenizer, text, _round_up(len(vocab), 64), tokenizer_config)  # 50272 rows, 50266 tokens


def build_blip2_t5(folder: Path) -> Path:
    tokenizer = _t5_tokenizer()
    text = _t5_config(tokenizer, flan=True).to_dict()
    return _blip2(folder, tokenizer, text, text["vocab_size"])


def build_blip(folder: Path) -> Path:
    from transformers import BertTokenizer, BlipConfig, BlipForImageTextRetrieval, BlipImageProcessor, BlipProcessor

    # blip-itm-base-coco: bert-base-uncased's WordPiece vocab + [DEC] (bos, 30522) and [ENC] (30523); 384 px images
    vocab = wordpiece_vocab(BERT_HEAD, tail=["[DEC]", "[ENC]"])
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True, bos_token="[DEC]", extra_special_tokens=["[ENC]"])
    tokenizer.model_max_length = 128
    text = dict(
        vocab_size=len(vocab), max_position_embeddings=128, pad_token_id=0, bos_token_id=vocab["[DEC]"],
        sep_token_id=vocab["[SEP]"], **_tiny(),
    )
    vision = _vision("BlipVisionConfig", initializer_range=0.02).to_dict()  # the default 1e-10 is degenerate
    config = BlipConfig(text_config=text, vision_config=vision, projection_dim=32, image_text_hidden_size=32)
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}), tokenizer=tokenizer)
    return _save(folder, BlipForImageTextRetrieval, config, processor)


LLAVA_CHAT_TEMPLATE = (  # llava-hf/llava-1.5-7b-hf's chat_template
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}"
    "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def build_llava(folder: Path) -> Path:
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    # llava-1.5-7b-hf: the Llama-2 tokenizer + <image> (32000) and <pad> (32001); model vocab 32064
    tokenizer = _llama_tokenizer(
        extra_tail=["<image>", "<pad>"], pad_token="<pad>", padding_side="left",
        extra_special_tokens={"image_token": "<image>"},
    )
    text = _rope_lm("LlamaConfig", tokenizer, vocab_size=_round_up(len(tokenizer), 64), head_dim=16).to_dict()
    config = LlavaConfig(
        vision_config=_vision("CLIPVisionConfig").to_dict(), text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), image_seq_length=(IMAGE_SIZE // PATCH) ** 2,
        vision_feature_select_strategy="default", vision_feature_layer=-2, projector_hidden_act="gelu",
    )
    processor = LlavaProcessor(
        image_processor=_clip_image_processor(), tokenizer=tokenizer, patch_size=PATCH,
        vision_feature_select_strategy="default", num_additional_image_tokens=1, chat_template=LLAVA_CHAT_TEMPLATE,
    )
    return _save(folder, LlavaForConditionalGeneration, config, processor, tokenizer_config=_llama_keys())


# --- image-text-to-text models (the generic VLM family) ------------------------------------------------------
# Tiny random LMs give near-identical last-token states at init 0.02: these learn the head tests with 0.1.
VLM_INIT = 0.1
QWEN2_VL_TEMPLATE = (  # Qwen/Qwen2-VL-2B-Instruct's, without the video and numbering branches
    "{% set image_count = namespace(value=0) %}{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}"
    "<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN_VL_SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>",
]  # Qwen2-VL's added tokens from 151643, in order


def _qwen_vl(folder: Path, model_type: str, patch: int, vision: dict, text: dict, processor_cls: str) -> Path:
    import transformers
    from transformers import AutoConfig, Qwen2VLImageProcessorPil

    tokenizer = _qwen_tokenizer(QWEN_VL_SPECIALS, "<|im_end|>", QWEN2_VL_TEMPLATE, 32768)
    ids = tokenizer.convert_tokens_to_ids
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=patch, merge_size=2, temporal_patch_size=2,
        size={"shortest_edge": 4 * (2 * patch) ** 2, "longest_edge": 16 * (2 * patch) ** 2},  # 4 to 16 image tokens
    )
    processor_class = getattr(transformers, processor_cls)
    from mmkit.models.multimodal.vlm import _image_only

    processor = _image_only(processor_class)(image_processor=image_processor, tokenizer=tokenizer, chat_template=QWEN2_VL_TEMPLATE)
    config = AutoConfig.for_model(
        model_type, vision_config=vision, initializer_range=VLM_INIT,
        text_config=dict(
            vocab_size=_round_up(len(tokenizer), 64), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512, initializer_range=VLM_INIT,
            pad_token_id=ids("<|endoftext|>"), bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"), **text,
        ),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
    )
    _save(folder, _vlm_class(config), config, processor)
    # The real checkpoints ship a video processor config too (its class needs torchvision, so it is written as
    # JSON): AutoProcessor then fails here as it does on the real ones, and mmkit must load without it.
    video = {
        "video_processor_type": processor_cls.replace("Processor", "VideoProcessor").replace("Qwen2_5_VL", "Qwen2VL"),
        "processor_class": processor_cls, "patch_size": patch, "merge_size": 2, "temporal_patch_size": 2,
        "size": dict(image_processor.size),
    }
    (Path(folder) / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return Path(folder)


def _vlm_class(config):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText._model_mapping[type(config)]


def build_qwen2_vl(folder: Path) -> Path:
    # Qwen2-VL-2B: 14-pixel patches, 2x2 merged per token; mrope sections [16, 24, 24] of head_dim 128
    vision = dict(depth=2, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=14, spatial_merge_size=2, initializer_range=VLM_INIT)
    text = dict(rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0})
    return _qwen_vl(folder, "qwen2_vl", 14, vision, text, "Qwen2VLProcessor")


def build_qwen2_5_vl(folder: Path) -> Path:
    # Qwen2.5-VL: SwiGLU vision blocks, window attention (fullatt_block_indexes), RMSNorm
    vision = dict(
        depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32, patch_size=14, spatial_merge_size=2,
        window_size=56, fullatt_block_indexes=[1], initializer_range=VLM_INIT,
    )
    text = dict(rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0})
    return _qwen_vl(folder, "qwen2_5_vl", 14, vision, text, "Qwen2_5_VLProcessor")


SMOLVLM_TEMPLATE = (  # HuggingFaceTB/SmolVLM-256M-Instruct's
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == 'image' %}"
    "{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def build_smolvlm(folder: Path) -> Path:
    from tokenizers import AddedToken
    from transformers import GPT2Tokenizer, SmolVLMConfig, SmolVLMImageProcessorPil, SmolVLMProcessor

    from mmkit.models.multimodal.vlm import _image_only

    # SmolVLM-256M-Instruct: GPT-2 BPE (SmolLM2), <|im_start|> / <end_of_utterance>, the image tags and one tag
    # per tile position; images resized to a longest edge, cut into square tiles + a global view, each tile
    # 64 tokens after the pixel shuffle (here: 32-pixel tiles of 8-pixel patches, 4 tokens)
    vocab, merges = byte_level_bpe(head=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tokenizer = GPT2Tokenizer(
        vocab=vocab, merges=merges, bos_token="<|im_start|>", eos_token="<end_of_utterance>", unk_token="<|endoftext|>",
        pad_token="<|im_end|>", model_max_length=8192, add_prefix_space=False,
    )
    tiles = [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in [
        "<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>", *tiles,
    ]])
    image_processor = SmolVLMImageProcessorPil(
        do_image_splitting=True, size={"longest_edge": 2 * IMAGE_SIZE}, max_image_size={"longest_edge": IMAGE_SIZE},
    )
    processor = _image_only(SmolVLMProcessor)(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_len=4, chat_template=SMOLVLM_TEMPLATE,
    )
    text = _rope_lm("LlamaConfig", tokenizer, vocab_size=_round_up(len(tokenizer), 64), head_dim=16, initializer_range=VLM_INIT)
    config = SmolVLMConfig(
        vision_config=dict(_tiny(image_size=IMAGE_SIZE, patch_size=PATCH), initializer_range=VLM_INIT), text_config=text.to_dict(),
        scale_factor=2, image_token_id=tokenizer.convert_tokens_to_ids("<image>"), pad_token_id=tokenizer.pad_token_id,
    )
    return _save(folder, _vlm_class(config), config, processor)


LLAVA_NEXT_MISTRAL_TEMPLATE = (  # llava-hf/llava-v1.6-mistral-7b-hf's, user and assistant turns
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' }}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<image>\n' }}{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{{ ' [/INST]' }}{% elif message['role'] == 'assistant' %}{% for content in message['content'] %}"
    "{{ content['text'] }}{% endfor %}{{ eos_token }}{% endif %}{% endfor %}"
)


def build_llava_next(folder: Path) -> Path:
    from transformers import LlavaNextConfig, LlavaNextImageProcessorPil, LlavaNextProcessor

    # llava-v1.6-mistral-7b-hf: the Mistral tokenizer + <image>; CLIP-L/336 tiles chosen from image_grid_pinpoints
    # (the base view + up to 2x2 tiles, newline tokens after each row of tile features)
    tokenizer = _llama_tokenizer(
        extra_tail=["<image>"], legacy=True, pad_token="<unk>", padding_side="left",
        extra_special_tokens={"image_token": "<image>"},
    )
    pinpoints = [[IMAGE_SIZE, 2 * IMAGE_SIZE], [2 * IMAGE_SIZE, IMAGE_SIZE], [2 * IMAGE_SIZE, 2 * IMAGE_SIZE]]
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_grid_pinpoints=pinpoints,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=LLAVA_NEXT_MISTRAL_TEMPLATE,
    )
    text = _rope_lm(
        "MistralConfig", tokenizer, vocab_size=_round_up(len(tokenizer), 64), num_attention_heads=4, num_key_value_heads=2,
        head_dim=8, sliding_window=4096, initializer_range=VLM_INIT,
    )
    config = LlavaNextConfig(
        vision_config=_vision("CLIPVisionConfig", initializer_range=VLM_INIT).to_dict(), text_config=text.to_dict(),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="default", vision_feature_layer=-2, projector_hidden_act="gelu",
    )
    return _save(folder, _vlm_class(config), config, processor, tokenizer_config=_llama_keys(legacy=True))


QWEN3_VL_TEMPLATE = (  # Qwen/Qwen3-VL-2B-Instruct's, without the tools, video and reasoning branches: no default system turn
    "{%- if messages[0].role == 'system' %}{{- '<|im_start|>system\n' }}{%- if messages[0].content is string %}"
    "{{- messages[0].content }}{%- else %}{%- for content in messages[0].content %}{%- if 'text' in content %}"
    "{{- content.text }}{%- endif %}{%- endfor %}{%- endif %}{{- '<|im_end|>\n' }}{%- endif %}"
    "{%- set image_count = namespace(value=0) %}{%- for message in messages %}{%- if message.role == 'user' %}"
    "{{- '<|im_start|>' + message.role + '\n' }}{%- if message.content is string %}{{- message.content }}{%- else %}"
    "{%- for content in message.content %}{%- if content.type == 'image' or 'image' in content or 'image_url' in content %}"
    "{%- set image_count.value = image_count.value + 1 %}{%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}"
    "<|vision_start|><|image_pad|><|vision_end|>{%- elif 'text' in content %}{{- content.text }}{%- endif %}{%- endfor %}"
    "{%- endif %}{{- '<|im_end|>\n' }}{%- elif message.role == 'assistant' %}{{- '<|im_start|>' + message.role + '\n' }}"
    "{%- if message.content is string %}{{- message.content }}{%- else %}{%- for content_item in message.content %}"
    "{%- if 'text' in content_item %}{{- content_item.text }}{%- endif %}{%- endfor %}{%- endif %}{{- '<|im_end|>\n' }}"
    "{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)
QWEN3_VL_SPECIALS = [
    *QWEN_VL_SPECIALS, "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>",
]  # Qwen3-VL's added tokens from 151643, in order


def build_qwen3_vl(folder: Path) -> Path:
    from transformers import Qwen2VLImageProcessorPil, Qwen3VLConfig, Qwen3VLProcessor

    from mmkit.models.multimodal.vlm import _image_only

    # Qwen/Qwen3-VL-2B-Instruct: 16-pixel patches, 2x2 merged per token (one token per 32x32 pixels), learned
    # position embeddings on a square grid (2304 = 48^2), DeepStack: vision blocks [5, 11, 17] feed the first LM
    # layers through their own mergers; interleaved mrope sections [24, 20, 20] of head_dim 128; tied embeddings;
    # mean/std 0.5. Here: 2 vision blocks, block 0 feeds DeepStack; an 8x8 position grid; head_dim 16.
    patch = 16
    tokenizer = _qwen_tokenizer(QWEN3_VL_SPECIALS, "<|im_end|>", QWEN3_VL_TEMPLATE, 262144)
    ids = tokenizer.convert_tokens_to_ids
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=patch, merge_size=2, temporal_patch_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3,
        size={"shortest_edge": 4 * (2 * patch) ** 2, "longest_edge": 16 * (2 * patch) ** 2},  # 4 to 16 image tokens
    )
    processor = _image_only(Qwen3VLProcessor)(image_processor=image_processor, tokenizer=tokenizer, chat_template=QWEN3_VL_TEMPLATE)
    config = Qwen3VLConfig(
        vision_config=dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32, patch_size=patch,
            spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64, deepstack_visual_indexes=[0],
            initializer_range=VLM_INIT,
        ),
        text_config=dict(
            vocab_size=_round_up(len(tokenizer), 64), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=512, initializer_range=VLM_INIT,
            rope_parameters={"rope_type": "default", "mrope_section": [4, 2, 2], "mrope_interleaved": True, "rope_theta": 5000000.0},
            pad_token_id=ids("<|endoftext|>"),
        ),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"), tie_word_embeddings=True,
    )
    _save(folder, _vlm_class(config), config, processor)
    # As the real checkpoint: a video processor config whose class needs torchvision (AutoProcessor fails here).
    video = {
        "video_processor_type": "Qwen3VLVideoProcessor", "processor_class": "Qwen3VLProcessor", "patch_size": patch,
        "merge_size": 2, "temporal_patch_size": 2, "size": dict(image_processor.size),
    }
    (Path(folder) / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return Path(folder)


GEMMA3_TEMPLATE = (  # google/gemma-3-4b-it's (chat_template.json)
    "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}\n    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}\n    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n{%- endif -%}\n{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
    "    {%- endif -%}\n    {%- if (message['role'] == 'assistant') -%}\n        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n        {%- set role = message['role'] -%}\n    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n        {%- endfor -%}\n    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n    {%- endif -%}\n    {{ '<end_of_turn>\n' }}\n"
    "{%- endfor -%}\n{%- if add_generation_prompt -%}\n    {{'<start_of_turn>model\n'}}\n{%- endif -%}\n"
)


def build_gemma3(folder: Path) -> Path:
    from transformers import Gemma3Config, Gemma3ImageProcessorPil, Gemma3Processor, GemmaTokenizer

    # google/gemma-3-4b-it: the Gemma tokenizer (<pad>=0 <eos>=1 <bos>=2 <unk>=3 <mask>=4, bos added), the turn
    # tokens, <start_of_image> / <end_of_image> and <image_soft_token> named as boi/eoi/image tokens; SigLIP at
    # 896 px / 14-pixel patches, the projector average-pools the 64x64 patches to mm_tokens_per_image = 256
    # (processor image_seq_length 256), mean/std 0.5, no pan-and-scan. Here: 32 px, 8-pixel patches, 4 tokens.
    boi, eoi, soft = "<start_of_image>", "<end_of_image>", "<image_soft_token>"
    vocab, merges = sentencepiece_bpe(GEMMA_HEAD + ["<start_of_turn>", "<end_of_turn>", boi, eoi], tail=[soft], bare_words=True)
    tokenizer = GemmaTokenizer(
        vocab=vocab, merges=merges, add_bos_token=True, add_eos_token=False, model_max_length=HUGE,
        extra_special_tokens={"boi_token": boi, "eoi_token": eoi, "image_token": soft},
    )
    # after the named ones: passed together, additional_special_tokens is dropped (<start_of_turn> would split)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    image_processor = Gemma3ImageProcessorPil(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_mean=[0.5] * 3, image_std=[0.5] * 3, do_pan_and_scan=False,
    )
    processor = Gemma3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_length=4, chat_template=GEMMA3_TEMPLATE)
    text = _rope_lm(
        "Gemma3TextConfig", tokenizer, vocab_size=_round_up(len(tokenizer), 64), num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16, sliding_window=512, initializer_range=VLM_INIT,
    )
    config = Gemma3Config(
        vision_config=dict(_vision("SiglipVisionConfig").to_dict(), vision_use_head=False), text_config=text.to_dict(),
        mm_tokens_per_image=4, boi_token_index=tokenizer.convert_tokens_to_ids(boi),
        eoi_token_index=tokenizer.convert_tokens_to_ids(eoi), image_token_index=tokenizer.convert_tokens_to_ids(soft),
        initializer_range=VLM_INIT,
    )

    def draw_projection(model):  # zero-initialised: a random Gemma 3 would ignore the image
        model.model.multi_modal_projector.mm_input_projection_weight.normal_(0, VLM_INIT)

    return _save(folder, _vlm_class(config), config, processor, after_init=draw_projection)
IDEFICS3_TEMPLATE = (  # HuggingFaceM4/Idefics3-8B-Llama3's (SmolVLM's, after <|begin_of_text|>)
    "<|begin_of_text|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == 'image' %}"
    "{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def build_idefics3(folder: Path) -> Path:
    from tokenizers import AddedToken
    from transformers import Idefics3Config, Idefics3ImageProcessorPil, Idefics3Processor, PreTrainedTokenizerFast

    # Idefics3-8B-Llama3: the Llama 3 byte-level BPE (<|begin_of_text|> bos, <|end_of_text|> eos, reserved
    # specials, no unk) + <fake_token_around_image> <image> <end_of_utterance> after it (the processor adds them;
    # the tile tags <row_i_col_j> / <global-img> stay plain text); SigLIP 364-pixel tiles of 14-pixel patches,
    # pixel-shuffled by 2: 169 tokens per tile (here: 32-pixel tiles of 8-pixel patches, 4 tokens).
    head = ["<|begin_of_text|>", "<|end_of_text|>"] + [f"<|reserved_special_token_{i}|>" for i in range(2)]
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    vocab, merges = byte_level_bpe(tail=head)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=True))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in head])
    # Llama 3's tokenizer.json prepends <|begin_of_text|> itself, so a rendered chat prompt starts with two
    backend.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B", special_tokens=[("<|begin_of_text|>", vocab["<|begin_of_text|>"])],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>",
        pad_token="<|reserved_special_token_0|>", model_max_length=HUGE,
    )
    image_processor = Idefics3ImageProcessorPil(
        do_image_splitting=True, size={"longest_edge": 2 * IMAGE_SIZE}, max_image_size={"longest_edge": IMAGE_SIZE},
    )
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=4, chat_template=IDEFICS3_TEMPLATE)
    text = _rope_lm("LlamaConfig", tokenizer, vocab_size=_round_up(len(tokenizer), 64), head_dim=16, initializer_range=VLM_INIT)
    config = Idefics3Config(
        vision_config=dict(_tiny(image_size=IMAGE_SIZE, patch_size=PATCH), initializer_range=VLM_INIT), text_config=text.to_dict(),
        scale_factor=2, image_token_id=tokenizer.convert_tokens_to_ids("<image>"), pad_token_id=tokenizer.pad_token_id,
    )
    # The real tokenizer_config.json names PreTrainedTokenizerFast (transformers 5 writes TokenizersBackend)
    return _save(folder, _vlm_class(config), config, processor, tokenizer_config={"tokenizer_class": "PreTrainedTokenizerFast"})


LLAVA_ONEVISION_TEMPLATE = (  # llava-hf/llava-onevision-qwen2-0.5b-ov-hf's
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + ' '}}{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}"
    "{# Render all video then #}{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<video>' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ '\n' + content['text'] }}{% endfor %}"
    "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}"
    "{{ '\n' + content['text'] }}{% endgeneration %}{% endfor %}{% endif %}{{'<|im_end|>'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_llava_onevision(folder: Path) -> Path:
    from transformers import LlavaOnevisionConfig, LlavaOnevisionImageProcessorPil, LlavaOnevisionProcessor

    from mmkit.models.multimodal.vlm import _image_only

    # llava-onevision-qwen2-0.5b-ov-hf: the Qwen2 tokenizer + <image> (151646) and <video> (151647); SigLIP-384
    # (no CLS: vision_feature_select_strategy full, 729 tokens per view), anyres_max_9 tiles from
    # image_grid_pinpoints with a newline token per row of tile features and one after the image.
    from tokenizers import AddedToken

    tokenizer = _qwen_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "<|im_end|>", LLAVA_ONEVISION_TEMPLATE, 32768)
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in ("<image>", "<video>")])
    tokenizer.padding_side = "left"
    pinpoints = [[IMAGE_SIZE, 2 * IMAGE_SIZE], [2 * IMAGE_SIZE, IMAGE_SIZE], [2 * IMAGE_SIZE, 2 * IMAGE_SIZE]]
    image_processor = LlavaOnevisionImageProcessorPil(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_grid_pinpoints=pinpoints, do_pad=True,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    )
    processor = _image_only(LlavaOnevisionProcessor)(
        image_processor=image_processor, tokenizer=tokenizer, num_image_tokens=(IMAGE_SIZE // PATCH) ** 2,
        vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9", chat_template=LLAVA_ONEVISION_TEMPLATE,
    )
    ids = tokenizer.convert_tokens_to_ids
    text = _rope_lm(
        "Qwen2Config", tokenizer, vocab_size=_round_up(len(tokenizer), 64), num_attention_heads=2, num_key_value_heads=2,
        tie_word_embeddings=True, use_sliding_window=False, initializer_range=VLM_INIT, bos_token_id=ids("<|endoftext|>"),
        pad_token_id=ids("<|endoftext|>"),
    )
    config = LlavaOnevisionConfig(
        vision_config=_vision("SiglipVisionConfig", initializer_range=VLM_INIT).to_dict(), text_config=text.to_dict(),
        image_token_index=ids("<image>"), video_token_index=ids("<video>"), image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="full", vision_feature_layer=-1, vision_aspect_ratio="anyres_max_9", tie_word_embeddings=True,
    )
    return _save(folder, _vlm_class(config), config, processor)


# --- the table --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Replica:
    family: str  # "bert", "roberta", ..., "marian", "vit", "clip", "blip2-opt", "blip2-t5", "llava"
    real_checkpoint: str  # the Hub id whose classes it copies (documentation only)
    tokenizer_class: str  # the class the saved tokenizer_config.json names, or the processor class
    build: Callable[[Path], Path]  # saves a checkpoint folder and returns it
    architecture: str  # the model class saved (config.architectures[0])
    auto_model: str  # the Auto class that loads that architecture
    kind: str = "text"  # text | seq2seq | vision | vision-text
    loaded_class: str | None = None  # the tokenizer class AutoTokenizer (also inside AutoProcessor) returns in
    # transformers 5.24 where it differs from the one the files name
    text_tokenizer_class: str | None = None  # processors: the class their tokenizer_config.json names
    notes: str = ""

    @property
    def expected_loaded_class(self) -> str:
        """The tokenizer class the Auto loaders give (for processors: the class of `processor.tokenizer`)."""
        return self.loaded_class or self.text_tokenizer_class or self.tokenizer_class


_TABLE = [
    Replica("bert", "bert-base-uncased", "BertTokenizer", build_bert, "BertForMaskedLM", "AutoModelForMaskedLM"),
    Replica("roberta", "roberta-base", "RobertaTokenizer", build_roberta, "RobertaForMaskedLM", "AutoModelForMaskedLM"),
    Replica(
        "xlm-roberta", "xlm-roberta-base", "XLMRobertaTokenizer", build_xlm_roberta, "XLMRobertaForMaskedLM",
        "AutoModelForMaskedLM",
    ),
    Replica(
        "electra", "google/electra-small-discriminator", "BertTokenizer", build_electra, "ElectraForPreTraining",
        "AutoModelForPreTraining", notes="transformers 5 aliases ElectraTokenizer to BertTokenizer",
    ),
    Replica(
        "distilbert", "distilbert-base-uncased", "DistilBertTokenizer", build_distilbert, "DistilBertForMaskedLM",
        "AutoModelForMaskedLM",
    ),
    Replica("deberta", "microsoft/deberta-base", "DebertaTokenizer", build_deberta, "DebertaModel", "AutoModel"),
    Replica(
        "deberta-v2", "microsoft/deberta-v3-small", "DebertaV2Tokenizer", build_deberta_v2, "DebertaV2Model",
        "AutoModel",
    ),
    Replica("mpnet", "microsoft/mpnet-base", "MPNetTokenizer", build_mpnet, "MPNetForMaskedLM", "AutoModelForMaskedLM"),
    Replica("gpt2", "gpt2", "GPT2Tokenizer", build_gpt2, "GPT2LMHeadModel", "AutoModelForCausalLM"),
    Replica(
        "llama", "meta-llama/Llama-2-7b-hf", "LlamaTokenizer", build_llama, "LlamaForCausalLM", "AutoModelForCausalLM",
    ),
    Replica("qwen2", "Qwen/Qwen2-0.5B", "Qwen2Tokenizer", build_qwen2, "Qwen2ForCausalLM", "AutoModelForCausalLM"),
    Replica("qwen3", "Qwen/Qwen3-0.6B", "Qwen2Tokenizer", build_qwen3, "Qwen3ForCausalLM", "AutoModelForCausalLM"),
    Replica(
        "mistral", "mistralai/Mistral-7B-v0.1", "LlamaTokenizer", build_mistral, "MistralForCausalLM",
        "AutoModelForCausalLM", loaded_class="TokenizersBackend",
        notes="model_type mistral maps to TokenizersBackend (MistralCommonBackend with mistral-common installed)",
    ),
    Replica("gemma", "google/gemma-2b", "GemmaTokenizer", build_gemma, "GemmaForCausalLM", "AutoModelForCausalLM"),
    Replica(
        "phi3", "microsoft/Phi-3-mini-4k-instruct", "LlamaTokenizer", build_phi3, "Phi3ForCausalLM",
        "AutoModelForCausalLM", loaded_class="TokenizersBackend",
        notes="phi3 is in MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS: AutoTokenizer ignores the named LlamaTokenizer",
    ),
    Replica(
        "t5", "t5-small", "T5Tokenizer", build_t5, "T5ForConditionalGeneration", "AutoModelForSeq2SeqLM", "seq2seq",
    ),
    Replica(
        "flan-t5", "google/flan-t5-small", "T5Tokenizer", build_flan_t5, "T5ForConditionalGeneration",
        "AutoModelForSeq2SeqLM", "seq2seq",
    ),
    Replica(
        "bart", "facebook/bart-base", "RobertaTokenizer", build_bart, "BartModel", "AutoModelForSeq2SeqLM", "seq2seq",
        notes="transformers 5 aliases BartTokenizer to RobertaTokenizer",
    ),
    Replica(
        "mbart", "facebook/mbart-large-50-many-to-many-mmt", "MBart50Tokenizer", build_mbart,
        "MBartForConditionalGeneration", "AutoModelForSeq2SeqLM", "seq2seq",
    ),
    Replica(
        "nllb", "facebook/nllb-200-distilled-600M", "NllbTokenizer", build_nllb, "M2M100ForConditionalGeneration",
        "AutoModelForSeq2SeqLM", "seq2seq", notes="model_type m2m_100 but tokenizer_class NllbTokenizer (config too)",
    ),
    Replica(
        "marian", "Helsinki-NLP/opus-mt-en-de", "MarianTokenizer", build_marian, "MarianMTModel",
        "AutoModelForSeq2SeqLM", "seq2seq",
    ),
    Replica(
        "marian-zh", "Helsinki-NLP/opus-mt-en-zh", "MarianTokenizer", build_marian_zh, "MarianMTModel",
        "AutoModelForSeq2SeqLM", "seq2seq", notes="multi-target: sources start with >>cmn_Hans<< etc.",
    ),
    Replica(
        "vit", "google/vit-base-patch16-224", "ViTImageProcessor", build_vit, "ViTForImageClassification",
        "AutoModelForImageClassification", "vision",
    ),
    Replica(
        "clip", "openai/clip-vit-base-patch32", "CLIPProcessor", build_clip, "CLIPModel", "AutoModel", "vision-text",
        text_tokenizer_class="CLIPTokenizer",
    ),
    Replica(
        "blip2-opt", "Salesforce/blip2-opt-2.7b", "Blip2Processor", build_blip2_opt, "Blip2ForConditionalGeneration",
        "AutoModelForImageTextToText", "vision-text", text_tokenizer_class="GPT2Tokenizer",
    ),
    Replica(
        "blip2-t5", "Salesforce/blip2-flan-t5-xl", "Blip2Processor", build_blip2_t5, "Blip2ForConditionalGeneration",
        "AutoModelForImageTextToText", "vision-text", text_tokenizer_class="T5Tokenizer",
    ),
    Replica(
        "blip", "Salesforce/blip-itm-base-coco", "BlipProcessor", build_blip, "BlipForImageTextRetrieval",
        "BlipForImageTextRetrieval", "vision-text", text_tokenizer_class="BertTokenizer",
        notes="no Auto class loads the ITM architecture (AutoModel gives BlipModel, without the ITM text encoder)",
    ),
    Replica(
        "llava", "llava-hf/llava-1.5-7b-hf", "LlavaProcessor", build_llava, "LlavaForConditionalGeneration",
        "AutoModelForImageTextToText", "vision-text", text_tokenizer_class="LlamaTokenizer",
        loaded_class="TokenizersBackend",
        notes="llava is in MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS: its tokenizer loads as TokenizersBackend",
    ),
    Replica(
        "qwen2-vl", "Qwen/Qwen2-VL-2B-Instruct", "Qwen2VLProcessor", build_qwen2_vl, "Qwen2VLForConditionalGeneration",
        "AutoModelForImageTextToText", "vision-text", text_tokenizer_class="Qwen2Tokenizer",
        notes="AutoProcessor needs the torchvision video processor: mmkit builds it without its video part",
    ),
    Replica(
        "qwen2.5-vl", "Qwen/Qwen2.5-VL-3B-Instruct", "Qwen2_5_VLProcessor", build_qwen2_5_vl,
        "Qwen2_5_VLForConditionalGeneration", "AutoModelForImageTextToText", "vision-text",
        text_tokenizer_class="Qwen2Tokenizer",
        notes="AutoProcessor needs the torchvision video processor: mmkit builds it without its video part",
    ),
    Replica(
        "smolvlm", "HuggingFaceTB/SmolVLM-256M-Instruct", "SmolVLMProcessor", build_smolvlm,
        "SmolVLMForConditionalGeneration", "AutoModelForImageTextToText", "vision-text",
        text_tokenizer_class="GPT2Tokenizer", loaded_class="TokenizersBackend",
        notes="its tokenizer loads as TokenizersBackend; the processor needs num2words",
    ),
    Replica(
        "llava-next", "llava-hf/llava-v1.6-mistral-7b-hf", "LlavaNextProcessor", build_llava_next,
        "LlavaNextForConditionalGeneration", "AutoModelForImageTextToText", "vision-text",
        text_tokenizer_class="LlamaTokenizer", loaded_class="TokenizersBackend",
        notes="llava_next is in MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS: its tokenizer loads as TokenizersBackend",
    ),
    Replica(
        "qwen3-vl", "Qwen/Qwen3-VL-2B-Instruct", "Qwen3VLProcessor", build_qwen3_vl, "Qwen3VLForConditionalGeneration",
        "AutoModelForImageTextToText", "vision-text", text_tokenizer_class="Qwen2Tokenizer",
        notes="AutoProcessor needs the torchvision video processor: mmkit builds it without its video part",
    ),
    Replica(
        "gemma3", "google/gemma-3-4b-it", "Gemma3Processor", build_gemma3, "Gemma3ForConditionalGeneration",
        "AutoModelForImageTextToText", "vision-text", text_tokenizer_class="GemmaTokenizer",
    ),
    Replica(
        "idefics3", "HuggingFaceM4/Idefics3-8B-Llama3", "Idefics3Processor", build_idefics3,
        "Idefics3ForConditionalGeneration", "AutoModelForImageTextToText", "vision-text",
        text_tokenizer_class="PreTrainedTokenizerFast", loaded_class="TokenizersBackend",
        notes="a Llama 3 tokenizer (tokenizer.json only; loads as TokenizersBackend); unlike SmolVLM, no num2words",
    ),
    Replica(
        "llava-onevision", "llava-hf/llava-onevision-qwen2-0.5b-ov-hf", "LlavaOnevisionProcessor", build_llava_onevision,
        "LlavaOnevisionForConditionalGeneration", "AutoModelForImageTextToText", "vision-text",
        text_tokenizer_class="Qwen2Tokenizer",
        notes="AutoProcessor needs the torchvision video processor: mmkit builds it without its video part",
    ),
]
REPLICAS: dict[str, Replica] = {r.family: r for r in _TABLE}


def build_replica(name: str, folder: Path) -> Path:
    """Build the tiny replica of family `name` into `folder` (created if needed); returns the folder."""
    if name not in REPLICAS:
        raise KeyError(f"no replica {name!r}; known: {', '.join(REPLICAS)}")
    return REPLICAS[name].build(Path(folder))
