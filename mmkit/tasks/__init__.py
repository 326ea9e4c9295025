"""The task registry: task name in a config -> the class that knows its data, head and metrics."""

from __future__ import annotations

import importlib

from mmkit.config import Config
from mmkit.errors import UserError
from mmkit.tasks.base import EvalResult, Task, TaskData

# name -> "module:Class"; imported on use so that `mmkit --help` stays fast.
TASKS = {
    "sentiment": "mmkit.tasks.sentiment:SentimentTask",
    "ner": "mmkit.tasks.ner:NerTask",
    "mm_sentiment": "mmkit.tasks.mm_sentiment:MultimodalSentimentTask",
    "image_classification": "mmkit.tasks.image_classification:ImageClassificationTask",
    "translation": "mmkit.tasks.translation:TranslationTask",
}


def task_class(name: str) -> type[Task]:
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; choose one of: {', '.join(sorted(TASKS))}")
    module_name, class_name = TASKS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def build_task(cfg: Config, base: str | None = None) -> Task:
    """The task of `cfg.task` with its model: built once, never changed afterwards. `base`: load the base
    checkpoint from there (the same model as model.name_or_path, e.g. a local copy)."""
    from mmkit.models.spec import model_spec

    cls = task_class(cfg.task)
    return cls(cfg, model_spec(cfg, cls.head, base))


__all__ = ["EvalResult", "Task", "TaskData", "TASKS", "build_task", "task_class"]
