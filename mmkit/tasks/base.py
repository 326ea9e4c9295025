"""What a task is: rows -> model inputs, which head it needs, and which metrics judge it.

A task is built once from the config, with its model (`mmkit.models.spec.ModelSpec`), and never changes
afterwards: `build_task(cfg)` in `mmkit/tasks/__init__.py`. The training loop, the run directory, `mmkit eval`
and `mmkit predict` only talk to this interface, so a new task is one module under `mmkit/tasks/` plus a line
in `mmkit/tasks/__init__.py`; a new backbone family is a row of `mmkit/models/families.py` (or a module in
`mmkit/models/multimodal/`), never a branch in a task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

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
    name: ClassVar[str] = ""
    # The head the task needs: sequence-classification, token-classification, image-classification,
    # generation (seq2seq or causal LM) or image-text-classification (mmkit.models.spec picks the model for it).
    head: ClassVar[str] = ""
    default_metric: ClassVar[str] = ""  # the validation metric that picks the best checkpoint
    greater_is_better: ClassVar[bool] = True
    # Columns `prepare` adds for evaluation only (e.g. NER's word alignment): kept out of training batches.
    eval_only_columns: ClassVar[tuple[str, ...]] = ()
    # The Hub's pipeline tag (None where the Hub has no pipeline for the task) and the model card's tags.
    pipeline_tag: ClassVar[str | None] = None
    hub_tags: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfg: Config, spec):
        self.cfg = cfg
        self.spec = spec  # mmkit.models.spec.ModelSpec: this model for this task
        # Extra `generate` arguments the process setup needs (synced_gpus under ZeRO-3 / FSDP); the evaluation
        # loop sets them from its accelerator.
        self.generation_flags: dict[str, Any] = {}

    # --- data -------------------------------------------------------------------------------------------
    def load_data(self, splits: dict[str, Split], labels: list[str] | None = None) -> TaskData:
        """Validate raw splits (columns, labels, empty rows) and settle the label set.

        `labels` is given when a trained run is evaluated on new data: the data must fit the run's labels.
        """
        raise NotImplementedError

    def load_processor(self, run: Path | None = None):
        """The tokenizer (or image/multimodal processor): the base model's, or the one a run saved."""
        return self.spec.load_processor(run)

    def prepare(self, split: Split, processor, labels: list[str] | None):
        """Turn raw rows into model-input columns once (`datasets.map`, cached). Returns (dataset, notes).

        The dataset has a `length` column (used to batch rows of similar size together) and a `row_index`
        column (the row in the split, so predictions can be matched back to rows).
        """
        raise NotImplementedError

    def collator(self, processor):
        """Callable that pads a list of prepared rows into a batch of tensors."""
        raise NotImplementedError

    # --- evaluation -------------------------------------------------------------------------------------
    def eval_step(self, model, batch, processor) -> dict[str, Any]:
        """Run one batch; return tensors (first dim = batch) that the loop gathers across processes (lists for
        texts). `processor` decodes generated ids."""
        raise NotImplementedError

    def compute_metrics(self, outputs: dict[str, Any], labels: list[str] | None) -> EvalResult:
        """Metrics from the gathered outputs of every eval batch (`outputs[key]` concatenated)."""
        raise NotImplementedError

    def format_metrics(self, result: EvalResult) -> str:
        """A readable table of the metrics for the terminal."""
        return "\n".join(f"  {key:<24} {value:.4f}" for key, value in result.metrics.items() if isinstance(value, float))

    def worst_rows(self, outputs: dict[str, Any], labels: list[str] | None, n: int) -> list[dict[str, Any]]:
        """The `n` rows the model got most wrong, worst first, from the same gathered outputs as the metrics
        (no second inference pass): JSON-able dicts with the split's `row_index` and what went wrong."""
        return []

    def row_content(self, split: Split, row_index: int) -> dict[str, Any]:
        """What the report shows of one data row: its `text`, `image` reference or `words`."""
        return {}

    # --- prediction -------------------------------------------------------------------------------------
    def predict(self, model, processor, labels: list[str] | None, inputs: dict[str, Any]) -> Any:
        """Predict for one user input (`{"text": ...}`, `{"image": path}` or both): a JSON-able result."""
        raise NotImplementedError

    def format_prediction(self, prediction: Any) -> str:
        raise NotImplementedError

    # What the model card's code predicts for (a user replaces it with their own input).
    example_input: ClassVar[dict[str, str]] = {"text": "your text here"}
