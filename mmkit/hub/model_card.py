"""The model card (README.md) pushed with a run: Hub metadata in YAML, then a short human card.

The metadata is built with `huggingface_hub.ModelCardData` (so `model-index` has the layout the Hub parses):
`base_model`, `library_name: peft` (or `transformers` for a full fine-tune), `pipeline_tag`, `tags`,
`datasets` (only when the data came from Hub ids), and `model-index` with the final metrics of metrics.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


RUN_STATS = {"train_runtime_s", "train_samples_per_s", "train_steps", "best_step", "peak_memory_mb", "eval_runtime_s", "wall_time_s", "num_examples"}
# Metrics shown in model-index (the headline ones; per-class values stay in the card's table).
HEADLINE_METRICS = ("accuracy", "macro_f1", "weighted_f1", "f1", "precision", "recall", "bleu", "chrf", "loss")


def hub_dataset_id(source: str | None) -> str | None:
    """`owner/name[:split]` when `source` names a Hub dataset (the same rule as `mmkit.data.load_split`)."""
    from mmkit.data import FILE_BUILDERS

    if not source:
        return None
    path = Path(source).expanduser()
    if path.suffix.lower() in FILE_BUILDERS or path.exists() or source.startswith((".", "/", "~")):
        return None
    return source.partition(":")[0]


def _use_section(task, repo_id: str, labels: list[str] | None, adapter: bool) -> str:
    from mmkit.hub.snippets import mmkit_commands, usage_code

    how, code = usage_code(task, repo_id, labels, adapter)
    return (
        f"### With the mmkit command line\n\n```bash\n{mmkit_commands(task, repo_id)}\n```\n\n"
        f"### With {how}\n\n```python\n{code}\n```\n"
    )


def build_model_card(repo_id: str, task, labels: list[str] | None, metrics: dict[str, Any] | None, adapter: bool) -> str:
    """README.md for `repo_id`: Hub metadata, what the model is, how it was trained, its metrics, how to use it."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    cfg, spec = task.cfg, task.spec
    base_model = spec.base_id
    pipeline_tag = task.pipeline_tag
    tags = ["mmkit", *task.hub_tags]
    if adapter:
        tags += ["lora", f"base_model:adapter:{base_model}"]
    datasets = sorted({d for d in (hub_dataset_id(getattr(cfg.data, s)) for s in ("train", "validation", "test")) if d})
    metrics = metrics or {}
    split = metrics.get("split", "test")
    dataset_name = hub_dataset_id(cfg.data.test if split == "test" else cfg.data.validation) or f"{cfg.task} ({split} split)"
    eval_results = [
        EvalResult(
            task_type=pipeline_tag or cfg.task,
            dataset_type=dataset_name,
            dataset_name=dataset_name,
            dataset_split=split,
            metric_type=name,
            metric_name=name,
            metric_value=float(metrics[name]),
        )
        for name in HEADLINE_METRICS
        if isinstance(metrics.get(name), (int, float))
    ]
    data = ModelCardData(
        base_model=base_model or None,
        library_name="peft" if adapter else "transformers",
        pipeline_tag=pipeline_tag,
        tags=tags,
        datasets=datasets or None,
        model_name=repo_id,
        eval_results=eval_results or None,
    )
    body = [f"# {repo_id.split('/')[-1]}\n"]
    what = f"a LoRA adapter (r={cfg.lora.r}, alpha={cfg.lora.alpha}) with its task head" if adapter else "a fully fine-tuned model"
    origin = f"fine-tuned with mmkit from `{base_model}`" if base_model else f"trained from scratch with mmkit ({spec.description})"
    body.append(f"**{cfg.task}** model {origin}: {what}.\n")
    if labels:
        body.append("## Labels\n\n" + ", ".join(f"`{i}` {name}" for i, name in enumerate(labels)) + "\n")
    body.append("## Training\n")
    train = cfg.train
    rows = [
        ("task", cfg.task),
        ("base model", base_model or "none (from scratch)"),
        ("training data", ", ".join(datasets) or "local files (not published)"),
        ("LoRA", f"r={cfg.lora.r}, alpha={cfg.lora.alpha}, dropout={cfg.lora.dropout}, targets={cfg.lora.target_modules}" if adapter else "off (full fine-tuning)"),
        ("epochs / max steps", f"{train.epochs} / {train.max_steps or '-'}"),
        ("batch size x accumulation", f"{train.batch_size} x {train.gradient_accumulation_steps}"),
        ("learning rate, scheduler", f"{train.learning_rate:g}, {train.lr_scheduler} (warmup {train.warmup_ratio:g})"),
        ("mixed precision", train.mixed_precision),
        ("seed", train.seed),
    ]
    body.append("| setting | value |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows))
    body.append("The full resolved configuration is in `config.yaml`.\n")
    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    quality = {k: v for k, v in numbers.items() if k not in RUN_STATS}
    if quality:
        body.append(f"## Results ({split} split)\n")
        body.append("| metric | value |\n|---|---|\n" + "".join(f"| {k} | {_fmt(v)} |\n" for k, v in quality.items()))
    stats = {k: v for k, v in numbers.items() if k in RUN_STATS}
    if stats:
        body.append("Run: " + ", ".join(f"{k} {v:g}" for k, v in stats.items()) + "\n")
    body.append("## Use\n\n" + _use_section(task, repo_id, labels, adapter))
    card = ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n" + "\n".join(body))
    return str(card)


def _fmt(value: float) -> str:
    return f"{value:.4f}" if isinstance(value, float) and not value.is_integer() else f"{value:g}"


def read_metrics(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
