"""The task registry: task name in a config -> the class that knows its data, head and metrics."""

from __future__ import annotations

import importlib

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


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; choose one of: {', '.join(sorted(TASKS))}")
    module_name, class_name = TASKS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)()


__all__ = ["EvalResult", "Task", "TaskData", "TASKS", "get_task"]
