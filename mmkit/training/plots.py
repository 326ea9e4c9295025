"""Plots written with every run: the loss curve and, for classification tasks, the confusion matrix."""

from __future__ import annotations

import io
from pathlib import Path

from mmkit.runs.run_dir import atomic_write_bytes


def _figure():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    _figure().close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def plot_loss_curve(history: list[dict], path: Path, metric: str | None = None) -> None:
    """Training loss per logged step; the validation metric on a second axis when there is one."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 4))
    train = [r for r in history if r.get("kind") == "train"]
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], color="tab:blue", label="train loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("train loss", color="tab:blue")
    ax.grid(alpha=0.3)
    evals = [r for r in history if r.get("kind") == "eval" and metric and metric in r]
    if evals:
        ax2 = ax.twinx()
        ax2.plot([r["step"] for r in evals], [r[metric] for r in evals], "o-", color="tab:orange")
        ax2.set_ylabel(f"validation {metric}", color="tab:orange")
    ax.set_title("training loss" + (f" and validation {metric}" if evals else ""))
    _save(fig, path)


def plot_confusion_matrix(matrix: list[list[int]], labels: list[str], path: Path, title: str) -> None:
    plt = _figure()
    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = max((max(row) for row in matrix), default=0) or 1
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", color="white" if count > peak / 2 else "black")
    ax.set_title(title)
    _save(fig, path)
