"""A fine-tuning run from start to end. The recipes in `recipes/` and `mmkit train` both call `finetune`.

Everything that can be wrong with the user's input (config, files, rows, labels, the model) is checked before
the output directory is touched, so a bad run leaves nothing half-written behind.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from mmkit.config import Config
from mmkit.data import SPLITS, Split, load_split, subsample
from mmkit.errors import UserError
from mmkit.models.families import model_id_for_records
from mmkit.runs.report import write_report
from mmkit.runs.run_dir import LOSS_PLOT_FILE, REPORT_FILE, RunDir, atomic_write_json, move_into
from mmkit.tasks import build_task
from mmkit.training.distributed import gathered_state_dict, is_sharded
from mmkit.training.evaluation import rows_in, write_eval_outputs
from mmkit.training.plots import plot_loss_curve
from mmkit.training.class_weights import CLASS_WEIGHTS_FILE, check_class_weights_setting, class_weights_record
from mmkit.training.trainer import Trainer, make_accelerator, peak_memory_mb
from mmkit.training.tracking import LOGS_DIR, requested_trackers, start_trackers


def default_output_dir(cfg: Config) -> str:
    model = cfg.model
    if model.vision:
        ids = [model_id_for_records(model.text), model.vision]
    else:
        ids = [model.name_or_path or (model.config.family if model.init == "scratch" else model_id_for_records(None))]
    return str(Path("runs") / f"{cfg.task}-{'+'.join(i.rstrip('/').rsplit('/', 1)[-1] for i in ids)}")


def load_splits(cfg: Config) -> dict[str, Split]:
    """The configured splits as raw rows (train required), subsampled as the config asks."""
    if not cfg.data.train:
        raise UserError("data.train is not set; point it at a training file (e.g. data.train=data/train.jsonl)")
    splits = {}
    for name in SPLITS:
        source = getattr(cfg.data, name)
        if source:
            split = load_split(source, name, cfg.data.hub_config)
            limit = cfg.data.max_train_rows if name == "train" else cfg.data.max_eval_rows
            splits[name] = subsample(split, limit, cfg.data.shuffle_seed)
    return splits


@contextlib.contextmanager
def timed(phases: dict[str, float], name: str):
    """Add the seconds the block takes to phases[name]: where a run's time goes, printed at its end."""
    began = time.perf_counter()
    try:
        yield
    finally:
        phases[name] = phases.get(name, 0.0) + time.perf_counter() - began


def finetune(cfg: Config) -> dict[str, Any]:
    """Train, pick the best checkpoint, save the adapter + head + processor, evaluate on test; return metrics."""
    from accelerate.utils import set_seed

    started = time.perf_counter()
    phases: dict[str, float] = {}
    if cfg.train.output_dir is None:
        cfg.train.output_dir = default_output_dir(cfg)
    task = build_task(cfg)  # the task with its model spec: reads the checkpoint's config, refuses what cannot work
    run = RunDir(cfg.train.output_dir)
    if cfg.train.push_to_hub:  # fail before training, not after it
        from mmkit.hub.client import hub_token, validate_repo_id

        validate_repo_id(cfg.train.push_to_hub)
        hub_token()
    run.claim(resume=bool(cfg.train.resume), overwrite=cfg.train.overwrite)
    trackers = requested_trackers(cfg)
    check_class_weights_setting(cfg)
    if cfg.train.early_stopping_patience and not cfg.data.validation:
        raise UserError("train.early_stopping_patience needs validation rows to watch; set data.validation, or leave early stopping off")
    accelerator = make_accelerator(cfg, task.spec.family, trackers, run.path / LOGS_DIR)
    set_seed(cfg.train.seed)

    # 1. Data: read and validate every split, settle the label set.
    with timed(phases, "read data"):
        data = task.load_data(load_splits(cfg))

    # 2. Model: processor, pretrained backbone + new head, LoRA.
    with timed(phases, "tokenize"):
        processor = task.load_processor()
        notes = list(data.notes) + task.spec.notes()
        prepared = {}
        with accelerator.main_process_first():  # the main process tokenizes and caches; the others reuse it
            for name, split in data.splits.items():
                prepared[name], split_notes = task.prepare(split, processor, data.labels)
                notes += split_notes
    with timed(phases, "load model"):
        model = task.spec.build(data.labels, processor)
        trainer = Trainer(cfg, task, model, processor, prepared, data.labels, run, accelerator)
    checkpoint = trainer.find_checkpoint(cfg.train.resume) if cfg.train.resume else None
    if checkpoint is not None:
        trainer.resume_from(checkpoint)

    # 3. Only now, with everything checked, write into the output directory.
    if accelerator.is_main_process:
        if cfg.train.overwrite and not cfg.train.resume and run.path.exists() and any(run.path.iterdir()):
            run.clear()
        run.create()
        run.write_config(task.spec.recorded_config(cfg))
        run.write_labels(data.labels)
        if trainer.class_weights is not None:  # what the loss was weighted with, for eval and reports
            atomic_write_json(run.file(CLASS_WEIGHTS_FILE), class_weights_record(cfg, data.labels, trainer.class_weight_values))
            run.record([CLASS_WEIGHTS_FILE])
        if trackers:
            run.record([LOGS_DIR])
    accelerator.wait_for_everyone()
    start_trackers(accelerator, cfg, trainer.run_name, task.spec.recorded_config(cfg).to_dict())

    trainer.banner(f"mmkit | task {task.name} | model {task.spec.description}", notes)

    # 4. Train, then keep the best weights by the validation metric.
    with timed(phases, "train loop"):
        trainer.train()
    if trainer.state["stopped_early"]:
        accelerator.print(
            f"stopped early at step {trainer.state['global_step']} of {trainer.total_steps}: "
            f"{cfg.train.early_stopping_patience} validation(s) without {trainer.metric} improving by more than "
            f"{cfg.train.early_stopping_threshold:g}"
        )
    if trainer.load_best():
        accelerator.print(
            f"best checkpoint: step {trainer.state['best_step']} ({trainer.metric} {trainer.state['best_metric']:.4f})"
        )

    # 5. Save the adapter (with its head) and the processor: the run dir now loads like a Hub repo. Under FSDP /
    # ZeRO-3 the weights are shards: every process takes part in gathering them, the main process writes them.
    # Elsewhere the model's own weights are whole, and PEFT's PiSSA/OLoRA conversion needs to read them itself.
    with timed(phases, "save adapter"):
        state_dict = gathered_state_dict(accelerator, trainer.model) if is_sharded(accelerator) else None
        if accelerator.is_main_process:
            staging = run.staging("model")
            task.spec.save(accelerator.unwrap_model(trainer.model), staging, state_dict=state_dict)
            processor.save_pretrained(staging)
            run.record(move_into(staging, run.path))
        accelerator.wait_for_everyone()

    # 6. Evaluate on test (or validation), write metrics and plots.
    final_split = "test" if "test" in prepared else ("validation" if "validation" in prepared else None)
    state = trainer.state
    summary = {
        "train_runtime_s": round(state["train_seconds"], 2),
        "train_samples_per_s": round(state["train_samples"] / max(state["train_seconds"], 1e-9), 2),
        "train_steps": state["global_step"],
        "best_step": state["best_step"],
        **({"stopped_early": state["stopped_early"]} if cfg.train.early_stopping_patience else {}),
        "peak_memory_mb": round(peak_memory_mb(), 1),
    }
    metrics: dict[str, Any] = {}
    result = None
    if final_split:
        with timed(phases, f"eval {final_split}"):
            result = trainer.evaluate(final_split)
        summary["num_examples"] = rows_in(prepared[final_split])
        summary["eval_runtime_s"] = round(phases[f"eval {final_split}"], 2)
        summary["wall_time_s"] = round(time.perf_counter() - started, 2)
        if accelerator.is_main_process:
            write_eval_outputs(result, run.path, final_split, extra=summary)
            accelerator.print(f"{final_split} metrics ({summary['num_examples']:,} rows):")
            accelerator.print(task.format_metrics(result))
        metrics = {"split": final_split, **result.metrics, **summary}
    if accelerator.is_main_process:
        with timed(phases, "report"):
            trainer.write_train_log()
            plot_loss_curve(state["history"], run.file(LOSS_PLOT_FILE), metric=trainer.metric)
            write_report(
                run.file(REPORT_FILE), task, cfg, title=run.path.name, split_name=final_split, result=result,
                split=data.splits.get(final_split), history=state["history"], facts=summary,
            )
    times = phase_times(phases, trainer)
    metrics["phases_s"] = {name: round(seconds, 2) for name, seconds in times.items()}
    if accelerator.is_main_process:
        accelerator.print(
            f"done in {time.perf_counter() - started:.1f} s (training {summary['train_runtime_s']} s, "
            f"{summary['train_samples_per_s']} samples/s, peak memory {summary['peak_memory_mb']:.0f} MB); "
            f"run saved to {run.path}"
        )
        accelerator.print("  time: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in times.items()))
    push_error = None
    if cfg.train.push_to_hub and accelerator.is_main_process:  # one upload, from the main process only
        from mmkit.hub.push import push_run

        try:
            push_run(run.path, cfg.train.push_to_hub, echo=accelerator.print)
        except UserError as err:  # the other processes must not wait forever for this one
            push_error = err
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if push_error is not None:
        raise UserError(f"the run is saved in {run.path}, but {push_error}; retry with `mmkit push {run.path} --repo-id {cfg.train.push_to_hub}`")
    return metrics


def phase_times(phases: dict[str, float], trainer: Trainer) -> dict[str, float]:
    """Seconds per phase in run order, the training loop split into its steps, validation and checkpoints."""
    times = dict(phases)
    loop = times.pop("train loop", 0.0)
    times["validation"], times["checkpoints"] = trainer.phase_seconds["validation"], trainer.phase_seconds["checkpoints"]
    times["train steps"] = loop - times["validation"] - times["checkpoints"]
    order = ["read data", "tokenize", "load model", "train steps", "validation", "checkpoints", "save adapter"]
    return {name: times[name] for name in order + [n for n in times if n not in order] if name in times}
