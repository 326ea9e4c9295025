"""Using a finished run (a local run dir or a Hub repo laid out the same way): find it, load it, evaluate, predict."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmkit.config import Config
from mmkit.data import load_split
from mmkit.errors import UserError
from mmkit.runs.report import write_report
from mmkit.runs.run_dir import CONFIG_FILE, REPORT_FILE, TRAIN_LOG_FILE, RunDir, read_train_log
from mmkit.tasks import EvalResult, Task, build_task
from mmkit.training.evaluation import eval_loader, rows_in, run_evaluation, write_eval_outputs


@dataclass
class TrainedModel:
    run: RunDir
    cfg: Config
    task: Task
    model: Any
    processor: Any
    labels: list[str] | None

    def predict(self, text: str | None = None, image: str | None = None) -> Any:
        """The task's prediction for one input: label and probabilities, entities, or a translation."""
        return predict(self, {"text": text, "image": image})


HUB_PREFIX = "hf://"


def resolve_run(run_or_repo: str, revision: str | None = None) -> RunDir:
    """A local run folder, or a Hub repo: `hf://owner/name`, or `owner/name` where that cannot be a local path
    (no folder `owner` here). A local path that does not exist is never looked up on the Hub: online, that would
    fetch someone else's model (`runs/my-run` is also a valid Hub id of the user `runs`)."""
    if run_or_repo.startswith(HUB_PREFIX):
        return _hub_run(run_or_repo[len(HUB_PREFIX):], revision)
    path = Path(run_or_repo).expanduser()
    if path.exists():
        if revision:
            raise UserError(f"--revision is for Hub repo ids; {path} is a local folder")
        run = RunDir(path)
        if not run.is_run():
            raise UserError(f"{path} is not an mmkit run (no {CONFIG_FILE}); pass the output_dir of a training run")
        return run
    owner = run_or_repo.split("/", 1)[0]
    if run_or_repo.count("/") != 1 or run_or_repo.startswith((".", "/", "~")) or Path(owner).expanduser().exists():
        raise UserError(
            f"no run at {run_or_repo} (no such folder); for a Hub repo whose owner is also a local folder name, write {HUB_PREFIX}{run_or_repo}"
        )
    return _hub_run(run_or_repo, revision)


def _hub_run(repo_id: str, revision: str | None) -> RunDir:
    from mmkit.hub.client import download_run

    run = RunDir(download_run(repo_id, revision))
    if not run.is_run():
        raise UserError(f"{repo_id} is not an mmkit run on the Hub (no {CONFIG_FILE}); push runs with `mmkit push`")
    return run


def load_trained(
    run_or_repo: str, revision: str | None = None, base: str | None = None, trust_remote_code: bool = False,
    unquantized: bool = False,
) -> TrainedModel:
    """The run's model in eval mode: its adapter (and head) on a fresh base, or its full weights.

    The base is the one recorded in the adapter config; `base` loads it from elsewhere and must name the
    same model (a mismatch is a UserError). Code shipped with a checkpoint runs only with `trust_remote_code`
    (the user's --trust-remote-code), never because a run folder's own config.yaml says so. `unquantized`:
    a run trained on a 4-/8-bit base (model.quantization) loads its adapter on the base in model.dtype."""
    run = resolve_run(run_or_repo, revision)
    cfg = run.read_config()
    cfg.model.trust_remote_code = trust_remote_code
    if unquantized:
        cfg.model.quantization = None
    if run.has_adapter:
        base = base_for(run, cfg, base)
    elif base:
        raise UserError(f"--base is for adapters; {run_or_repo} holds a full model")
    task = task_for_run(run, cfg, base)
    labels = run.read_labels()
    processor = task.load_processor(run.path)
    model = task.spec.restore(run.path, labels, processor)
    return TrainedModel(run, cfg, task, model, processor, labels)


def task_for_run(run: RunDir, cfg: Config, base: str | None = None) -> Task:
    """The run's task and model. A full fine-tune saved as a standard checkpoint is described by its own
    config.json (its base need not be reachable); an adapter needs its base."""
    if not run.has_adapter and run.file("config.json").is_file():
        base = str(run.path)
    return build_task(cfg, base)


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
        trained.task, lambda _labels: trained.model, trained.processor, trained.labels, source, split,
        Path(output) if output else trained.run.path / "eval", batch_size or cfg.train.eval_batch_size or 2 * cfg.train.batch_size,
        history=read_train_log(trained.run.file(TRAIN_LOG_FILE)), title=trained.run.path.name,
    )


def evaluate_on(task: Task, build_model, processor, labels, source: str, split: str, out_dir: Path,
                batch_size: int, facts: dict[str, Any] | None = None, history: list[dict] | None = None,
                title: str | None = None) -> tuple[EvalResult, dict[str, Any], Path]:
    """Read, check and prepare `source` as the task does in training, run `build_model(label_names)` over it,
    and write metrics.json, plots and report.html to `out_dir` (`history`: the run's train log, for the report)."""
    from mmkit.training.trainer import make_accelerator

    raw = load_split(source, split, task.cfg.data.hub_config)
    task_data = task.load_data({split: raw}, labels=labels)
    dataset, _notes = task.prepare(task_data.splits[split], processor, task_data.labels)
    accelerator = make_accelerator(task.cfg, task.spec.family)
    model = accelerator.prepare_model(build_model(task_data.labels), evaluation_mode=True)  # no DDP wrapper: nothing trains
    loader = accelerator.prepare(eval_loader(dataset, task.collator(processor), batch_size))
    started = time.perf_counter()
    result = run_evaluation(task, model, loader, accelerator, task_data.labels, processor, desc=f"eval {split}")
    seconds = time.perf_counter() - started
    extra = {**(facts or {}), "num_examples": rows_in(dataset), "eval_runtime_s": round(seconds, 2), "data": str(source)}
    path = out_dir
    if accelerator.is_main_process:
        path = write_eval_outputs(result, out_dir, split, extra=extra)
        write_report(
            out_dir / REPORT_FILE, task, task.cfg, title=f"{title or out_dir.name} on {source}", split_name=split,
            result=result, split=task_data.splits[split], history=history, facts=extra,
        )
    return result, extra, path


def predict(trained: TrainedModel, inputs: dict[str, Any]) -> Any:
    return trained.task.predict(trained.model, trained.processor, trained.labels, inputs)


# -- which base an adapter goes on ---------------------------------------------------------------------------
def recorded_base(run: RunDir) -> str | None:
    """The base model an adapter was trained on (adapter_config.json's base_model_name_or_path)."""
    from mmkit.models.spec import ADAPTER_CONFIG_FILE

    path = run.file(ADAPTER_CONFIG_FILE)
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("base_model_name_or_path") or None


def same_model(recorded: str, given: str) -> bool:
    """Whether `given` names the base `recorded`: the same Hub id, the same folder, the embedded default for
    its id, or a local folder named like the Hub repo (a downloaded copy: `~/models/all-MiniLM-L6-v2`)."""
    from mmkit.models.families import resolve_model_path

    if recorded.rstrip("/") == given.rstrip("/"):
        return True
    rec_path, giv_path = Path(resolve_model_path(recorded)).expanduser(), Path(resolve_model_path(given)).expanduser()
    if rec_path.exists() and giv_path.exists():
        return rec_path.resolve() == giv_path.resolve()
    if not rec_path.exists() and giv_path.is_dir() and recorded.count("/") == 1:
        return giv_path.resolve().name == recorded.split("/")[1]
    return False


def base_for(run: RunDir, cfg: Config, base: str | None) -> str | None:
    """Where to load an adapter's base from: `base` (checked against the adapter's record), or the record
    when it differs from the config's model (None: the config's model.name_or_path)."""
    recorded = recorded_base(run)
    if base:
        expected = recorded or cfg.model.name_or_path
        if expected and not same_model(expected, base):
            raise UserError(
                f"--base {base} does not match the adapter's base model {expected} (adapter_config.json "
                "base_model_name_or_path); the adapter only works on the model it was trained on: omit --base or pass that model"
            )
        return base
    return None
