"""The one evaluation loop (used while training and by `mmkit eval`) and what it writes.

Batches are sorted by length (least padding), run under `inference_mode` (on a CPU with LoRA merged into each
weight for the call: `mmkit.training.fused_lora`), and every output is gathered
with `gather_for_metrics`, which drops the samples a multi-process run repeats to even out the last batch.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from mmkit.data.batching import EvalBatchSampler
from mmkit.training.distributed import generation_kwargs
from mmkit.training.precision import attention_kernels
from mmkit.training.plots import plot_confusion_matrix
from mmkit.runs.run_dir import CONFUSION_PLOT_FILE, METRICS_FILE, atomic_write_json, atomic_write_text
from mmkit.tasks.base import EvalResult, Task

WORST_ROWS = 20  # rows the report shows that the model got most wrong


def rows_in(dataset) -> int:
    """Data rows a prepared split holds: not the windows a task cut them into, nor rows prepare left out."""
    return len(set(dataset["row_index"]))


def eval_loader(dataset, collator, batch_size: int, num_workers: int = 0, pin_memory: bool = False):
    import torch
    from torch.utils.data import DataLoader

    lengths = list(dataset["length"])  # a plain list: datasets 5 returns a lazy Column
    return DataLoader(
        dataset.remove_columns("length"),
        batch_sampler=EvalBatchSampler(lengths, batch_size),
        collate_fn=collator,
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=torch.Generator(),  # leaves the global RNG (dropout) untouched: resume stays exact
    )


def run_evaluation(task: Task, model, loader, accelerator, labels: list[str] | None, processor, desc: str = "eval") -> EvalResult:
    import torch
    from tqdm.auto import tqdm

    from mmkit.training.fused_lora import fused_lora

    was_training = model.training
    model.eval()
    task.generation_flags = generation_kwargs(accelerator)
    collected: dict[str, list[Any]] = defaultdict(list)
    with torch.inference_mode(), accelerator.autocast(), attention_kernels(accelerator), fused_lora(model, accelerator):
        for batch in tqdm(loader, desc=desc, leave=False, disable=not accelerator.is_local_main_process):
            row_index = batch.pop("row_index", None)
            outputs = task.eval_step(model, batch, processor)
            if row_index is not None:
                outputs["row_index"] = row_index
            for key, value in outputs.items():
                if isinstance(value, torch.Tensor):
                    if value.dim() > 1:  # token-level outputs differ in length between processes
                        value = accelerator.pad_across_processes(value, dim=1, pad_index=-100)
                    collected[key].append(accelerator.gather_for_metrics(value).cpu())
                else:
                    collected[key].extend(accelerator.gather_for_metrics(list(value), use_gather_object=True))
    if was_training:
        model.train()
    merged = {key: _concat(values) if values and isinstance(values[0], torch.Tensor) else values for key, values in collected.items()}
    result = task.compute_metrics(merged, labels)
    if "row_index" in merged:  # for the HTML report, from the outputs the metrics were computed on
        result.details["worst_rows"] = task.worst_rows(merged, labels, WORST_ROWS)
    return result


def _concat(tensors: list):
    """Concatenate along dim 0, padding dim 1 with -100 where batches differ in length."""
    import torch

    if tensors[0].dim() > 1:
        width = max(t.shape[1] for t in tensors)
        tensors = [torch.nn.functional.pad(t, (0, 0) * (t.dim() - 2) + (0, width - t.shape[1]), value=-100) for t in tensors]
    return torch.cat(tensors)


def write_eval_outputs(result: EvalResult, output_dir: Path, split: str, extra: dict[str, Any] | None = None) -> Path:
    """metrics.json (flat keys) plus the plots and JSONL files the result carries; returns the metrics file."""
    metrics: dict[str, Any] = {"split": split, **result.metrics, **(extra or {})}
    path = output_dir / METRICS_FILE
    atomic_write_json(path, metrics)
    if "confusion_matrix" in result.details:
        plot_confusion_matrix(
            result.details["confusion_matrix"],
            result.details["labels"],
            output_dir / CONFUSION_PLOT_FILE,
            title=f"confusion matrix ({split})",
        )
    for name, rows in result.details.get("jsonl_files", {}).items():  # e.g. translation: source, reference, hypothesis
        atomic_write_text(output_dir / name, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path
