"""`mmkit compare RUN RUN ...`: the settings that differ between runs, their metrics side by side, and their loss
curves on one plot (compare.png, compare.html). Reads only config.yaml, metrics.json and train_log.jsonl."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmkit.config import yaml_load
from mmkit.errors import UserError
from mmkit.runs.report import flat_config, format_number, png_data_uri, template_environment
from mmkit.runs.run_dir import CONFIG_FILE, METRICS_FILE, TRAIN_LOG_FILE, atomic_write_bytes, atomic_write_text, read_train_log

COMPARE_PLOT_FILE = "compare.png"
COMPARE_HTML_FILE = "compare.html"
# Differs between any two runs by construction: the column headers already name the runs.
SAME_BY_CONSTRUCTION = {"train.output_dir"}


@dataclass
class RunRecord:
    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)


def read_run(given: str) -> RunRecord:
    """A finished (or unfinished) run's recorded files; anything that is not a run is a UserError."""
    path = Path(given).expanduser()
    config_file = path / CONFIG_FILE
    if not config_file.is_file():
        what = "no such folder" if not path.exists() else ("a file" if not path.is_dir() else f"no {CONFIG_FILE}")
        raise UserError(f"{given} is not an mmkit run ({what}); pass the train.output_dir of training runs")
    try:
        config = yaml_load(config_file.read_text(encoding="utf-8"))
    except Exception as err:  # noqa: BLE001 - yaml raises many error types; any of them means a broken file
        raise UserError(f"{config_file} is not readable YAML ({' '.join(str(err).split())[:120]}); it must be the config.yaml a run wrote") from None
    if not isinstance(config, dict):
        raise UserError(f"{config_file} is not a mapping of config keys; it must be the config.yaml a run wrote")
    metrics: dict[str, Any] = {}
    metrics_file = path / METRICS_FILE
    if metrics_file.is_file():  # an unfinished run has none yet: its metrics show as '-'
        try:
            metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
        except ValueError as err:
            raise UserError(f"{metrics_file} is not JSON ({err}); it must be the metrics.json a run wrote") from None
        if not isinstance(metrics, dict):
            raise UserError(f"{metrics_file} is not a JSON object; it must be the metrics.json a run wrote")
    return RunRecord(path, flat_config(config), metrics, read_train_log(path / TRAIN_LOG_FILE))


def run_names(records: list[RunRecord]) -> list[str]:
    """Column names: the folder names, or the paths where two folders share a name."""
    names = [r.path.name or str(r.path) for r in records]
    return names if len(set(names)) == len(names) else [str(r.path) for r in records]


def differing_keys(records: list[RunRecord]) -> list[tuple[str, list[Any]]]:
    keys = sorted(set().union(*(r.config for r in records)) - SAME_BY_CONSTRUCTION)
    rows = []
    for key in keys:
        values = [r.config.get(key, "(not set)") for r in records]
        if any(v != values[0] for v in values[1:]):
            rows.append((key, values))
    return rows


def metric_rows(records: list[RunRecord]) -> list[tuple[str, list[Any]]]:
    """Numeric metrics (per-class keys left out: they make the table unreadable with many classes), in the
    order the first run that has them wrote them."""
    keys: list[str] = []
    for record in records:
        keys += [k for k, v in record.metrics.items()
                 if k not in keys and "/" not in k and isinstance(v, (int, float)) and not isinstance(v, bool)]
    return [(key, [r.metrics.get(key) for r in records]) for key in keys]


def format_table(title: str, names: list[str], rows: list[tuple[str, list[Any]]]) -> str:
    cells = [[key] + [("-" if v is None else format_number(v) if isinstance(v, (int, float)) else str(v)) for v in values]
             for key, values in rows]
    header = [title] + names
    widths = [max(len(row[i]) for row in [header] + cells) for i in range(len(header))]
    line = lambda row: "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(row) for row in cells])


def compare_runs(paths: list[str], output: str | None = None) -> str:
    """The comparison as text; with `output`, also compare.png and compare.html in that folder."""
    from mmkit.training.plots import loss_curves_png

    if len(paths) < 2:
        raise UserError("mmkit compare needs at least two runs: mmkit compare RUN_A RUN_B [RUN ...]")
    records = [read_run(p) for p in paths]  # every run is checked before anything is written
    names = run_names(records)
    differ, metrics = differing_keys(records), metric_rows(records)
    text = [format_table("config key", names, differ) if differ else "the runs' configs are the same (but for train.output_dir)"]
    text.append(format_table("metric", names, metrics) if metrics else "no metrics.json in any of these runs yet")
    if output:
        folder = Path(output).expanduser()
        histories = {name: r.history for name, r in zip(names, records) if any(h.get("kind") == "train" for h in r.history)}
        plot = loss_curves_png(histories) if histories else None
        written = []
        if plot is not None:
            atomic_write_bytes(folder / COMPARE_PLOT_FILE, plot)
            written.append(folder / COMPARE_PLOT_FILE)
        html = template_environment().get_template("compare.html.j2").render(
            names=names, paths=[str(r.path) for r in records], differ=differ, metrics=metrics,
            plot=png_data_uri(plot) if plot else None,
        )
        atomic_write_text(folder / COMPARE_HTML_FILE, html)
        written.append(folder / COMPARE_HTML_FILE)
        text.append("written: " + ", ".join(map(str, written)) + ("" if plot else " (no run has a train log: no loss plot)"))
    return "\n\n".join(text)
