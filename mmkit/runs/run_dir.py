"""The run directory: everything a run writes, and how a finished run is found and read back.

    RUN/
      config.yaml               the resolved config (every key, defaults filled in)
      labels.json               label names in class-id order (tasks with classes)
      adapter_config.json       PEFT adapter + head (lora.enabled=true) ...
      adapter_model.safetensors
      config.json, model.safetensors   ... or the whole model (lora.enabled=false)
      tokenizer.json, ...       tokenizer / processor
      metrics.json              final metrics (flat keys), train_log.jsonl, loss_curve.png, confusion_matrix.png
      report.html               config, metrics, curves and the worst rows in one self-contained page
      checkpoints/step-N/       resumable state (trainable weights, optimizer, scheduler, RNG, position)
      checkpoints/best/         the best weights so far, by the validation metric
      eval/                     what `mmkit eval` writes by default
      .mmkit-run.json           the mark of a folder mmkit created, and the files the run wrote

A run directory is laid out like a Hub model repo, so `mmkit eval/predict` read both the same way
(`mmkit.runs.inference.resolve_run`).
Files are written to a temporary name and renamed, so a crash never leaves a half-written file. mmkit only
ever resumes into, overwrites or deletes from a folder that carries its mark, and deletes only what it wrote.
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
REPORT_FILE = "report.html"
CHECKPOINTS_DIR = "checkpoints"
MARKER_FILE = ".mmkit-run.json"
# What a run writes besides the model files the spec names (those are recorded in the marker when saved).
OWN_ENTRIES = (CONFIG_FILE, LABELS_FILE, METRICS_FILE, TRAIN_LOG_FILE, LOSS_PLOT_FILE, CONFUSION_PLOT_FILE, REPORT_FILE, CHECKPOINTS_DIR,
               "eval", "translations.jsonl", MARKER_FILE, ".staging-*")

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


def read_train_log(path: Path) -> list[dict[str, Any]]:
    """train_log.jsonl records (none when the run has no log, e.g. a Hub repo); a broken line is a UserError."""
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as err:
            raise UserError(f"{path} line {number} is not JSON ({err}); it must be the train_log.jsonl a run wrote") from None
        if not isinstance(record, dict):
            raise UserError(f"{path} line {number} is not a JSON object; it must be the train_log.jsonl a run wrote")
        records.append(record)
    return records


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
    def created_by_mmkit(self) -> bool:
        return self.file(MARKER_FILE).is_file()

    def claim(self, resume: bool, overwrite: bool) -> None:
        """Check that a run may write here. Nothing is created (the caller creates after every check passed)."""
        if not self.path.exists():
            return
        if not self.path.is_dir():
            raise UserError(f"train.output_dir {self.path} is a file; choose a folder")
        if not any(self.path.iterdir()):
            return
        if not self.created_by_mmkit():
            raise UserError(
                f"train.output_dir {self.path} is a non-empty folder mmkit did not create (no {MARKER_FILE}); "
                "mmkit writes only into its own run folders: choose another train.output_dir"
            )
        if resume:
            return
        if not overwrite:
            raise UserError(
                f"train.output_dir {self.path} already holds a run; continue it with train.resume=true, "
                "replace it with train.overwrite=true, or choose another train.output_dir"
            )
        foreign = self.foreign_entries()
        if foreign:
            shown = ", ".join(foreign[:4]) + (", ..." if len(foreign) > 4 else "")
            raise UserError(
                f"train.overwrite=true would delete files mmkit did not write in {self.path} ({shown}); "
                "move them out or choose another train.output_dir (nothing was deleted)"
            )

    def _recorded(self) -> set[str]:
        try:
            return set(json.loads(self.file(MARKER_FILE).read_text(encoding="utf-8")).get("files", []))
        except (OSError, ValueError, AttributeError):
            return set()

    def foreign_entries(self) -> list[str]:
        """Top-level entries of the folder that no mmkit run writes and this run did not record."""
        import fnmatch

        recorded = self._recorded()
        return sorted(
            item.name + ("/" if item.is_dir() else "")
            for item in self.path.iterdir()
            if item.name not in recorded and not any(fnmatch.fnmatchcase(item.name, p) for p in OWN_ENTRIES)
        )

    def create(self) -> None:
        """Make the folder and mark it as an mmkit run."""
        self.path.mkdir(parents=True, exist_ok=True)
        if not self.created_by_mmkit():
            from mmkit._version import __version__

            atomic_write_json(self.file(MARKER_FILE), {"created_by": f"mmkit {__version__}", "files": []})

    def record(self, names: list[str]) -> None:
        """Note top-level files this run wrote (the model and processor files), so `clear` may delete them."""
        from mmkit._version import __version__

        top = {name.split("/", 1)[0] for name in names}
        atomic_write_json(self.file(MARKER_FILE), {"created_by": f"mmkit {__version__}", "files": sorted(self._recorded() | top)})

    def clear(self) -> None:
        """Delete a previous run here: only what mmkit wrote (`claim` refused a folder holding anything else)."""
        if not self.created_by_mmkit() or self.foreign_entries():
            raise UserError(f"{self.path}: refusing to delete a folder holding files mmkit did not write")
        for item in sorted(self.path.iterdir(), key=lambda p: p.name == MARKER_FILE):  # the mark goes last
            shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()
        self.path.rmdir()

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
