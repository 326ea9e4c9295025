"""The run directory: everything a run writes, and how a finished run is found and read back.

    RUN/
      config.yaml               the resolved config (every key, defaults filled in)
      labels.json               label names in class-id order (tasks with classes)
      adapter_config.json       PEFT adapter + head (lora.enabled=true) ...
      adapter_model.safetensors
      config.json, model.safetensors   ... or the whole model (lora.enabled=false)
      tokenizer.json, ...       tokenizer / processor
      metrics.json              final metrics (flat keys), train_log.jsonl, loss_curve.png, confusion_matrix.png
      checkpoints/step-N/       resumable state (trainable weights, optimizer, scheduler, RNG, position)
      checkpoints/best/         the best weights so far, by the validation metric
      eval/                     what `mmkit eval` writes by default

A run directory is laid out like a Hub model repo, so `mmkit eval/predict` read both the same way
(`mmkit.runs.inference.resolve_run`).
Files are written to a temporary name and renamed, so a crash never leaves a half-written file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mmkit.config import Config, config_from_dict, yaml_load
from mmkit.errors import UserError

CONFIG_FILE = "config.yaml"
LABELS_FILE = "labels.json"
METRICS_FILE = "metrics.json"
TRAIN_LOG_FILE = "train_log.jsonl"
LOSS_PLOT_FILE = "loss_curve.png"
CONFUSION_PLOT_FILE = "confusion_matrix.png"
CHECKPOINTS_DIR = "checkpoints"

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def move_into(staging: Path, destination: Path) -> list[str]:
    """Move every file of `staging` into `destination` (rename: each file appears whole or not at all)."""
    moved = []
    for item in sorted(staging.rglob("*")):
        if item.is_file():
            target = destination / item.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(item, target)
            moved.append(str(item.relative_to(staging)))
    shutil.rmtree(staging, ignore_errors=True)
    return moved


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    # -- layout ------------------------------------------------------------------------------------------
    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @property
    def has_adapter(self) -> bool:
        from mmkit.models.spec import ADAPTER_CONFIG_FILE

        return self.file(ADAPTER_CONFIG_FILE).is_file()

    def is_run(self) -> bool:
        return self.file(CONFIG_FILE).is_file()

    # -- starting a run ------------------------------------------------------------------------------------
    def claim(self, resume: bool, overwrite: bool) -> None:
        """Check that a new run may write here. Nothing is created (the caller creates after validation)."""
        if not self.path.exists():
            return
        if not self.path.is_dir():
            raise UserError(f"train.output_dir {self.path} is a file; choose a folder")
        if resume or not any(self.path.iterdir()):
            return
        if not self.is_run():
            raise UserError(
                f"train.output_dir {self.path} is a non-empty folder that is not an mmkit run; choose another folder"
            )
        if not overwrite:
            raise UserError(
                f"train.output_dir {self.path} already holds a run; continue it with train.resume=true, "
                "replace it with train.overwrite=true, or choose another train.output_dir"
            )

    def clear(self) -> None:
        """Delete a previous run here (only ever an mmkit run: `claim` checked)."""
        if self.path.exists() and self.is_run():
            shutil.rmtree(self.path)

    def staging(self, name: str) -> Path:
        """A fresh hidden folder inside the run dir, for writing a group of files before moving them in."""
        path = self.path / f".staging-{name}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    # -- reading a finished run --------------------------------------------------------------------------
    def read_config(self) -> Config:
        path = self.file(CONFIG_FILE)
        if not path.is_file():
            raise UserError(f"{self.path} is not an mmkit run: no {CONFIG_FILE}; pass the output_dir of a training run")
        return config_from_dict(yaml_load(path.read_text(encoding="utf-8")) or {})

    def read_labels(self) -> list[str] | None:
        path = self.file(LABELS_FILE)
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def write_config(self, cfg: Config) -> None:
        atomic_write_text(self.file(CONFIG_FILE), cfg.to_yaml())

    def write_labels(self, labels: list[str] | None) -> None:
        if labels is not None:
            atomic_write_json(self.file(LABELS_FILE), labels)
