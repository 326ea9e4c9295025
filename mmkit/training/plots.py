"""Plots written with every run (the loss curve and, for classification tasks, the confusion matrix), and the
figures the HTML report and `mmkit compare` embed. Each figure is built as PNG bytes; the `plot_*` functions
write them to a file."""

from __future__ import annotations

import io
from pathlib import Path

from mmkit.runs.run_dir import atomic_write_bytes


def _figure():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    _figure().close(fig)
    return buffer.getvalue()


def loss_curve_png(history: list[dict], metric: str | None = None) -> bytes:
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
    return _png(fig)


def plot_loss_curve(history: list[dict], path: Path, metric: str | None = None) -> None:
    atomic_write_bytes(path, loss_curve_png(history, metric))


def confusion_matrix_png(matrix: list[list[int]], labels: list[str], title: str) -> bytes:
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
    return _png(fig)


def plot_confusion_matrix(matrix: list[list[int]], labels: list[str], path: Path, title: str) -> None:
    atomic_write_bytes(path, confusion_matrix_png(matrix, labels, title))


def per_class_png(scores: dict[str, dict[str, float]], title: str) -> bytes:
    """Grouped bars: precision, recall and F1 of each class (or entity type)."""
    plt = _figure()
    names = list(scores)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(names) + 2), 3.6))
    width = 0.27
    for k, (key, colour) in enumerate((("precision", "tab:blue"), ("recall", "tab:orange"), ("f1", "tab:green"))):
        ax.bar([i + (k - 1) * width for i in range(len(names))], [scores[n][key] for n in names], width, label=key, color=colour)
    ax.set_xticks(range(len(names)), names, rotation=30 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title(title)
    return _png(fig)


def loss_curves_png(histories: dict[str, list[dict]]) -> bytes:
    """`mmkit compare`: the training loss of several runs on one axis."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, history in histories.items():
        train = [r for r in history if r.get("kind") == "train"]
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], label=name)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("train loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title("training loss")
    return _png(fig)
