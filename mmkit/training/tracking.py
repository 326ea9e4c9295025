"""`train.report_to`: experiment trackers, through Accelerate (`Accelerator(log_with=...)`, `init_trackers`,
`accelerator.log`). Accelerate logs from the main process only.

Every tracker's package is optional. A missing one is refused before anything is written (Accelerate itself
would drop it silently); a tracker that cannot start (no login, no network) is refused before the first step.
TensorBoard writes into the run folder (RUN/logs/<train.project>/).
"""

from __future__ import annotations

from typing import Any

from mmkit.config import Config
from mmkit.errors import UserError

TRACKERS = ("tensorboard", "wandb", "mlflow", "trackio")
LOGS_DIR = "logs"
_OFFLINE_HINT = {
    "wandb": "log in with `wandb login`, or set WANDB_MODE=offline",
    "mlflow": "set MLFLOW_TRACKING_URI to a reachable server or a local folder (file:./mlruns)",
    "trackio": "check that trackio can write its local database",
    "tensorboard": "check that the run folder is writable",
}


def _installed(name: str) -> bool:
    from accelerate.utils import imports

    return getattr(imports, f"is_{name}_available")()


def requested_trackers(cfg: Config) -> list[str]:
    """The trackers train.report_to names, each checked to be installed; [] for none."""
    names = list(dict.fromkeys(cfg.train.report_to or ["none"]))
    if "none" in names:
        if len(names) > 1:
            raise UserError(f"train.report_to lists none together with {', '.join(n for n in names if n != 'none')}; keep one of them")
        return []
    if "all" in names:
        found = [name for name in TRACKERS if _installed(name)]
        if not found:
            raise UserError(
                "train.report_to=all: none of tensorboard, wandb, mlflow, trackio is installed; "
                "pip install tensorboard (or the tracker you use), or set train.report_to=none"
            )
        return found
    for name in names:
        if not _installed(name):
            extra = " (or pip install 'mmkit[tensorboard]')" if name == "tensorboard" else ""
            raise UserError(
                f"train.report_to={name}: the {name} package is not installed; pip install {name}{extra}, "
                "or remove it from train.report_to"
            )
    return names


def flat_config(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The resolved config as dotted keys with scalar values: what every tracker accepts as hyperparameters."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flat_config(value, f"{prefix}{key}."))
        elif value is None or isinstance(value, (bool, int, float, str)):
            flat[prefix + key] = "" if value is None else value  # TensorBoard's hparams refuse None
        else:
            flat[prefix + key] = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return flat


def start_trackers(accelerator, cfg: Config, run_name: str, config: dict[str, Any]) -> None:
    """Start every tracker with the project, run name and resolved config; a failure is one line."""
    if not accelerator.log_with:
        return
    names = {"wandb": {"name": run_name}, "mlflow": {"run_name": run_name}, "trackio": {"name": run_name}}
    try:
        accelerator.init_trackers(cfg.train.project, config=flat_config(config), init_kwargs=names)
    except Exception as err:  # noqa: BLE001 - any tracker's own failure (login, network, disk) becomes one line
        failed = next((str(t) for t in accelerator.log_with if str(t) not in {x.name for x in accelerator.trackers}), "a tracker")
        first = " ".join(str(err).split())[:200]
        raise UserError(
            f"train.report_to: {failed} could not start ({type(err).__name__}: {first}); "
            f"{_OFFLINE_HINT.get(failed, 'check its setup')}, or remove it from train.report_to"
        ) from None
