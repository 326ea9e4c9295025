"""Pushing a run to the Hugging Face Hub, safely.

What goes up is an allow-list (`mmkit.hub.files`) of the run dir's files, copied into a
staging folder together with a generated model card (README.md) and a cleaned config.yaml; nothing else
(no checkpoints/, optimizer states, train_log.jsonl, .env, stray files) can be uploaded. Before anything is sent,
every staged file is scanned for the token and for anything shaped like a Hugging Face token.

config.yaml as pushed: `train.output_dir` and `train.resume` are cleared (local paths that mean nothing to a
reader), local data files are reduced to their file name (`/home/me/data/train.jsonl` -> `train.jsonl`), Hub
dataset ids are kept. `model.name_or_path` is kept: it is the base model the adapter needs (a local base
folder is reported as a warning: people using the repo need that base too).

The endpoint is `HF_ENDPOINT` (read by huggingface_hub), the token `HF_TOKEN` or the token cache written
by `hf auth login`. The token is never printed: every error message goes through `_scrub`.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mmkit.errors import UserError
from mmkit.hub.client import TOKEN_SHAPE, endpoint, hub_error, hub_token, validate_repo_id
from mmkit.hub.files import CARD_FILE, allowed
from mmkit.runs.run_dir import CONFIG_FILE, RunDir

# ------------------------------------------------------------------------------------------------------
# What goes up


@dataclass
class PushPlan:
    run: Path
    files: list[str]  # run-dir files that go up (relative paths), plus the generated README.md
    left_out: list[str]  # run-dir files that stay local
    warnings: list[str] = field(default_factory=list)


def plan_push(run_path: Path) -> PushPlan:
    run = RunDir(run_path)
    if not run.path.is_dir() or not run.is_run():
        raise UserError(f"{run_path} is not an mmkit run (no {CONFIG_FILE}); pass the output_dir of a finished training run")
    files, left_out = [], []
    for item in sorted(run.path.rglob("*")):
        if item.is_dir():
            continue
        rel = item.relative_to(run.path).as_posix()
        if item.is_symlink() or not allowed(rel):  # a link could point anywhere: never followed
            left_out.append(rel)
        else:
            files.append(rel)
    if not any(rel.endswith(".safetensors") and "/" not in rel for rel in files):
        raise UserError(f"{run_path} has no trained weights (adapter_model.safetensors or model.safetensors); did the run finish?")
    files.append(CARD_FILE)
    warnings = []
    base = _base_model(run)
    if base and Path(base).expanduser().is_absolute():
        warnings.append(f"the base model is a local folder ({base}): users of this repo need the same base; push the base to the Hub and train from its id")
    return PushPlan(run.path, sorted(set(files)), left_out, warnings)


def _base_model(run) -> str:
    import json

    from mmkit.models.families import model_id_for_records

    adapter = run.file("adapter_config.json")
    if adapter.is_file():
        return json.loads(adapter.read_text(encoding="utf-8")).get("base_model_name_or_path") or ""
    return model_id_for_records(run.read_config().model.name_or_path)


def stage(plan: PushPlan, repo_id: str, staging: Path, token: str | None) -> None:
    """Copy the allowed files into `staging`, write config.yaml (cleaned) and README.md, scan for secrets."""
    from mmkit.config import config_from_dict, yaml_load
    from mmkit.hub.model_card import build_model_card, read_metrics

    run = RunDir(plan.run)
    raw = yaml_load(run.file("config.yaml").read_text(encoding="utf-8")) or {}
    cleaned = clean_config(raw)
    for rel in plan.files:
        if rel in (CARD_FILE, "config.yaml"):
            continue
        target = staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run.file(rel), target)
    (staging / "config.yaml").write_text(yaml.safe_dump(cleaned, sort_keys=False, allow_unicode=True), encoding="utf-8")
    from mmkit.runs.inference import task_for_run

    cfg = config_from_dict(raw)
    cfg.model.trust_remote_code = False  # describing the model for its card runs none of its code
    task = task_for_run(run, cfg)
    card = build_model_card(repo_id, task, run.read_labels(), read_metrics(run.file("metrics.json")), adapter=run.has_adapter)
    (staging / CARD_FILE).write_text(card, encoding="utf-8")
    for item in sorted(staging.rglob("*")):
        if item.is_file():
            data = item.read_bytes()
            if (token and token.encode() in data) or TOKEN_SHAPE.search(data):
                raise UserError(
                    f"{plan.run / item.relative_to(staging)} contains a Hugging Face token; remove it before pushing (nothing was uploaded)"
                )


def clean_config(raw: dict) -> dict:
    """The resolved config as published: no output folder or resume path, local data files by name only."""
    from mmkit.hub.model_card import hub_dataset_id

    cleaned = {section: (dict(value) if isinstance(value, dict) else value) for section, value in raw.items()}
    model = cleaned.get("model") or {}
    model["trust_remote_code"] = False  # only a user's command line switches it on, never a downloaded config
    for key in ("tokenizer",):
        if model.get(key) and Path(str(model[key])).expanduser().is_absolute():
            model[key] = None  # a folder on this machine; the run's own tokenizer files go up with it
    train = cleaned.get("train") or {}
    train["output_dir"] = None
    if not isinstance(train.get("resume"), bool):
        train["resume"] = False
    data = cleaned.get("data") or {}
    if data.get("image_root") and Path(str(data["image_root"])).expanduser().is_absolute():
        data["image_root"] = None
    for split in ("train", "validation", "test"):
        source = data.get(split)
        if source and not hub_dataset_id(source):
            data[split] = Path(source).name
    return cleaned


# ------------------------------------------------------------------------------------------------------
# Push


@dataclass
class PushResult:
    repo_id: str
    url: str
    commit: str | None
    files: list[str]


def push_run(
    run_path: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    dry_run: bool = False,
    echo=print,
) -> PushResult | PushPlan:
    """Upload the allow-listed files of a run (plus card and clean config) to `repo_id`; one commit."""
    validate_repo_id(repo_id)
    plan = plan_push(Path(run_path))
    for warning in plan.warnings:
        echo(f"warning: {warning}")
    if dry_run:
        echo(f"dry run: would push {len(plan.files)} files from {plan.run} to {endpoint()}/{repo_id}" + (f" (branch {revision})" if revision else ""))
        for rel in plan.files:
            echo(f"  {rel}" + ("   (generated model card)" if rel == CARD_FILE else "   (cleaned: no local folders)" if rel == "config.yaml" else ""))
        if plan.left_out:
            groups: dict[str, int] = {}
            for rel in plan.left_out:
                key = rel.split("/", 1)[0] + "/" if "/" in rel else rel
                groups[key] = groups.get(key, 0) + 1
            echo("not pushed: " + ", ".join(f"{k} ({n} files)" if k.endswith("/") else k for k, n in groups.items()))
        return plan
    token = hub_token()
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="mmkit-push-") as tmp:
        staging = Path(tmp)
        stage(plan, repo_id, staging, token)
        try:
            url = api.create_repo(repo_id, private=private, exist_ok=True)
            if revision and revision != "main":
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            before = api.repo_info(repo_id, revision=revision).sha
            info = api.upload_folder(
                repo_id=repo_id,
                folder_path=staging,
                revision=revision,
                commit_message=commit_message or f"Upload {Path(run_path).name} with mmkit",
            )
        except UserError:
            raise
        except Exception as err:  # noqa: BLE001 - every Hub failure is one line, token-free
            raise hub_error(err, f"push to {repo_id} failed", token) from None
    commit = getattr(info, "oid", None)
    result = PushResult(repo_id, str(url), commit, plan.files)
    if commit and commit == before:
        echo(f"{url} is already up to date: every file is the same as in commit {commit[:10]}; nothing pushed")
        return result
    echo(f"pushed {len(plan.files)} files to {url}" + (f" (commit {commit[:10]})" if commit else "") + (f" on branch {revision}" if revision else ""))
    return result


