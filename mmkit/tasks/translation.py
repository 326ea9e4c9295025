"""Translation on encoder-decoder (Marian/opus-mt, T5/mT5, BART/mBART) and decoder-only (GPT-style) backbones.

Seq2seq models read the source and learn the target as `labels`. Decoder-only models read one sequence built
from `translation.template` (e.g. `{source} => {target}`): the prompt part is masked out of the loss with -100,
so only the target tokens (and the eos that ends them) are learned, and generation continues the prompt until
eos. Evaluation generates (greedy or beam search) and scores with sacrebleu directly: BLEU with a tokenizer
fit for the target language, and chrF. `model.init=scratch` builds the architecture with random weights, for
languages or domains with no checkpoint.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from mmkit.config import Config
from mmkit.data import Split, check_text_column
from mmkit.errors import UserError
from mmkit.tasks.base import EvalResult, Task, TaskData
from mmkit.tasks.sentiment import max_length_for, model_length_limit

IGNORE = -100
SAMPLES_FILE = "translations.jsonl"
# Han ideographs (CJK Unified + Extension A + Compatibility): a target written in them gets sacrebleu's `zh`
# tokenizer, which splits every character (13a would count a whole unspaced sentence as one word).
_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def bleu_tokenizer_for(setting: str, target_lang: str | None, references: list[str]) -> str:
    """The sacrebleu tokenizer: the configured one, else by target language (zh -> zh, others 13a)."""
    if setting != "auto":
        return setting
    if target_lang:
        return "zh" if target_lang.lower().split("_")[0].split("-")[0] in ("zh", "cmn", "yue", "zho") else "13a"
    with_han = sum(1 for ref in references if _HAN.search(ref))
    return "zh" if references and with_han * 2 >= len(references) else "13a"


def split_template(template: str) -> tuple[str, str]:
    """`{source} => {target}` -> ("{source} =>", " {target}"): the prompt, and the part the loss is on.

    Whitespace before {target} moves to the target side: BPE tokenizers glue a space to the word after it
    ("Ġdog"), so a prompt ending in a bare space would tokenize differently from running text."""
    if template.count("{source}") != 1 or template.count("{target}") != 1 or template.index("{source}") > template.index("{target}"):
        raise UserError(
            f"translation.template {template!r} must hold {{source}} once and, after it, {{target}} once, e.g. '{{source}} => {{target}}'"
        )
    prompt, rest = template.split("{target}")
    stripped = prompt.rstrip()
    return stripped, prompt[len(stripped):] + "{target}" + rest


class TranslationTask(Task):
    name = "translation"
    head = "generation"
    default_metric = "bleu"
    # Raw texts for the metrics and the prompt alone (decoder-only) for generation: evaluation only.
    eval_only_columns = ("prompt_ids", "reference", "source_text")
    pipeline_tag = "translation"
    hub_tags = ("translation",)
    example_input = {"text": "A man rides a bike."}

    def __init__(self, cfg: Config, spec):
        super().__init__(cfg, spec)
        self.decoder_only = spec.kind == "decoder"  # else encoder-decoder (seq2seq)

    # --- data ---------------------------------------------------------------------------------------------
    def load_data(self, splits: dict[str, Split], labels: list[str] | None = None) -> TaskData:
        cfg = self.cfg
        t = cfg.translation
        keys = {t.source_column: "translation.source_column", t.target_column: "translation.target_column"}
        for split in splits.values():
            columns = split.dataset.column_names
            if "translation" in columns and t.source_column not in columns:
                split.dataset = self._from_translation_dicts(split, cfg)
            else:
                split.require_columns(t.source_column, t.target_column, config_key_of=keys)
                dataset = split.dataset.select_columns([t.source_column, t.target_column])
                renames = {old: new for old, new in ((t.source_column, "source"), (t.target_column, "target")) if old != new}
                split.dataset = dataset.rename_columns(renames) if renames else dataset
            # Empty or non-text rows stop the run with the file and line (never dropped silently).
            check_text_column(split, "source", keys.get(t.source_column, "translation.source_column"))
            check_text_column(split, "target", keys.get(t.target_column, "translation.target_column"))
        return TaskData(splits=splits, labels=None)

    @staticmethod
    def _from_translation_dicts(split: Split, cfg: Config):
        """Hub `translation` rows ({"translation": {"en": ..., "de": ...}}) -> source / target columns."""
        src, tgt = cfg.translation.source_lang, cfg.translation.target_lang
        pairs = split.dataset["translation"]
        first = pairs[0] if isinstance(pairs[0], dict) else {}
        if not src or not tgt:
            raise UserError(
                f"{split.origin}: rows hold a 'translation' dict (languages {', '.join(first) or 'none'}); "
                "set translation.source_lang and translation.target_lang to two of them"
            )
        sources, targets = [], []
        for i, pair in enumerate(pairs):
            if not isinstance(pair, dict) or src not in pair or tgt not in pair:
                shown = ", ".join(pair) if isinstance(pair, dict) else type(pair).__name__
                raise UserError(f"{split.where(i)}: 'translation' has no '{src}' and '{tgt}' (it has: {shown}); fix the row or the languages")
            sources.append(pair[src])
            targets.append(pair[tgt])
        import datasets

        return datasets.Dataset.from_dict({"source": sources, "target": targets})

    def load_processor(self, run=None):
        tokenizer = self.spec.load_processor(run)
        if tokenizer.eos_token_id is None:
            raise UserError(
                f"the tokenizer of {self.cfg.model.tokenizer or self.spec.source} has no eos token; translation needs one to end "
                "targets (train one with `mmkit tokenizer train`, which sets </s>)"
            )
        if tokenizer.pad_token is None:
            # GPT-style tokenizers have no pad token; padding never carries loss (labels pad with -100) and the
            # attention mask hides it, so eos can stand in.
            tokenizer.pad_token = tokenizer.eos_token
        self._set_language_codes(tokenizer)
        return tokenizer

    def _set_language_codes(self, tokenizer) -> None:
        """Many-to-many tokenizers (mBART-50, NLLB, M2M100) mark the source language on the source and the target
        language on the target: both come from translation.source_lang / target_lang (never a silent default)."""
        if not hasattr(tokenizer, "src_lang"):
            return
        t = self.cfg.translation
        vocab = tokenizer.get_vocab()
        codes = [tok for tok in getattr(tokenizer, "additional_special_tokens", None) or [] if tok in vocab]
        for key, code in (("source_lang", t.source_lang), ("target_lang", t.target_lang)):
            if not code or code not in vocab:
                shown = ", ".join(codes[:8]) + (", ..." if len(codes) > 8 else "")
                raise UserError(
                    f"translation.{key} must be one of this tokenizer's language codes ({shown}); got {code!r}"
                )
        tokenizer.src_lang, tokenizer.tgt_lang = t.source_lang, t.target_lang

    def _source_text(self, text: str) -> str:
        t = self.cfg.translation
        lang = t.target_lang_token
        # opus-mt multi-target models read the target language as a >>xx<< token in front of the source.
        marker = f"{lang} " if lang and lang.startswith(">>") else ""
        return f"{marker}{t.source_prefix}{text}"

    def _forced_bos_id(self, tokenizer) -> int | None:
        """The target language token the decoder must start with: translation.target_lang_token (not an opus-mt
        >>xx<< marker, which goes before the source), or a many-to-many tokenizer's target language code."""
        lang = self.cfg.translation.target_lang_token
        if lang and lang.startswith(">>"):
            return None
        if not lang and hasattr(tokenizer, "tgt_lang"):
            lang = self.cfg.translation.target_lang
        if not lang:
            return None
        token_id = tokenizer.convert_tokens_to_ids(lang)
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise UserError(f"translation.target_lang_token {lang!r} is not a token of this tokenizer")
        return token_id

    def encoder(self, tokenizer):
        """(source, target) -> the row's token ids, as training and evaluation read it."""
        return self._decoder_encoder(tokenizer) if self.decoder_only else self._seq2seq_encoder(tokenizer)

    def prepare(self, split: Split, tokenizer, labels: list[str] | None):
        encode = self.encoder(tokenizer)

        def tokenize(rows, indices):
            out: dict[str, list] = {k: [] for k in ("input_ids", "attention_mask", "labels", "prompt_ids", "source_tokens", "target_tokens", "truncated")}
            for source, target in zip(rows["source"], rows["target"]):
                for key, value in encode(source, target).items():
                    out[key].append(value)
            out["attention_mask"] = [[1] * len(ids) for ids in out["input_ids"]]
            out["reference"] = rows["target"]
            out["source_text"] = rows["source"]
            out["row_index"] = indices
            out["length"] = [len(ids) for ids in out["input_ids"]]
            return out

        dataset = split.dataset.map(
            tokenize, batched=True, with_indices=True, remove_columns=split.dataset.column_names, desc=f"tokenizing {split.name}"
        )
        truncated = sum(dataset["truncated"])
        source_tokens, target_tokens = sum(dataset["source_tokens"]), sum(dataset["target_tokens"])
        notes = [f"{split.name}: {len(dataset):,} pairs, {source_tokens:,} source + {target_tokens:,} target tokens"]
        if truncated:
            notes.append(f"{split.name}: {truncated} of {len(dataset)} pairs truncated (source or target longer than the limit)")
        extra = ["truncated", "source_tokens", "target_tokens"] + ([] if self.decoder_only else ["prompt_ids"])
        return dataset.remove_columns(extra), notes

    def _seq2seq_encoder(self, tokenizer):
        cfg = self.cfg
        max_source = max_length_for(cfg, tokenizer, self.spec)
        max_target = cfg.translation.max_target_length or max_source
        limit = model_length_limit(cfg, tokenizer, self.spec)
        if cfg.translation.max_target_length and limit is not None and max_target > limit[0]:
            raise UserError(
                f"translation.max_target_length={max_target} is more than this model reads ({limit[0]} tokens: {limit[1]}); "
                f"set it to {limit[0]} or less, or leave it empty"
            )
        eos = tokenizer.eos_token_id
        forced_bos = self._forced_bos_id(tokenizer)

        def cut(ids: list[int], limit: int) -> tuple[list[int], bool]:
            if len(ids) <= limit:
                return ids, False
            return (ids[: limit - 1] + [ids[-1]] if ids[-1] == eos else ids[:limit]), True  # keep the closing eos

        def encode(source: str, target: str) -> dict[str, Any]:
            source_ids = tokenizer(self._source_text(source))["input_ids"]
            target_ids = tokenizer(text_target=target)["input_ids"]
            if not target_ids or target_ids[-1] != eos:  # generation stops at eos only if training showed it
                target_ids = target_ids + [eos]
            if forced_bos is not None and target_ids[0] != forced_bos:
                target_ids = [forced_bos] + target_ids
            source_ids, cut_source = cut(source_ids, max_source)
            target_ids, cut_target = cut(target_ids, max_target)
            return {
                "input_ids": source_ids, "labels": target_ids, "prompt_ids": [], "truncated": cut_source or cut_target,
                "source_tokens": len(source_ids), "target_tokens": len(target_ids),
            }

        return encode

    def _decoder_encoder(self, tokenizer):
        cfg = self.cfg
        max_length = max_length_for(cfg, tokenizer, self.spec)
        prompt_template, target_template = split_template(cfg.translation.template)
        eos = tokenizer.eos_token_id

        def encode(source: str, target: str) -> dict[str, Any]:
            prompt_ids = tokenizer(prompt_template.format(source=self._source_text(source)))["input_ids"]
            target_ids = tokenizer(target_template.format(target=target), add_special_tokens=False)["input_ids"] + [eos]
            truncated = len(prompt_ids) + len(target_ids) > max_length
            if truncated:  # keep the start of both: at most half the room for the prompt
                prompt_ids = prompt_ids[: max(max_length // 2, max_length - len(target_ids))]
                target_ids = target_ids[: max_length - len(prompt_ids)]
            return {
                "input_ids": prompt_ids + target_ids,
                "labels": [IGNORE] * len(prompt_ids) + target_ids,  # loss on the target tokens only
                "prompt_ids": prompt_ids, "truncated": truncated,
                "source_tokens": len(prompt_ids), "target_tokens": len(target_ids),
            }

        return encode

    def collator(self, tokenizer):
        return TranslationCollator(tokenizer, decoder_only=self.decoder_only)

    # --- evaluation -----------------------------------------------------------------------------------------
    def generate(self, model, tokenizer, input_ids, attention_mask) -> list[str]:
        """Translations of a batch (left-padded for decoder-only models): generation settings from the config."""
        t = self.cfg.translation
        model = getattr(model, "module", model)  # DDP wraps the model; generate lives on the model itself
        settings: dict[str, Any] = {
            "max_new_tokens": t.max_new_tokens,
            "num_beams": t.num_beams,
            "do_sample": False,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        }
        if t.num_beams > 1:
            settings["length_penalty"] = t.length_penalty
        forced_bos = self._forced_bos_id(tokenizer)
        if forced_bos is not None:
            settings["forced_bos_token_id"] = forced_bos
        settings.update(self.generation_flags)  # synced_gpus under ZeRO-3 / FSDP (set by the evaluation loop)
        output = model.generate(input_ids=input_ids, attention_mask=attention_mask, **settings)
        if self.decoder_only:
            output = output[:, input_ids.shape[1]:]  # the continuation after the (left-padded) prompt
        return [text.strip() for text in tokenizer.batch_decode(output, skip_special_tokens=True)]

    def eval_step(self, model, batch, tokenizer) -> dict[str, Any]:
        references = batch.pop("reference")
        sources = batch.pop("source_text")
        hypotheses = self.generate(model, tokenizer, batch["input_ids"], batch["attention_mask"])
        return {"hypothesis": hypotheses, "reference": list(references), "source": list(sources)}

    def compute_metrics(self, outputs: dict[str, Any], labels: list[str] | None) -> EvalResult:
        from sacrebleu.metrics import BLEU, CHRF

        order = sorted(range(len(outputs["hypothesis"])), key=lambda i: int(outputs["row_index"][i]))
        hypotheses = [outputs["hypothesis"][i] for i in order]
        references = [outputs["reference"][i] for i in order]
        sources = [outputs["source"][i] for i in order]
        t = self.cfg.translation
        tokenize = bleu_tokenizer_for(t.bleu_tokenize, t.target_lang, references)
        try:
            bleu = BLEU(tokenize=tokenize)
        except Exception as err:  # noqa: BLE001 - sacrebleu raises plain errors for unknown/uninstalled tokenizers
            raise UserError(f"translation.bleu_tokenize={tokenize!r}: {err}") from None
        chrf = CHRF()
        bleu_score = bleu.corpus_score(hypotheses, [references])
        chrf_score = chrf.corpus_score(hypotheses, [references])
        metrics: dict[str, Any] = {
            "bleu": float(bleu_score.score),
            "chrf": float(chrf_score.score),
            "bleu_brevity_penalty": float(bleu_score.bp),
            "length_ratio": float(bleu_score.sys_len / max(bleu_score.ref_len, 1)),
            "sentences": float(len(hypotheses)),
            # Strings: how the figures were computed (sacrebleu signatures), kept beside them in metrics.json.
            "bleu_signature": str(bleu.get_signature()),
            "chrf_signature": str(chrf.get_signature()),
        }
        samples = [{"source": s, "reference": r, "hypothesis": h} for s, r, h in zip(sources, references, hypotheses)]
        return EvalResult(metrics=metrics, details={"jsonl_files": {SAMPLES_FILE: samples}})

    def worst_rows(self, outputs: dict[str, Any], labels: list[str] | None, n: int) -> list[dict[str, Any]]:
        """The sentences with the lowest sentence-level chrF (sacrebleu)."""
        from sacrebleu.metrics import CHRF

        chrf = CHRF()
        scored = [
            {"row_index": int(row), "source": s, "reference": r, "hypothesis": h, "chrf": float(chrf.sentence_score(h, [r]).score)}
            for row, s, r, h in zip(outputs["row_index"].tolist(), outputs["source"], outputs["reference"], outputs["hypothesis"])
        ]
        scored.sort(key=lambda r: (r["chrf"], r["row_index"]))
        return scored[:n]

    def format_metrics(self, result: EvalResult) -> str:
        m = result.metrics
        lines = [
            f"  BLEU {m['bleu']:.2f}   chrF {m['chrf']:.2f}   (brevity penalty {m['bleu_brevity_penalty']:.3f}, "
            f"length ratio {m['length_ratio']:.3f}, {int(m['sentences'])} sentences)",
            f"  {m['bleu_signature']}",
        ]
        for sample in result.details.get("jsonl_files", {}).get(SAMPLES_FILE, [])[:3]:
            lines.append(f"  src {sample['source']}\n  ref {sample['reference']}\n  hyp {sample['hypothesis']}")
        return "\n".join(lines)

    # --- prediction -----------------------------------------------------------------------------------------
    def predict(self, model, tokenizer, labels: list[str] | None, inputs: dict[str, Any]) -> Any:
        """One sentence through the evaluation path (encoding, collator, generation), as a batch of one."""
        import torch

        text = inputs.get("text")
        if not isinstance(text, str) or not text.strip():
            raise UserError('nothing to translate: the input text is empty; pass a sentence, e.g. mmkit predict RUN "A man rides a bike."')
        encoded = self.encoder(tokenizer)(text, "")
        if encoded["truncated"]:  # the source was cut to the length limit: say how much the model read
            if self.decoder_only:
                source = split_template(self.cfg.translation.template)[0].format(source=self._source_text(text))
            else:
                source = self._source_text(text)
            full = len(tokenizer(source, verbose=False)["input_ids"])
            total = len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
            read = max(0, total - (full - encoded["source_tokens"]))
            if read < total:
                print(f"note: the text is {total} tokens; the model read the first {read}", file=sys.stderr, flush=True)
        row = {**encoded, "reference": "", "source_text": text}
        batch = self.collator(tokenizer)([row])
        batch = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        with torch.inference_mode():
            (translation,) = self.eval_step(model, batch, tokenizer)["hypothesis"]
        return {"source": text, "translation": translation}

    def format_prediction(self, prediction: dict[str, Any]) -> str:
        return prediction["translation"]


class TranslationCollator:
    """Training batches: right-padded input_ids / attention_mask and labels padded with -100.

    Evaluation batches (rows carrying their reference text): the generation input only (the prompt, padded on
    the left for decoder-only models so that every row continues from its last real token), plus the texts."""

    def __init__(self, tokenizer, decoder_only: bool):
        self.pad_id = tokenizer.pad_token_id
        self.decoder_only = decoder_only

    @staticmethod
    def _pad(sequences: list[list[int]], value: int, left: bool = False):
        import torch

        width = max(len(s) for s in sequences)
        return torch.tensor([([value] * (width - len(s)) + s) if left else (s + [value] * (width - len(s))) for s in sequences])

    def __call__(self, rows: list[dict]):
        import torch

        if "reference" in rows[0]:
            key = "prompt_ids" if self.decoder_only else "input_ids"
            ids = [row[key] for row in rows]
            batch = {
                "input_ids": self._pad(ids, self.pad_id, left=self.decoder_only),
                "attention_mask": self._pad([[1] * len(s) for s in ids], 0, left=self.decoder_only),
                "reference": [row["reference"] for row in rows],
                "source_text": [row["source_text"] for row in rows],
            }
            if "row_index" in rows[0]:
                batch["row_index"] = torch.tensor([row["row_index"] for row in rows])
            return batch
        ids = [row["input_ids"] for row in rows]
        return {
            "input_ids": self._pad(ids, self.pad_id),
            "attention_mask": self._pad([[1] * len(s) for s in ids], 0),
            "labels": self._pad([row["labels"] for row in rows], IGNORE),
        }


__all__ = ["TranslationTask", "TranslationCollator", "bleu_tokenizer_for", "split_template", "SAMPLES_FILE"]
