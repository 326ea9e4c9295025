"""Pushing a run to the Hugging Face Hub, safely.

What goes up is an allow-list (`ALLOWED_FILES` / `ALLOWED_PATTERNS`) of the run dir's files, copied into a
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

import fnmatch
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mmkit.errors import UserError

# Files of a run that may be published (top level of the run dir), and eval/ outputs of `mmkit eval`.
ALLOWED_FILES = (
    "adapter_config.json",
    "adapter_model.safetensors",
    "config.json",  # full fine-tune (or merged) model
    "model.safetensors",
    "model.safetensors.index.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "source.spm",
    "target.spm",
    "chat_template.jinja",
    "preprocessor_config.json",
    "processor_config.json",
    "image_processor_config.json",
    "mm_model.safetensors",  # a fully fine-tuned image+text model
    "pooled_head.safetensors",  # the head of a fully fine-tuned mean-pooling text model
    "config.yaml",
    "labels.json",
    "metrics.json",
    "loss_curve.png",
    "confusion_matrix.png",
    "eval/metrics.json",
    "eval/confusion_matrix.png",
)
ALLOWED_PATTERNS = ("model-*-of-*.safetensors",)
CARD_FILE = "README.md"  # generated at push time; a README.md in the run dir (PEFT's template) is not used
TOKEN_SHAPE = re.compile(rb"hf_[A-Za-z0-9]{30,}")
REPO_ID = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?/[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")


def validate_repo_id(repo_id: str) -> str:
    """`owner/name` with the Hub's characters; a one-line UserError otherwise."""
    if not isinstance(repo_id, str) or not REPO_ID.match(repo_id) or ".." in repo_id or "--" in repo_id or repo_id.endswith(".git"):
        raise UserError(
            f"invalid Hub repo id {repo_id!r}: use owner/name with letters, digits, '-', '_', '.' "
            "(e.g. my-user/sentiment-minilm-lora)"
        )
    return repo_id


def hub_token() -> str:
    """The token from HF_TOKEN or the HF token cache; a UserError (without any token text) when none."""
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise UserError("no Hugging Face token: set HF_TOKEN=hf_... or run `hf auth login` (a token with write access)")
    return token


def endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _scrub(text: str, token: str | None) -> str:
    text = " ".join(str(text).split())
    if token:
        text = text.replace(token, "***")
    return TOKEN_SHAPE.sub(b"hf_***", text.encode()).decode()


def hub_error(err: Exception, action: str, token: str | None = None) -> UserError:
    """A one-line UserError for a failed Hub call (connection, auth, 4xx/5xx), without the token."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    where = endpoint()
    if isinstance(err, httpx2.ConnectError):
        return UserError(f"{action}: cannot connect to the Hub at {where} ({_scrub(err, token)[:120]}); check the network or HF_ENDPOINT")
    if isinstance(err, httpx2.TimeoutException):
        return UserError(f"{action}: the Hub at {where} did not answer in time; try again later")
    if isinstance(err, RevisionNotFoundError):
        return UserError(f"{action}: revision not found ({_scrub(err, token).split(' Revision')[0][:160]}); check --revision")
    if isinstance(err, RepositoryNotFoundError):
        return UserError(f"{action}: repository not found (or private without a token with access); check the repo id and HF_TOKEN")
    if isinstance(err, HfHubHTTPError) and err.response is not None:
        status = err.response.status_code
        server_message = getattr(err, "server_message", None) or ""
        if status in (401, 403):
            return UserError(f"{action}: the Hub refused the token ({status}); use a token with write access to this repo")
        detail = f": {_scrub(server_message, token)[:160]}" if server_message else ""
        return UserError(f"{action}: the Hub at {where} answered HTTP {status}{detail}; nothing was published by this call, try again later")
    return UserError(f"{action}: {type(err).__name__}: {_scrub(err, token)[:200]}")


# ------------------------------------------------------------------------------------------------------
# What goes up


def allowed(name: str) -> bool:
    return name in ALLOWED_FILES or any(fnmatch.fnmatch(name, pattern) for pattern in ALLOWED_PATTERNS)


@dataclass
class PushPlan:
    run: Path
    files: list[str]  # run-dir files that go up (relative paths), plus the generated README.md
    left_out: list[str]  # run-dir files that stay local
    warnings: list[str] = field(default_factory=list)


def plan_push(run_path: Path) -> PushPlan:
    from mmkit.run_dir import CONFIG_FILE, RunDir

    run = RunDir(run_path)
    if not run.path.is_dir() or not run.is_run():
        raise UserError(f"{run_path} is not an mmkit run (no {CONFIG_FILE}); pass the output_dir of a finished training run")
    if not (run.has_adapter or run.file("model.safetensors").is_file() or run.file("model.safetensors.index.json").is_file()):
        raise UserError(f"{run_path} has no trained weights (adapter_model.safetensors or model.safetensors); did the run finish?")
    files, left_out = [], []
    for item in sorted(run.path.rglob("*")):
        if item.is_dir():
            continue
        rel = item.relative_to(run.path).as_posix()
        if item.is_symlink() or not allowed(rel):  # a link could point anywhere: never followed
            left_out.append(rel)
        else:
            files.append(rel)
    files.append(CARD_FILE)
    warnings = []
    base = _base_model(run)
    if base and Path(base).expanduser().is_absolute():
        warnings.append(f"the base model is a local folder ({base}): users of this repo need the same base; push the base to the Hub and train from its id")
    return PushPlan(run.path, sorted(set(files)), left_out, warnings)


def _base_model(run) -> str:
    import json

    from mmkit.backbones import model_id_for_records

    adapter = run.file("adapter_config.json")
    if adapter.is_file():
        return json.loads(adapter.read_text(encoding="utf-8")).get("base_model_name_or_path") or ""
    return model_id_for_records(run.read_config().model.name_or_path)


def stage(plan: PushPlan, repo_id: str, staging: Path, token: str | None) -> None:
    """Copy the allowed files into `staging`, write config.yaml (cleaned) and README.md, scan for secrets."""
    from mmkit.config import config_from_dict, yaml_load
    from mmkit.model_card import build_model_card, read_metrics
    from mmkit.run_dir import RunDir

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
    card = build_model_card(
        repo_id,
        config_from_dict(raw),
        _base_model(run),
        run.read_labels(),
        read_metrics(run.file("metrics.json")),
        adapter=run.has_adapter,
    )
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
    from mmkit.model_card import hub_dataset_id

    cleaned = {section: (dict(value) if isinstance(value, dict) else value) for section, value in raw.items()}
    train = cleaned.get("train") or {}
    train["output_dir"] = None
    if not isinstance(train.get("resume"), bool):
        train["resume"] = False
    data = cleaned.get("data") or {}
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


# ------------------------------------------------------------------------------------------------------
# Loading from a run dir or a Hub repo: which base model


def recorded_base(run) -> str | None:
    """The base model an adapter was trained on (adapter_config.json's base_model_name_or_path)."""
    import json

    path = run.file("adapter_config.json")
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("base_model_name_or_path") or None


def same_model(recorded: str, given: str) -> bool:
    """Whether `given` names the base `recorded`: the same Hub id, the same folder, the embedded default for
    its id, or a local folder named like the Hub repo (a downloaded copy: `~/models/all-MiniLM-L6-v2`)."""
    from mmkit.backbones import resolve_model_path

    if recorded.rstrip("/") == given.rstrip("/"):
        return True
    rec_path, giv_path = Path(resolve_model_path(recorded)).expanduser(), Path(resolve_model_path(given)).expanduser()
    if rec_path.exists() and giv_path.exists():
        return rec_path.resolve() == giv_path.resolve()
    if not rec_path.exists() and giv_path.is_dir() and recorded.count("/") == 1:
        return giv_path.resolve().name == recorded.split("/")[1]
    return False


def base_for(run, cfg, base: str | None) -> str:
    """Where to load the base model from: `base` (checked against the adapter's record) or the record."""
    from mmkit.backbones import resolve_model_path

    recorded = recorded_base(run) or cfg.model.name_or_path
    if base:
        if recorded and not same_model(recorded, base):
            raise UserError(
                f"--base {base} does not match the adapter's base model {recorded} (adapter_config.json "
                "base_model_name_or_path); the adapter only works on the model it was trained on: omit --base or pass that model"
            )
        return resolve_model_path(base)
    return resolve_model_path(recorded)


HUB_DOWNLOAD_PATTERNS = [*ALLOWED_FILES, *ALLOWED_PATTERNS, CARD_FILE]


def download_run(repo_id: str, revision: str | None = None) -> Path:
    """snapshot_download of the allow-listed files of a pushed run (nothing else is fetched)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled, RevisionNotFoundError

    validate_repo_id(repo_id)
    try:
        local = snapshot_download(repo_id, revision=revision, allow_patterns=HUB_DOWNLOAD_PATTERNS)
    except RevisionNotFoundError:
        raise UserError(f"{repo_id} has no revision {revision!r} (branch, tag or commit); check --revision") from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as err:
        cause = err.__cause__
        if cause is not None and not isinstance(cause, OfflineModeIsEnabled):
            raise hub_error(cause, f"could not download {repo_id} from the Hub") from None
        raise UserError(
            f"could not download {repo_id}: the Hub is unreachable or HF_HUB_OFFLINE=1 and it is not in the local cache"
        ) from None
    except Exception as err:  # noqa: BLE001 - network, auth, missing repo or revision: one line
        raise hub_error(err, f"could not download {repo_id} from the Hub") from None
    return Path(local)
