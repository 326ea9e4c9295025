"""NER (token classification) on encoder (BERT-style) and decoder (GPT-style) backbones.

Rows are sentences already split into words (`tokens`) with one tag per word (`ner_tags`), from JSONL/CSV,
CoNLL column files or Hub datasets. Chinese data is one character per word. Evaluation is entity-level with
seqeval on whole sentences, reassembled from the windows long sentences are cut into.
"""

from __future__ import annotations

import re
from typing import Any

from mmkit.config import Config
from mmkit.data import Split
from mmkit.errors import UserError
from mmkit.data.labels import class_label_names
from mmkit.data.ner import (
    IGNORE,
    continuation_tags,
    entity_types,
    labels_for_window,
    scheme_of,
    scheme_violations,
    sort_tag_names,
    windows_for_words,
    word_index_for_window,
)
from mmkit.tasks.base import EvalResult, Task, TaskData
from mmkit.tasks.sentiment import max_length_for

# Words for `mmkit predict`: CJK characters one by one (as in Chinese NER data), runs of letters/digits,
# and each punctuation mark on its own (as in CoNLL).
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
WORD_PATTERN = re.compile(rf"[{_CJK}]|[^\s{_CJK}\W]+|[^\w\s]", re.UNICODE)


class NerTask(Task):
    name = "ner"
    head = "token-classification"
    default_metric = "f1"
    eval_only_columns = ("word_index", "gold_words")
    pipeline_tag = "token-classification"
    hub_tags = ("ner", "token-classification")
    example_input = {"text": "Angela Merkel visited Paris"}

    # --- data ---------------------------------------------------------------------------------------------
    def load_data(self, splits: dict[str, Split], labels: list[str] | None = None) -> TaskData:
        cfg = self.cfg
        tokens_col, tags_col = self._columns(splits)
        reference = splits.get("train") or next(iter(splits.values()))
        if labels is not None:
            names, origin = list(labels), "the run's tag set"
        elif cfg.data.labels:
            names, origin = list(cfg.data.labels), "data.labels"
        else:
            names, origin = self._tag_names(reference, tags_col), f"read from {reference.origin}"
        if len(names) < 2:
            raise UserError(f"{reference.origin}: only the tag {names} found; NER needs at least one entity tag and O")
        scheme = scheme_of(names)
        notes = [f"tags ({scheme}, {origin}): {', '.join(names)}"]
        for name, split in splits.items():
            split.dataset, skipped, violations = self._encode(split, cfg, tokens_col, tags_col, names, origin)
            if skipped:
                notes.append(f"{name}: skipped {skipped} bad rows (data.on_bad_row=skip)")
            if violations:
                notes.append(f"{name}: {violations} tags break the {scheme} scheme (an I- with no B- before it); kept as they are")
        return TaskData(splits=splits, labels=names, notes=notes)

    def _columns(self, splits: dict[str, Split]) -> tuple[str, str]:
        tokens_col, tags_col = self.cfg.ner.tokens_column, self.cfg.ner.tags_column
        for split in splits.values():
            if split.row_lines is not None:  # CoNLL files: the reader names the columns
                continue
            split.require_columns(tokens_col, tags_col, config_key_of={tokens_col: "ner.tokens_column", tags_col: "ner.tags_column"})
        return tokens_col, tags_col

    @staticmethod
    def _column_of(split: Split, wanted: str, default: str) -> str:
        return default if split.row_lines is not None else wanted

    def _tag_names(self, split: Split, tags_col: str) -> list[str]:
        col = self._column_of(split, tags_col, "ner_tags")
        feature = split.dataset.features.get(col)
        inner = getattr(feature, "feature", None)
        if getattr(inner, "names", None):  # Hub Sequence(ClassLabel)
            return list(inner.names)
        named = class_label_names(split, col)
        if named:
            return named
        seen: set = set()
        kinds: set = set()
        for i, tags in enumerate(split.dataset[col]):
            for tag in tags or []:
                kinds.add(type(tag).__name__)
                seen.add(tag)
            if len(kinds) > 1:
                raise UserError(
                    f"{split.where(i)}: '{col}' mixes tag names and integers; use one type for every row "
                    "(names like B-PER, or integers with data.labels listing the names)"
                )
        if kinds == {"int"}:
            raise UserError(
                f"{split.origin}: tags are integers but no tag names are known; list them in class-index order "
                "in data.labels (e.g. data.labels=[O,B-PER,I-PER,...])"
            )
        return sort_tag_names({str(t) for t in seen})

    def _encode(self, split: Split, cfg: Config, tokens_col: str, tags_col: str, names: list[str], origin: str):
        """Check every row and turn tags into ids; returns (dataset, skipped rows, scheme violations)."""
        tokens_col = self._column_of(split, tokens_col, "tokens")
        tags_col = self._column_of(split, tags_col, "ner_tags")
        index = {name: i for i, name in enumerate(names)}
        scheme = scheme_of(names)
        skip = cfg.data.on_bad_row == "skip"
        keep, ids_of_rows, skipped, violations = [], [], 0, 0
        for i, (words, tags) in enumerate(zip(split.dataset[tokens_col], split.dataset[tags_col])):
            problem = self._row_problem(words, tags, index, names, origin)
            if problem:
                if skip:
                    skipped += 1
                    continue
                raise UserError(f"{split.where(i)}: {problem}")
            ids = [tag if isinstance(tag, int) else index[tag] for tag in tags]
            violations += scheme_violations([names[t] for t in ids], scheme)
            keep.append(i)
            ids_of_rows.append(ids)
        if not keep:
            raise UserError(f"{split.origin}: no usable rows left in the {split.name} split")
        dataset = split.dataset.select(keep) if skipped else split.dataset
        if skipped:
            split.rows = [split.source_row(i) for i in keep]
        dataset = dataset.select_columns([tokens_col]).rename_columns({tokens_col: "words"} if tokens_col != "words" else {})
        return dataset.add_column("tag_ids", ids_of_rows), skipped, violations

    @staticmethod
    def _row_problem(words, tags, index: dict[str, int], names: list[str], origin: str) -> str | None:
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            return "tokens must be a list of strings; fix the row"
        if not words:
            return "empty sentence (no tokens); remove the row or set data.on_bad_row=skip"
        if any(not w.strip() for w in words):
            return "a token is empty or only whitespace; fix the row or set data.on_bad_row=skip"
        if not isinstance(tags, list) or len(tags) != len(words):
            count = len(tags) if isinstance(tags, list) else "no"
            return f"{len(words)} tokens but {count} tags; every token needs exactly one tag"
        for tag in tags:
            if isinstance(tag, bool) or not isinstance(tag, (int, str)):
                return f"tag {tag!r} is neither a tag name nor a class index"
            if isinstance(tag, int) and not 0 <= tag < len(names):
                return f"tag {tag} is not a class index 0..{len(names) - 1} ({origin})"
            if isinstance(tag, str) and tag not in index:
                shown = ", ".join(names[:15])
                return f"unknown tag {tag!r} (tags {origin}: {shown}); fix the row or list every tag in data.labels"
        return None

    def load_processor(self, run=None):
        tokenizer = self.spec.load_processor(run)
        if hasattr(tokenizer, "add_prefix_space") and not getattr(tokenizer, "add_prefix_space", True):
            # Byte-level BPE (GPT-2, RoBERTa) needs a prefix space to tokenize pre-split words as in running text.
            tokenizer = self.spec.load_processor(run, add_prefix_space=True)
        return tokenizer

    def prepare(self, split: Split, tokenizer, labels: list[str] | None):
        cfg = self.cfg
        max_length = max_length_for(cfg, tokenizer, self.spec)
        # Only training rows: evaluation reads each word's prediction off its first sub-token either way.
        continuation = continuation_tags(labels) if labels and cfg.ner.label_all_subtokens and split.name == "train" else None

        def windows(rows, indices):
            out = {"input_ids": [], "attention_mask": [], "labels": [], "word_index": [], "gold_words": [], "row_index": [], "length": []}
            for words, tags, row in zip(rows["words"], rows["tag_ids"], indices):
                for window in windows_for_words(tokenizer, words, max_length, cfg.ner.stride):
                    out["input_ids"].append(window.input_ids)
                    out["attention_mask"].append([1] * len(window.input_ids))
                    out["labels"].append(labels_for_window(window, tags, continuation))
                    out["word_index"].append(word_index_for_window(window))
                    out["gold_words"].append(tags)
                    out["row_index"].append(row)
                    out["length"].append(len(window.input_ids))
            return out

        dataset = split.dataset.map(
            windows, batched=True, with_indices=True, remove_columns=split.dataset.column_names, desc=f"tokenizing {split.name}"
        )
        rows_cut = len(dataset) - len(split.dataset)
        notes = [f"{split.name}: long sentences split into {rows_cut} extra windows of {max_length} tokens (stride {cfg.ner.stride})"] if rows_cut else []
        return dataset, notes

    def collator(self, tokenizer):
        return _NerCollator(tokenizer)

    # --- evaluation -----------------------------------------------------------------------------------------
    def eval_step(self, model, batch, processor=None) -> dict[str, Any]:
        import torch

        word_index = batch.pop("word_index")
        gold = batch.pop("gold_words")
        pred = model(**batch).logits.argmax(-1)
        # Scatter each owned token's prediction to its word; other tokens go to a dump column that is cut off.
        width = gold.shape[1]
        target = torch.where(word_index >= 0, word_index, torch.full_like(word_index, width))
        words = torch.full((pred.shape[0], width + 1), IGNORE, dtype=pred.dtype, device=pred.device)
        words.scatter_(1, target, pred)
        return {"pred_words": words[:, :width], "gold_words": gold}

    @staticmethod
    def _sentences(outputs: dict[str, Any], labels: list[str]) -> tuple[list[int], list[list[str]], list[list[str]], int]:
        """Whole sentences from their windows: (row indices, gold tags, predicted tags, words without a
        prediction). A word no sub-token predicted for counts as O."""
        gold_rows: dict[int, list[int]] = {}
        pred_rows: dict[int, list[int]] = {}
        for row, gold, pred in zip(outputs["row_index"].tolist(), outputs["gold_words"].tolist(), outputs["pred_words"].tolist()):
            gold = [g for g in gold if g != IGNORE]
            gold_rows[row] = gold
            merged = pred_rows.setdefault(row, [IGNORE] * len(gold))
            for i, p in enumerate(pred[: len(gold)]):
                if p != IGNORE:
                    merged[i] = p
        rows, y_true, y_pred, unpredicted = sorted(gold_rows), [], [], 0
        outside = labels.index("O") if "O" in labels else 0
        for row in rows:
            pred = pred_rows[row]
            unpredicted += sum(p == IGNORE for p in pred)  # words that produced no sub-token at all
            y_true.append([labels[g] for g in gold_rows[row]])
            y_pred.append([labels[outside if p == IGNORE else p] for p in pred])
        return rows, y_true, y_pred, unpredicted

    def compute_metrics(self, outputs: dict[str, Any], labels: list[str] | None) -> EvalResult:
        from seqeval.metrics import accuracy_score, classification_report
        from seqeval.scheme import IOBES

        _rows, y_true, y_pred, unpredicted = self._sentences(outputs, labels)
        strict = {"mode": "strict", "scheme": IOBES} if scheme_of(labels) == "BIOES" else {}
        report = classification_report(y_true, y_pred, output_dict=True, zero_division=0, **strict)
        micro = report["micro avg"]
        metrics: dict[str, float] = {
            "precision": float(micro["precision"]),
            "recall": float(micro["recall"]),
            "f1": float(micro["f1-score"]),
            "accuracy": float(accuracy_score(y_true, y_pred)),
        }
        for kind in entity_types(labels):
            if kind in report:
                for key, name in (("precision", "precision"), ("recall", "recall"), ("f1-score", "f1"), ("support", "support")):
                    metrics[f"{kind}/{name}"] = float(report[kind][key])
        metrics["sentences"] = float(len(y_true))
        metrics["predicted_scheme_violations"] = float(sum(scheme_violations(p, scheme_of(labels)) for p in y_pred))
        if unpredicted:
            metrics["words_without_subtokens"] = float(unpredicted)
        return EvalResult(metrics=metrics, details={"types": entity_types(labels)})

    def worst_rows(self, outputs: dict[str, Any], labels: list[str] | None, n: int) -> list[dict[str, Any]]:
        """Sentences with wrong spans, most wrong spans first: spans (type, first word, last word) of the gold
        annotation the model missed, and spans it predicted that the gold does not have."""
        from seqeval.metrics.sequence_labeling import get_entities

        found = []
        for row, gold, pred in zip(*self._sentences(outputs, labels)[:3]):
            gold_spans, pred_spans = set(get_entities(gold)), set(get_entities(pred))
            missed, spurious = sorted(gold_spans - pred_spans, key=lambda s: s[1]), sorted(pred_spans - gold_spans, key=lambda s: s[1])
            if missed or spurious:
                found.append({"row_index": row, "missed": [list(s) for s in missed], "spurious": [list(s) for s in spurious],
                              "gold_spans": len(gold_spans)})
        found.sort(key=lambda r: -(len(r["missed"]) + len(r["spurious"])))  # stable: ties stay in row order
        return found[:n]

    def row_content(self, split: Split, row_index: int) -> dict[str, Any]:
        return {"words": split.dataset[row_index]["words"]}

    def format_metrics(self, result: EvalResult) -> str:
        m = result.metrics
        lines = [
            f"  entity precision {m['precision']:.4f}   recall {m['recall']:.4f}   F1 {m['f1']:.4f}   "
            f"token accuracy {m['accuracy']:.4f}   ({int(m['sentences'])} sentences)"
        ]
        lines.append(f"  {'type':<10} precision  recall     f1  support")
        for kind in result.details.get("types", []):
            if f"{kind}/f1" in m:
                lines.append(
                    f"  {kind:<10} {m[f'{kind}/precision']:9.4f}  {m[f'{kind}/recall']:6.4f} {m[f'{kind}/f1']:6.4f}  {int(m[f'{kind}/support']):7d}"
                )
        return "\n".join(lines)

    # --- prediction -----------------------------------------------------------------------------------------
    def predict(self, model, tokenizer, labels: list[str] | None, inputs: dict[str, Any]) -> Any:
        """Entity spans with character offsets, and every word's tag (the first sub-token's prediction)."""
        cfg = self.cfg
        import torch
        from seqeval.metrics.sequence_labeling import get_entities

        text = inputs["text"]
        spans = [(m.group(), m.start(), m.end()) for m in WORD_PATTERN.finditer(text)]
        if not spans:
            return {"text": text, "entities": [], "words": []}
        words = [w for w, _, _ in spans]
        best = [0] * len(words)
        scores = [1.0] * len(words)
        for window in windows_for_words(tokenizer, words, max_length_for(cfg, tokenizer, self.spec), cfg.ner.stride):
            ids = torch.tensor([window.input_ids], device=model.device)
            with torch.inference_mode():
                probs = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0].float().softmax(-1)
            for position, wid in enumerate(word_index_for_window(window)):
                if wid >= 0:
                    scores[wid], best[wid] = (float(v) for v in probs[position].max(-1))
                    best[wid] = int(best[wid])
        tags = [labels[t] for t in best]
        entities = []
        for kind, start, end in get_entities(tags):
            first, last = spans[start][1], spans[end][2]
            score = sum(scores[start : end + 1]) / (end - start + 1)
            entities.append({"text": text[first:last], "type": kind, "start": first, "end": last, "score": round(score, 4)})
        return {"text": text, "entities": entities, "words": [[w, t] for w, t in zip(words, tags)]}

    def format_prediction(self, prediction: dict[str, Any]) -> str:
        if not prediction["entities"]:
            return "no entities found"
        width = max(len(e["text"]) for e in prediction["entities"])
        return "\n".join(
            f"{e['text']:<{width}}  {e['type']:<6} [{e['start']}:{e['end']}]  {e['score']:.3f}" for e in prediction["entities"]
        )


class _NerCollator:
    """Pads input_ids / attention_mask / labels like transformers' token-classification collator, and the
    evaluation-only word columns with -100 / -1."""

    def __init__(self, tokenizer):
        from transformers import DataCollatorForTokenClassification

        self.base = DataCollatorForTokenClassification(tokenizer)

    def __call__(self, rows: list[dict]):
        import torch

        extra = {}
        for key, pad in (("word_index", -1), ("gold_words", IGNORE)):
            if key in rows[0]:
                values = [row.pop(key) for row in rows]
                width = max(len(v) for v in values)
                extra[key] = torch.tensor([v + [pad] * (width - len(v)) for v in values])
        batch = self.base(rows)
        if "word_index" in extra:  # token-aligned: pad to the batch's sequence length
            width = batch["input_ids"].shape[1]
            extra["word_index"] = torch.nn.functional.pad(extra["word_index"], (0, width - extra["word_index"].shape[1]), value=-1)
        batch.update(extra)
        return batch
