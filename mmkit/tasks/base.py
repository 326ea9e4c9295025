"""What a task is: rows -> model inputs, which model (head) it needs, and which metrics judge it.

The training loop, the run directory, `mmkit eval` and `mmkit predict` only talk to this interface, so a new
task is one module under `mmkit/tasks/` plus a line in `mmkit/tasks/__init__.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mmkit.config import Config
from mmkit.data import Split


@dataclass
class TaskData:
    """Validated splits (raw rows) and the label names read from them or from the config."""

    splits: dict[str, Split]
    labels: list[str] | None = None
    notes: list[str] = field(default_factory=list)  # shown in the start banner (e.g. truncated rows)


@dataclass
class EvalResult:
    metrics: dict[str, float]  # flat keys, e.g. accuracy, macro_f1
    # Whatever the task wants to plot or write (confusion matrix, sample translations, ...).
    details: dict[str, Any] = field(default_factory=dict)


class Task:
    name: str = ""
    # PEFT task type (SEQ_CLS, TOKEN_CLS, SEQ_2_SEQ_LM, CAUSAL_LM) or None for custom heads.
    peft_task_type: str | None = None
    default_metric: str = ""  # the validation metric that picks the best checkpoint
    greater_is_better: bool = True
    # Columns `prepare` adds for evaluation only (e.g. NER's word alignment): kept out of training batches.
    eval_only_columns: tuple[str, ...] = ()

    # --- data -------------------------------------------------------------------------------------------
    def load_data(self, cfg: Config, splits: dict[str, Split], labels: list[str] | None = None) -> TaskData:
        """Validate raw splits (columns, labels, empty rows) and settle the label set.

        `labels` is given when a trained run is evaluated on new data: the data must fit the run's labels.
        """
        raise NotImplementedError

    def load_processor(self, cfg: Config, source: str):
        """The tokenizer (or image/multimodal processor) at `source`."""
        raise NotImplementedError

    def prepare(self, split: Split, processor, cfg: Config, labels: list[str] | None):
        """Turn raw rows into model-input columns once (`datasets.map`, cached). Returns (dataset, notes).

        The dataset has a `length` column (used to batch rows of similar size together) and a `row_index`
        column (the row in the split, so predictions can be matched back to rows).
        """
        raise NotImplementedError

    def collator(self, processor):
        """Callable that pads a list of prepared rows into a batch of tensors."""
        raise NotImplementedError

    # --- model ------------------------------------------------------------------------------------------
    def load_model(self, cfg: Config, source: str, labels: list[str] | None, processor):
        """The base model with this task's head, loaded from `source` (a Hub id or a folder)."""
        raise NotImplementedError

    def head_modules(self, model) -> list[str]:
        """Names of the freshly added head modules: always trained, and saved with the adapter."""
        return []

    # --- evaluation -------------------------------------------------------------------------------------
    def eval_step(self, model, batch) -> dict[str, Any]:
        """Run one batch; return tensors (first dim = batch) that the loop gathers across processes."""
        raise NotImplementedError

    def compute_metrics(self, outputs: dict[str, Any], labels: list[str] | None) -> EvalResult:
        """Metrics from the gathered outputs of every eval batch (`outputs[key]` concatenated)."""
        raise NotImplementedError

    def format_metrics(self, result: EvalResult) -> str:
        """A readable table of the metrics for the terminal."""
        return "\n".join(f"  {key:<24} {value:.4f}" for key, value in result.metrics.items() if isinstance(value, float))

    # --- prediction -------------------------------------------------------------------------------------
    def predict(self, model, processor, cfg: Config, labels: list[str] | None, inputs: dict[str, Any]) -> Any:
        """Predict for one user input (`{"text": ...}`, later `{"image": ...}`): a JSON-able result."""
        raise NotImplementedError

    def format_prediction(self, prediction: Any) -> str:
        raise NotImplementedError
