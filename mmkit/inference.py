"""Using a finished run (a local run dir or a Hub repo laid out the same way): load, evaluate, predict."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmkit.config import Config
from mmkit.data import load_split
from mmkit.errors import UserError
from mmkit.evaluation import eval_loader, rows_in, run_evaluation, write_eval_outputs
from mmkit.run_dir import RunDir, resolve_run
from mmkit.tasks import EvalResult, Task, get_task


@dataclass
class TrainedModel:
    run: RunDir
    cfg: Config
    task: Task
    model: Any
    processor: Any
    labels: list[str] | None


def load_trained(run_or_repo: str, revision: str | None = None, base: str | None = None) -> TrainedModel:
    """Base model + the run's head and adapter (or the run's full weights), in eval mode.

    The base is the one recorded in the adapter config; `base` loads it from elsewhere and must name the
    same model (a mismatch is a UserError)."""
    from mmkit.hub import base_for

    run = resolve_run(run_or_repo, revision)
    cfg = run.read_config()
    task = get_task(cfg.task)
    labels = run.read_labels()
    processor = task.load_processor(cfg, str(run.path))
    if run.has_adapter:
        from peft import PeftModel

        base_model = task.load_model(cfg, base_for(run, cfg, base), labels, processor)
        try:
            model = PeftModel.from_pretrained(base_model, str(run.path))
        except RuntimeError as err:
            if "size mismatch" not in str(err):
                raise
            raise UserError(
                f"the adapter in {run_or_repo} does not fit its base model (weight shapes differ): "
                "load it on the base it was trained on"
            ) from None
    else:
        if base:
            raise UserError(f"--base is for adapters; {run_or_repo} holds a full model")
        model = task.load_model(cfg, str(run.path), labels, processor)
    model.eval()
    return TrainedModel(run, cfg, task, model, processor, labels)


def evaluate_run(
    trained: TrainedModel, data: str | None, split: str = "test", output: str | Path | None = None, batch_size: int | None = None
) -> tuple[EvalResult, dict[str, Any], Path]:
    """Evaluate on a file or Hub dataset (default: the run's own `data.<split>`); write metrics.json.

    Returns the result, the run facts written beside the metrics, and the metrics file."""
    cfg = trained.cfg
    source = data or getattr(cfg.data, split, None)
    if not source:
        raise UserError(f"no data to evaluate: pass --data PATH (the run's config has no data.{split})")
    return evaluate_on(
        trained.task, cfg, lambda _labels: trained.model, trained.processor, trained.labels, source, split,
        Path(output) if output else trained.run.path / "eval", batch_size or cfg.train.eval_batch_size or 2 * cfg.train.batch_size,
    )


def evaluate_on(task: Task, cfg: Config, build_model, processor, labels, source: str, split: str, out_dir: Path,
                batch_size: int, facts: dict[str, Any] | None = None) -> tuple[EvalResult, dict[str, Any], Path]:
    """Read, check and prepare `source` as the task does in training, run `build_model(label_names)` over it,
    and write metrics.json + plots to `out_dir`."""
    from mmkit.trainer import make_accelerator

    raw = load_split(source, split, cfg.data.hub_config)
    task_data = task.load_data(cfg, {split: raw}, labels=labels)
    dataset, _notes = task.prepare(task_data.splits[split], processor, cfg, task_data.labels)
    accelerator = make_accelerator(cfg)
    model = accelerator.prepare_model(build_model(task_data.labels), evaluation_mode=True)  # no DDP wrapper: nothing trains
    loader = accelerator.prepare(eval_loader(dataset, task.collator(processor), batch_size))
    started = time.perf_counter()
    result = run_evaluation(task, model, loader, accelerator, task_data.labels, desc=f"eval {split}")
    seconds = time.perf_counter() - started
    extra = {**(facts or {}), "num_examples": rows_in(dataset), "eval_runtime_s": round(seconds, 2), "data": str(source)}
    path = write_eval_outputs(result, out_dir, split, extra=extra) if accelerator.is_main_process else out_dir
    return result, extra, path


def predict(trained: TrainedModel, inputs: dict[str, Any]) -> Any:
    return trained.task.predict(trained.model, trained.processor, trained.cfg, trained.labels, inputs)
