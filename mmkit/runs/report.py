"""report.html: one self-contained page per run (and per `mmkit eval`) to read a run at a glance.

Config summary, metrics, loss/metric curves, confusion matrix, per-class scores and the rows the model got most
wrong, with every figure and image thumbnail inline as base64: the file opens anywhere, offline, and fetches
nothing. The text is rendered by a Jinja2 template with autoescaping on, because row texts are untrusted input.
"""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path
from typing import Any

from mmkit.runs.run_dir import REPORT_FILE, atomic_write_text

THUMBNAIL_SIDE = 112  # pixels: enough to recognise a photo, small enough for 20 rows inline
# Shown first in the config summary (when set); the whole config is one click away below it.
SUMMARY_KEYS = (
    "task", "model.name_or_path", "model.text", "model.vision", "model.init", "model.config.family", "lora.enabled", "lora.r", "lora.alpha",
    "lora.target_modules", "train.learning_rate", "train.batch_size", "train.epochs", "train.max_steps", "train.seed",
    "data.train", "data.validation", "data.test",
)


def template_environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("mmkit", "templates"),
        autoescape=select_autoescape(default_for_string=True, default=True),  # every {{ value }} is HTML-escaped
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = format_number
    return env


def format_number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "" if value is None else str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, int) or (value.is_integer() and abs(value) > 1):  # counts; a score of 1.0 keeps its decimals
        return f"{int(value):,}"
    return f"{value:.4f}"


def png_data_uri(data: bytes, kind: str = "png") -> str:
    return f"data:image/{kind};base64," + base64.b64encode(data).decode("ascii")


def flat_config(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"epochs": 3}} -> {"train.epochs": 3}."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            out.update(flat_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def split_metrics(metrics: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """(headline metrics, per class/type {name: {precision, recall, f1, support}}) from flat metric keys."""
    headline, per_class = {}, {}
    for key, value in metrics.items():
        name, _, kind = key.rpartition("/")
        if name and kind in ("precision", "recall", "f1", "support"):
            per_class.setdefault(name, {})[kind] = value
        else:
            headline[key] = value
    return headline, {name: scores for name, scores in per_class.items() if {"precision", "recall", "f1"} <= set(scores)}


def thumbnail(reference: Any) -> str | None:
    """A JPEG thumbnail of a row's image as a data URI; None when the image can no longer be read."""
    from mmkit.data.images import load_rgb
    from mmkit.errors import UserError

    try:
        image = load_rgb(reference, THUMBNAIL_SIDE)
    except (OSError, UserError):
        return None
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return png_data_uri(buffer.getvalue(), "jpeg")


def worst_table(task, worst: list[dict[str, Any]], split) -> tuple[list[str], list[list[dict[str, Any]]]]:
    """Headers and cells of the worst-rows table. A cell is {"text": ...} (wrapped), {"label": ...} (kept on one
    line), {"image": data URI} or {"number": ...}."""
    headers: list[str] = []
    rows = []
    for record in worst:
        content = task.row_content(split, record["row_index"]) if split is not None else {}
        where = split.where(record["row_index"]) if split is not None else f"row {record['row_index'] + 1}"
        cells: dict[str, dict[str, Any]] = {"row": {"where": where}}
        if "image" in content:
            uri = thumbnail(content["image"])
            cells["image"] = {"image": uri} if uri else {"text": "(image unreadable)"}
        if "text" in content:
            cells["text"] = {"text": content["text"]}
        if "gold" in record:  # one label per row
            cells.update({
                "gold": {"label": record["gold"]}, "predicted": {"label": record["predicted"]},
                "p(predicted)": {"number": record["p_predicted"]}, "p(gold)": {"number": record["p_gold"]},
            })
        elif "missed" in record:  # NER: spans are (type, first word, last word)
            words = content.get("words", [])

            def spans(found, words=words):
                return "\n".join(f"{kind}: {' '.join(words[start:end + 1])}" for kind, start, end in found) or "-"

            cells.update({
                "sentence": {"text": " ".join(words)}, "missed (gold, not predicted)": {"text": spans(record["missed"])},
                "spurious (predicted, not gold)": {"text": spans(record["spurious"])},
            })
        elif "hypothesis" in record:  # translation
            cells.update({
                "source": {"text": record["source"]}, "reference": {"text": record["reference"]},
                "hypothesis": {"text": record["hypothesis"]}, "chrF": {"number": record["chrf"]},
            })
        headers += [h for h in cells if h not in headers]
        rows.append(cells)
    return headers, [[row.get(h, {"text": ""}) for h in headers] for row in rows]


def render_report(task, cfg, *, title: str, split_name: str | None, result=None, split=None,
                  history: list[dict] | None = None, facts: dict[str, Any] | None = None) -> str:
    """The report page as a string. `result`: the final evaluation (None when the run had no eval split);
    `split`: the evaluated split's rows (for texts and images of the worst rows); `history`: train_log records."""
    from mmkit.training.plots import confusion_matrix_png, loss_curve_png, per_class_png

    config = flat_config(cfg.to_dict())
    summary = {key: config[key] for key in SUMMARY_KEYS if config.get(key) not in (None, [], "")}
    if not config.get("lora.enabled"):  # a full fine-tune: the LoRA settings did nothing
        summary = {key: value for key, value in summary.items() if not key.startswith("lora.") or key == "lora.enabled"}
    if config.get("model.init") != "scratch":
        summary.pop("model.config.family", None)
    metric = cfg.train.metric_for_best or task.default_metric
    figures = []
    if history and any(r.get("kind") == "train" for r in history):
        figures.append(("loss and validation metric", png_data_uri(loss_curve_png(history, metric))))
    headline, per_class, worst = {}, {}, ([], [])
    if result is not None:
        headline, per_class = split_metrics(result.metrics)
        details = result.details
        if "confusion_matrix" in details:
            figures.append(("confusion matrix", png_data_uri(confusion_matrix_png(details["confusion_matrix"], details["labels"], f"confusion matrix ({split_name})"))))
        if per_class:
            figures.append(("per class", png_data_uri(per_class_png(per_class, f"per-class scores ({split_name})"))))
        worst = worst_table(task, details.get("worst_rows", []), split)
    return template_environment().get_template("report.html.j2").render(
        title=title, task=task.name, split=split_name, summary=summary, config=config, metrics=headline,
        per_class=per_class, facts=facts or {}, figures=figures, worst_headers=worst[0], worst_rows=worst[1],
        evaluated=result is not None,
    )


def write_report(path: Path, task, cfg, **kwargs) -> Path:
    atomic_write_text(path, render_report(task, cfg, **kwargs))
    return path
