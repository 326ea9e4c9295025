"""The one training loop: every task and every backbone trains through `Trainer.train`.

Accelerate does devices, processes, mixed precision, gradient accumulation and state saving. Checkpoints hold
only the trainable weights (LoRA + head), the optimizer, scheduler, RNG states and the position in the data,
so `train.resume` continues exactly where a run stopped: same batches, same result.
"""

from __future__ import annotations

import contextlib
import json
import math
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from mmkit.config import Config, yaml_load
from mmkit.data.batching import TrainBatchSampler
from mmkit.errors import UserError
from mmkit.models.lora import describe_lora, load_trainable_state_dict, parameter_counts
from mmkit.training import distributed
from mmkit.training.class_weights import resolve_class_weights, weighted_cross_entropy
from mmkit.training.cpu_dropout import cpu_dropout
from mmkit.training.evaluation import eval_loader, run_evaluation
from mmkit.training.fused_lora import fused_lora
from mmkit.training.loss import labelled_weight, mean_labelled_weight
from mmkit.training.precision import attention_kernels, resolve_mixed_precision
from mmkit.runs.run_dir import CONFIG_FILE, TRAIN_LOG_FILE, RunDir, atomic_write_json, atomic_write_text
from mmkit.tasks.base import EvalResult, Task

TRAINABLE_FILE = "trainable.safetensors"
STATE_FILE = "trainer_state.json"
SCHEDULER_FILE = "scheduler.json"
CHECKPOINT_CONFIG_FILE = "config.yaml"
# Keys a resumed run may change: they decide when to stop, evaluate, save or log, not what the steps compute.
# early_stopping_patience only decides when to stop (like max_steps); early_stopping_threshold is not here: the
# checkpoint's count of validations without improvement was counted with it, and a new one would mix two rules.
RESUMABLE_CHANGES = {
    "train.resume", "train.overwrite", "train.output_dir", "train.max_steps", "train.epochs", "train.eval_every",
    "train.save_every", "train.save_every_minutes", "train.keep_checkpoints", "train.log_every", "train.num_workers",
    "train.eval_batch_size", "train.push_to_hub", "data.test", "model.trust_remote_code",
    "train.report_to", "train.project", "train.run_name", "train.early_stopping_patience",
}


def config_changes(before: dict, after: dict, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(key, old, new) for every setting that differs, except those a resume may change."""
    changes = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if isinstance(a, dict) or isinstance(b, dict):
            changes += config_changes(a or {}, b or {}, f"{prefix}{key}.")
        elif a != b and f"{prefix}{key}" not in RESUMABLE_CHANGES:
            changes.append((f"{prefix}{key}", a, b))
    return changes
BEST_DIR = "best"


def make_accelerator(cfg: Config, family, trackers: list[str] | None = None, logging_dir: Path | None = None):
    """The run's Accelerator for a model of `family` (it settles `auto` precision); `trackers` (from
    `mmkit.training.tracking.requested_trackers`) log to `logging_dir`."""
    import torch
    from accelerate import Accelerator

    has_accelerator = torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())
    return Accelerator(
        log_with=trackers or None,
        project_dir=str(logging_dir) if trackers and logging_dir is not None else None,
        gradient_accumulation_steps=cfg.train.gradient_accumulation_steps,
        mixed_precision=resolve_mixed_precision(cfg.train.mixed_precision, family)[0],
        # Several CPU processes (torchrun / accelerate launch --multi_gpu without GPUs) must still form one
        # gloo group; without cpu=True each process would silently train alone. DeepSpeed brings its own CPU
        # backend, and cpu=True would quietly turn it into DDP.
        cpu=not has_accelerator and not distributed.deepspeed_requested(),
        step_scheduler_with_optimizer=False,
        dynamo_backend="inductor" if cfg.train.torch_compile else None,
    )


def peak_memory_mb() -> float:
    """Peak memory of this process: GPU memory on a GPU, resident set size on a CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


class Trainer:
    def __init__(self, cfg: Config, task: Task, model, processor, datasets: dict[str, Any], labels, run: RunDir, accelerator):
        self.cfg = cfg
        self.task = task
        self.processor = processor
        self.datasets = datasets
        self.labels = labels
        self.run = run
        self.acc = accelerator
        self.metric = cfg.train.metric_for_best or task.default_metric
        self.greater_is_better = not self.metric.endswith("loss") and task.greater_is_better
        self.state: dict[str, Any] = {
            "global_step": 0,
            "epoch": 0,
            "batches_in_epoch": 0,  # per-process batches of `epoch` already trained on
            "best_metric": None,
            "best_step": None,
            "history": [],
            "train_seconds": 0.0,
            "train_samples": 0,
            "evals_without_improvement": 0,  # early stopping: validations since the best metric last improved enough
            "stopped_early": False,
        }
        self.phase_seconds = {"validation": 0.0, "checkpoints": 0.0}  # this session's time outside the steps
        weights = None
        if cfg.train.class_weights != "none":  # reading the label column costs time on a large split: only if used
            weights = resolve_class_weights(cfg, labels, datasets["train"]["labels"])
        self.class_weight_values, self.class_weights = weights, None
        if weights is not None:
            import torch

            self.class_weights = torch.tensor(weights, dtype=torch.float32, device=accelerator.device)
        self._build(model)

    # ------------------------------------------------------------------------------------------------------
    def _build(self, model) -> None:
        import torch
        from torch.utils.data import DataLoader
        from transformers import get_scheduler

        cfg, acc = self.cfg.train, self.acc
        distributed.configure_deepspeed(acc, cfg.batch_size, cfg.max_grad_norm)  # before the first prepare reads it
        pin = torch.cuda.is_available()
        collator = self.task.collator(self.processor)
        train = self.datasets["train"]
        self.sampler = TrainBatchSampler(train["length"], cfg.batch_size, cfg.seed, cfg.group_by_length)
        # Per-token labels: each batch's loss is rescaled so that every token weighs the same (mmkit/training/loss.py).
        self.labelled_per_batch = mean_labelled_weight(train, len(self.sampler), self.class_weight_values)
        train_loader = DataLoader(
            train.remove_columns([c for c in ("length", "row_index", *self.task.eval_only_columns) if c in train.column_names]),
            batch_sampler=self.sampler,
            collate_fn=collator,
            num_workers=cfg.num_workers,
            pin_memory=pin,
            # Its own generator: starting an epoch's iterator must not draw from the global RNG that drives
            # dropout, or a resumed run would see different dropout masks than an uninterrupted one.
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        self.eval_loaders = {
            name: acc.prepare(eval_loader(ds, collator, cfg.eval_batch_size or 2 * cfg.batch_size, cfg.num_workers, pin))
            for name, ds in self.datasets.items()
            if name != "train"
        }
        if cfg.gradient_checkpointing:
            # Non-reentrant checkpointing works with DDP and with frozen inputs (LoRA).
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            base.activation_checkpointing_enable({"use_reentrant": False})
        decay, no_decay = [], []
        for name, param in model.named_parameters():
            if param.requires_grad:
                (no_decay if param.ndim < 2 else decay).append(param)  # no decay on biases and norms
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.learning_rate,
        )
        self.model, self.optimizer, self.train_loader = acc.prepare(model, optimizer, train_loader)
        self.steps_per_epoch = max(1, math.ceil(len(self.train_loader) / cfg.gradient_accumulation_steps))
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch
        if self.total_steps <= 0:
            raise UserError("nothing to train: set train.epochs or train.max_steps to a positive number")
        self.num_epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        # Not prepared: it steps once per optimizer step, on every process alike.
        self.scheduler = get_scheduler(
            cfg.lr_scheduler,
            optimizer,
            num_warmup_steps=math.ceil(cfg.warmup_ratio * self.total_steps),
            num_training_steps=self.total_steps,
        )
        # The scheduler's state is a few numbers, kept as JSON: accelerate would pickle it (custom_checkpoint_0.pkl)
        # and unpickle it with weights_only=False on resume, so a checkpoint folder from elsewhere could run code.
        acc.register_save_state_pre_hook(self._save_trainable_hook)
        acc.register_load_state_pre_hook(self._load_trainable_hook)

    # -- checkpoints hold the trainable weights only ------------------------------------------------------
    # Under FSDP and DeepSpeed, accelerate writes the model and optimizer in their own sharded layout (every
    # process its shard) and reads them back itself: there is no single-file copy to add, and `models` is empty.
    def _save_trainable_hook(self, models, weights, output_dir) -> None:
        from safetensors.torch import save_file

        if models and weights:  # DDP / one process: accelerate gathered nothing sharded; keep the trainable part
            state = distributed.gathered_trainable_state(self.acc, models[0])
            if self.acc.is_main_process:
                save_file(state, str(Path(output_dir) / TRAINABLE_FILE))
        weights.clear()  # accelerate would otherwise save the whole (frozen) model again

    def _load_trainable_hook(self, models, input_dir) -> None:
        from safetensors.torch import load_file

        if not models:  # FSDP / DeepSpeed: accelerate loaded its own layout
            return
        path = Path(input_dir) / TRAINABLE_FILE
        if not path.is_file():
            raise UserError(
                f"train.resume: {input_dir} holds no {TRAINABLE_FILE} (a checkpoint written under FSDP or DeepSpeed keeps "
                "sharded weights instead): resume it with the same `accelerate launch --config_file` that wrote it"
            )
        load_trainable_state_dict(self.acc.unwrap_model(models[0]), load_file(str(path)))
        models.clear()

    def save_checkpoint(self) -> None:
        began = time.perf_counter()
        acc = self.acc
        name = f"step-{self.state['global_step']:07d}"
        tmp = self.run.checkpoints / f".tmp-{name}"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        if acc.is_main_process:
            atomic_write_json(tmp / STATE_FILE, self.state)
            atomic_write_json(tmp / SCHEDULER_FILE, self.scheduler.state_dict())
            atomic_write_text(tmp / CHECKPOINT_CONFIG_FILE, self.cfg.to_yaml())  # what a resume must match
            final = self.run.checkpoints / name
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)  # a checkpoint folder exists only once complete
            keep = self.cfg.train.keep_checkpoints
            old = sorted(p for p in self.run.checkpoints.glob("step-*") if p.is_dir())
            for stale in old[:-keep] if keep > 0 else []:
                shutil.rmtree(stale)
        self._last_save = time.monotonic()
        acc.wait_for_everyone()
        self.phase_seconds["checkpoints"] += time.perf_counter() - began

    def find_checkpoint(self, where: bool | str) -> Path | None:
        """The checkpoint `train.resume` names (true: the newest one, none yet: start from step 0), after checking
        that the config has not changed in a way that would make the continued run a different run."""
        if where is True:
            found = sorted(p for p in self.run.checkpoints.glob("step-*") if p.is_dir())
            if not found:
                self.acc.print(f"train.resume=true: no checkpoint in {self.run.checkpoints} yet, starting from step 0")
                return None
            path = found[-1]
        else:
            path = Path(where).expanduser()
            if not (path / STATE_FILE).is_file():
                raise UserError(f"train.resume: {path} is not a checkpoint folder (no {STATE_FILE})")
        recorded = path / CHECKPOINT_CONFIG_FILE
        if not recorded.is_file():
            recorded = self.run.file(CONFIG_FILE)
        if recorded.is_file():
            changed = config_changes(yaml_load(recorded.read_text(encoding="utf-8")) or {}, self.cfg.to_dict())
            if changed:
                shown = ", ".join(f"{key} ({old!r} -> {new!r})" for key, old, new in changed[:4]) + (", ..." if len(changed) > 4 else "")
                raise UserError(
                    f"train.resume: the config differs from the one {path.name} was made with in {shown}; the resumed run "
                    "would not be the same run: put them back, or start a new run (another train.output_dir)"
                )
        return path

    def resume_from(self, path: Path) -> None:
        """Load a checkpoint's weights, optimizer, scheduler, RNG states and data position (no pickled objects:
        accelerate reads tensors with weights_only=True; the scheduler and the position are JSON)."""
        import pickle

        from safetensors import SafetensorError

        pickles = sorted(p.name for p in path.glob("custom_checkpoint_*.pkl"))
        if pickles:  # accelerate would unpickle these with weights_only=False: they could run code
            raise UserError(
                f"train.resume: {path} holds {', '.join(pickles)}, a pickle mmkit never reads (older versions kept the "
                "scheduler there; it is rebuilt from the step): delete it if the checkpoint is yours, then resume"
            )
        try:
            # accelerate reads these with a restricted unpickler (weights_only=True) but, for the RNG states, swallows
            # a failure and goes on with other random numbers: check them first, so a resume is exact or refused.
            from accelerate.utils import load as restricted_load

            for name in ("optimizer.bin", f"random_states_{self.acc.process_index}.pkl"):
                if (path / name).is_file():
                    restricted_load(path / name, map_location="cpu")
            distributed.check_deepspeed_checkpoint(path)
            self.acc.load_state(str(path))
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, SafetensorError) as err:
            first = " ".join(str(err).split())[:160]
            raise UserError(f"train.resume: {path} holds files that do not load as plain tensors ({type(err).__name__}: {first}); use a checkpoint mmkit wrote") from None
        self.state = {**self.state, **json.loads((path / STATE_FILE).read_text())}  # older checkpoints lack new keys
        scheduler_file = path / SCHEDULER_FILE
        if scheduler_file.is_file():
            self.scheduler.load_state_dict(json.loads(scheduler_file.read_text()))
        else:  # a checkpoint of an older mmkit: the schedule depends on the step only
            for _ in range(self.state["global_step"]):
                self.scheduler.step()
        self.acc.print(f"resumed from {path} at step {self.state['global_step']}")

    def _save_best(self) -> None:
        from safetensors.torch import save_file

        state = distributed.gathered_trainable_state(self.acc, self.model)  # a collective call: every process
        if self.acc.is_main_process:
            best = self.run.checkpoints / BEST_DIR
            best.mkdir(parents=True, exist_ok=True)
            tmp = best / f".{TRAINABLE_FILE}.tmp"
            save_file(state, str(tmp))
            tmp.replace(best / TRAINABLE_FILE)
        self.acc.wait_for_everyone()

    def load_best(self) -> bool:
        """Put the best weights (by the validation metric) back into the model, if any were kept."""
        from safetensors.torch import load_file

        path = self.run.checkpoints / BEST_DIR / TRAINABLE_FILE
        if self.state["best_step"] is None or not path.is_file():
            return False
        distributed.load_trainable_state(self.acc, self.model, load_file(str(path)))
        return True

    # ------------------------------------------------------------------------------------------------------
    def banner(self, title: str, notes: list[str]) -> None:
        cfg, acc = self.cfg, self.acc
        trainable, total = parameter_counts(self.acc.unwrap_model(self.model))
        sizes = ", ".join(f"{name} {len(ds):,}" for name, ds in self.datasets.items())
        global_batch = cfg.train.batch_size * acc.num_processes * cfg.train.gradient_accumulation_steps
        method = describe_lora(self.acc.unwrap_model(self.model), cfg.lora)
        lines = [
            title,
            f"  examples   {sizes}" + (f" | {len(self.labels)} labels: {', '.join(self.labels)}" if self.labels else ""),
            f"  hardware   {acc.num_processes} process(es) on {acc.device.type}, precision {acc.mixed_precision} "
            f"({resolve_mixed_precision(cfg.train.mixed_precision, self.task.spec.family)[1]})",
            f"  batches    {cfg.train.batch_size} per process x {acc.num_processes} process(es) x "
            f"{cfg.train.gradient_accumulation_steps} accumulation = {global_batch} global; "
            f"{self.steps_per_epoch} steps/epoch, {self.total_steps} steps in all ({self.num_epochs} epoch(s))",
            f"  training   {method}; trainable {trainable:,} of {total:,} parameters ({100 * trainable / total:.2f}%)",
            f"  output     {self.run.path}",
        ]
        if self.class_weights is not None:
            shown = ", ".join(f"{name} {w:.3g}" for name, w in zip(self.labels, self.class_weight_values))
            lines.append(f"  loss       cross-entropy with class weights ({_setting_text(cfg.train.class_weights)}): {shown}")
        if self.labelled_per_batch:
            what = "class weight of the labelled tokens" if self.class_weights is not None else "labelled tokens"
            lines.append(
                f"  loss       per token: each batch's sum over {self.labelled_per_batch:,.1f} (the mean {what} per batch), "
                "so a token weighs the same in a short batch as in a long one"
            )
        if cfg.train.early_stopping_patience:
            lines.append(
                f"  stopping   early after {cfg.train.early_stopping_patience} validation(s) without {self.metric} improving "
                f"by more than {cfg.train.early_stopping_threshold:g}"
            )
        if self.acc.trackers:
            lines.append(f"  trackers   {', '.join(t.name for t in self.acc.trackers)} (project {cfg.train.project!r}, run {self.run_name!r})")
        lines += [f"  note       {note}" for note in notes]
        acc.print("\n".join(lines), flush=True)

    def evaluate(self, split: str) -> EvalResult:
        return run_evaluation(self.task, self.model, self.eval_loaders[split], self.acc, self.labels, self.processor, desc=f"eval {split}")

    def _validate(self) -> str:
        """Evaluate on validation, record it, keep the best weights; return a short summary."""
        if "validation" not in self.eval_loaders:
            return ""
        began = time.perf_counter()
        result = self.evaluate("validation")
        value = result.metrics.get(self.metric)
        if value is None:
            raise UserError(
                f"train.metric_for_best={self.metric!r} is not a metric of task {self.task.name}; "
                f"choose one of: {', '.join(k for k, v in result.metrics.items() if isinstance(v, float))}"
            )
        record = {"kind": "eval", "step": self.state["global_step"], "epoch": self.state["epoch"], **result.metrics}
        self.state["history"].append(record)
        self.log_to_trackers({f"eval/{k}": v for k, v in result.metrics.items() if isinstance(v, (int, float))})
        best = self.state["best_metric"]
        improved = best is None or (value > best if self.greater_is_better else value < best)
        # Early stopping counts improvements larger than the threshold (the best checkpoint takes any improvement).
        gain = None if best is None else (value - best if self.greater_is_better else best - value)
        if gain is None or gain > self.cfg.train.early_stopping_threshold:
            self.state["evals_without_improvement"] = 0
        else:
            self.state["evals_without_improvement"] += 1
        if improved:
            self.state["best_metric"], self.state["best_step"] = value, self.state["global_step"]
            self._save_best()
        self.phase_seconds["validation"] += time.perf_counter() - began
        shown = [self.metric] + [k for k in ("accuracy", "f1", "bleu") if k in result.metrics and k != self.metric]
        text = "val " + " ".join(f"{k} {result.metrics[k]:.4f}" for k in shown) + (" (best)" if improved else "")
        patience = self.cfg.train.early_stopping_patience
        if patience and self.state["evals_without_improvement"] >= patience:
            self.state["stopped_early"] = True
            text += f" | early stop: {patience} validation(s) without {self.metric} improving by more than {self.cfg.train.early_stopping_threshold:g}"
        return text

    def compute_loss(self, batch):
        """The model's own loss, or, with train.class_weights, cross-entropy weighted per class; for per-token
        labels, scaled from the batch's mean to its sum over the epoch's mean labelled tokens per batch."""
        if self.class_weights is None:
            loss = self.model(**batch).loss
        else:
            inputs = {key: value for key, value in batch.items() if key != "labels"}
            loss = weighted_cross_entropy(self.model(**inputs).logits, batch["labels"], self.class_weights)
        if self.labelled_per_batch:
            loss = loss * (labelled_weight(batch["labels"], self.class_weights) / self.labelled_per_batch)
        return loss

    @property
    def run_name(self) -> str:
        return self.cfg.train.run_name or self.run.path.resolve().name

    def log_to_trackers(self, values: dict[str, float]) -> None:
        if self.acc.trackers:  # accelerate logs from the main process only
            self.acc.log(values, step=self.state["global_step"])

    def train(self) -> None:
        from tqdm.auto import tqdm

        cfg, acc, state = self.cfg.train, self.acc, self.state
        self.model.train()
        bar = tqdm(
            total=self.total_steps,
            initial=state["global_step"],
            desc="train",
            unit="step",
            disable=not acc.is_local_main_process,
            dynamic_ncols=True,
        )
        say = bar.write if acc.is_local_main_process else (lambda _line: None)
        self._last_save = time.monotonic()
        # train_seconds counts the training steps only: evaluation and checkpoint writing are left out.
        clock = _Stopwatch(state["train_seconds"])
        done = state["global_step"] >= self.total_steps or state["stopped_early"]
        with attention_kernels(acc), cpu_dropout(self.model, acc.device), fused_lora(self.model, acc):
            self._train_epochs(bar, say, clock, done)
        bar.close()
        state["train_seconds"] = clock.seconds()
        stalled = loss_stalled(state["history"])
        if stalled:
            say(
                f"warning: the training loss did not fall (mean of the first quarter of the logged steps {stalled[0]:.4f}, "
                f"of the last {stalled[1]:.4f}): the model learned next to nothing. If the loss rose or jumped early, "
                f"train.learning_rate={cfg.learning_rate:g} is too high for this model (try a third of it); if it stayed "
                "flat from the start, the rate is too low or the run too short"
            )
        acc.wait_for_everyone()

    def _train_epochs(self, bar, say, clock, done: bool) -> None:
        import torch

        cfg, acc, state = self.cfg.train, self.acc, self.state
        window_loss, window_batches = torch.zeros((), device=acc.device), 0
        logged_seconds, logged_samples = state["train_seconds"], state["train_samples"]
        while not done:
            # The prepared loader passes the epoch on to the sampler (the batch order depends on seed + epoch
            # only); on resume, each process has already taken batches_in_epoch of the batches dealt out.
            self.train_loader.set_epoch(state["epoch"])
            self.sampler.set_epoch(state["epoch"])  # also when a multi-process shard wrapper sits in between
            self.sampler.skip_next(state["batches_in_epoch"] * acc.num_processes)
            epoch_loss, epoch_batches, epoch_start = 0.0, 0, time.perf_counter()
            for batch in self.train_loader:
                with acc.accumulate(self.model):
                    loss = self.compute_loss(batch)
                    acc.backward(loss)
                    if acc.sync_gradients and cfg.max_grad_norm:
                        acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                state["batches_in_epoch"] += 1
                state["train_samples"] += _batch_size(batch) * acc.num_processes
                window_loss += loss.detach().float()
                window_batches += 1
                if not acc.sync_gradients:
                    continue
                if not acc.optimizer_step_was_skipped:
                    self.scheduler.step()
                state["global_step"] += 1
                step = state["global_step"]
                done = step >= self.total_steps
                bar.update(1)
                if step % cfg.log_every == 0 or done:
                    mean_loss = acc.reduce(window_loss / window_batches, reduction="mean").item()
                    epoch_loss, epoch_batches = epoch_loss + mean_loss * window_batches, epoch_batches + window_batches
                    window_loss.zero_()
                    window_batches = 0
                    lr = self.scheduler.get_last_lr()[0]
                    state["history"].append({"kind": "train", "step": step, "epoch": state["epoch"], "loss": mean_loss, "lr": lr})
                    bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}")
                    seconds = clock.seconds()
                    throughput = (state["train_samples"] - logged_samples) / max(seconds - logged_seconds, 1e-9)
                    logged_seconds, logged_samples = seconds, state["train_samples"]
                    self.log_to_trackers({"train/loss": mean_loss, "train/learning_rate": lr, "train/samples_per_s": throughput, "train/epoch": state["epoch"]})
                if cfg.eval_every and step % cfg.eval_every == 0:
                    with clock.paused():
                        summary = self._validate()
                    if summary:
                        say(f"step {step} | {summary}")
                    done = done or state["stopped_early"]
                overdue = cfg.save_every_minutes and time.monotonic() - self._last_save > 60 * cfg.save_every_minutes
                if ((cfg.save_every and step % cfg.save_every == 0) or overdue) and not done:
                    state["train_seconds"] = clock.seconds()
                    with clock.paused():
                        self.save_checkpoint()
                if done:
                    break
            finished_epoch = state["batches_in_epoch"] >= len(self.train_loader)
            epoch_number = state["epoch"] + 1
            if finished_epoch:
                state["epoch"] += 1
                state["batches_in_epoch"] = 0
            summary = ""
            if not cfg.eval_every and not state["stopped_early"]:
                with clock.paused():
                    summary = self._validate()
                done = done or state["stopped_early"]
            loss_text = f"loss {epoch_loss / epoch_batches:.4f}" if epoch_batches else "loss -"
            say(
                f"epoch {epoch_number}/{self.num_epochs} | step {state['global_step']} | {loss_text}"
                + (f" | {summary}" if summary else "")
                + (" | stopped early" if state["stopped_early"] and "early stop" not in summary else "")
                + f" | {time.perf_counter() - epoch_start:.1f} s"
            )
            state["train_seconds"] = clock.seconds()
            if cfg.save_every is None and not done:
                with clock.paused():
                    self.save_checkpoint()

    def write_train_log(self) -> None:
        if self.acc.is_main_process:
            lines = "".join(json.dumps(record) + "\n" for record in self.state["history"])
            atomic_write_text(self.run.file(TRAIN_LOG_FILE), lines)


def loss_stalled(history: list[dict], min_records: int = 8, min_drop: float = 0.05) -> tuple[float, float] | None:
    """(first, last) quarter means of the logged training loss when it fell by less than `min_drop` of the first
    (a diverged or stuck run), else None; None too when fewer than `min_records` losses were logged to judge by."""
    losses = [record["loss"] for record in history if record["kind"] == "train"]
    if len(losses) < min_records:
        return None
    quarter = len(losses) // 4
    first, last = sum(losses[:quarter]) / quarter, sum(losses[-quarter:]) / quarter
    return (first, last) if not last < first * (1 - min_drop) else None  # `not <`: a NaN loss counts as stalled


def _setting_text(setting) -> str:
    return setting if isinstance(setting, str) else "train.class_weights"


def _batch_size(batch) -> int:
    return len(next(iter(batch.values())))


class _Stopwatch:
    """Seconds spent training, continuing from `start`, with pauses left out."""

    def __init__(self, start: float = 0.0):
        self.start = start
        self.began = time.perf_counter()
        self.paused_total = 0.0

    def seconds(self) -> float:
        return self.start + time.perf_counter() - self.began - self.paused_total

    @contextlib.contextmanager
    def paused(self):
        began = time.perf_counter()
        try:
            yield
        finally:
            self.paused_total += time.perf_counter() - began
