"""Run folders and checkpoints as a careful user (and an attacker) would meet them, through the real CLI:
mmkit never deletes what it did not write, refuses a resume whose config changed (before touching the run),
runs no code from a checkpoint or a run folder, never mistakes a missing local path for a Hub repo, turns a
corrupt file into one line, and a run killed with SIGKILL at any moment resumes to the uninterrupted result."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, sentiment_overrides
from safetensors.torch import load_file

from mmkit.config import load_config
from mmkit.training.finetune import finetune

COMMON = {"train.epochs": 3, "train.save_every": 7, "train.keep_checkpoints": 0, "lora.dropout": 0.1, "train.log_every": 1}


def cli(*args: str) -> tuple[int, str]:
    """`mmkit ARGS` in this process; (exit code, stderr)."""
    from mmkit.cli import main

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(list(args)) or 0
        except SystemExit as stop:
            code = stop.code
    return code, stderr.getvalue()


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` and a hash of its bytes: a folder is "as before" when this is equal."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file()
    }


def config_file(tmp_path: Path, overrides: dict, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(overrides))
    return path


@pytest.fixture(scope="module")
def reference(tiny_bert, toy_data, tmp_path_factory):
    """An uninterrupted run that saved checkpoints along the way."""
    out = tmp_path_factory.mktemp("reference") / "run"
    metrics = finetune(load_config(None, sentiment_overrides(tiny_bert, toy_data, out, **COMMON)))
    return out, metrics


def losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (run / "train_log.jsonl").read_text().splitlines()) if r["kind"] == "train"]


def assert_same_adapter(a: Path, b: Path) -> None:
    x, y = load_file(str(a / "adapter_model.safetensors")), load_file(str(b / "adapter_model.safetensors"))
    assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


# --- never destroy a user's files -----------------------------------------------------------------------------
def test_overwrite_of_a_folder_mmkit_did_not_create_deletes_nothing(tiny_bert, toy_data, tmp_path):
    project = tmp_path / "thesis"
    (project / "src").mkdir(parents=True)
    (project / "config.yaml").write_text("task: sentiment\n")  # looks like a run, but mmkit did not make it
    (project / "thesis.tex").write_text("\\documentclass{article}")
    (project / "src" / "main.py").write_text("print('mine')")
    before = snapshot(project)
    config = config_file(tmp_path, sentiment_overrides(tiny_bert, toy_data, project, **{"train.overwrite": True}))
    code, stderr = cli("train", str(config))
    assert code == 2 and "did not create" in one_error_line(stderr)
    assert snapshot(project) == before


def test_overwrite_replaces_only_what_mmkit_wrote(reference, tiny_bert, toy_data, tmp_path):
    run, _ = reference
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "notes.txt").write_text("my notes")  # the user's own file in the run folder
    before = snapshot(copy)
    config = config_file(tmp_path, sentiment_overrides(tiny_bert, toy_data, copy, **{"train.epochs": 1, "train.overwrite": True}))
    code, stderr = cli("train", str(config))
    assert code == 2 and "notes.txt" in one_error_line(stderr) and "nothing was deleted" in stderr
    assert snapshot(copy) == before
    (copy / "notes.txt").unlink()
    code, stderr = cli("train", str(config))
    assert code == 0, stderr
    assert not list((copy / "checkpoints").glob("step-*"))  # one epoch, nothing to resume: the old ones are gone
    assert json.loads((copy / "metrics.json").read_text())["train_steps"] == 20


# --- resume: the same run or nothing ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "change, key",
    [({"train.learning_rate": 0.1}, "train.learning_rate"), ({"lora.r": 16}, "lora.r"), ({"train.batch_size": 8}, "train.batch_size")],
)
def test_resume_with_a_changed_config_is_refused_before_anything_is_written(reference, tiny_bert, toy_data, tmp_path, change, key):
    run, _ = reference
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    before = snapshot(copy)
    config = config_file(tmp_path, sentiment_overrides(tiny_bert, toy_data, copy, **COMMON, **change, **{"train.resume": True}))
    code, stderr = cli("train", str(config))
    line = one_error_line(stderr)
    assert code == 2 and key in line and "train.resume" in line
    assert snapshot(copy) == before  # config.yaml included: never rewritten by a refused resume


def test_resume_may_grow_max_steps(reference, tiny_bert, toy_data, tmp_path):
    run, _ = reference
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    metrics = finetune(load_config(None, sentiment_overrides(tiny_bert, toy_data, copy, **COMMON, **{"train.resume": True, "train.max_steps": 70})))
    assert metrics["train_steps"] == 70


# --- untrusted files run nothing --------------------------------------------------------------------------------
class _Payload:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, proof: Path):
        self.proof = proof

    def __reduce__(self):
        return (os.system, (f"touch {self.proof}",))


@pytest.mark.parametrize("name", ["custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin"])
def test_a_pickle_payload_in_a_checkpoint_runs_nothing(reference, tiny_bert, toy_data, tmp_path, name):
    run, _ = reference
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    proof = tmp_path / "pwned"
    newest = sorted((copy / "checkpoints").glob("step-*"))[-1]
    (newest / name).write_bytes(pickle.dumps(_Payload(proof)))
    config = config_file(tmp_path, sentiment_overrides(tiny_bert, toy_data, copy, **COMMON, **{"train.resume": True}))
    code, stderr = cli("train", str(config))
    assert not proof.exists(), "a pickle in a checkpoint ran code"
    line = one_error_line(stderr)
    assert code == 2 and (name in line if name.endswith(".pkl") and "custom" in name else "plain tensors" in line), line


def test_a_run_folder_cannot_switch_on_remote_code(reference, tmp_path):
    """A copied run whose config.yaml says trust_remote_code: true and whose model ships an auto_map runs none
    of that code on `mmkit predict`; --trust-remote-code is the user's switch."""
    run, _ = reference
    evil = tmp_path / "evil-run"
    shutil.copytree(run, evil)
    proof = tmp_path / "pwned"
    cfg = yaml.safe_load((evil / "config.yaml").read_text())
    cfg["model"]["trust_remote_code"] = True
    cfg["model"]["name_or_path"] = str(evil / "base")
    (evil / "config.yaml").write_text(yaml.safe_dump(cfg))
    (evil / "base").mkdir()
    (evil / "base" / "config.json").write_text(json.dumps({"model_type": "evil", "auto_map": {"AutoConfig": "evil.EvilConfig"}}))
    (evil / "base" / "evil.py").write_text(f"import pathlib\npathlib.Path({str(proof)!r}).touch()\n")
    code, stderr = cli("predict", str(evil), "a good film")
    assert not proof.exists(), "the run folder's code ran"
    assert code == 2 and "pass --trust-remote-code" in one_error_line(stderr)


def test_a_missing_local_run_is_never_looked_up_on_the_hub(tmp_path, monkeypatch):
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    code, stderr = cli("predict", "runs/sentiment-minilm-demo", "a good film")
    line = one_error_line(stderr)
    assert code == 2 and "no run at runs/sentiment-minilm-demo" in line and "hf://runs/sentiment-minilm-demo" in line


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_corrupt_adapter_is_one_line(reference, tmp_path, damage):
    run, _ = reference
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    weights = copy / "adapter_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00" * 64)
    code, stderr = cli("predict", str(copy), "a good film")
    assert code == 2 and "adapter_model.safetensors" in one_error_line(stderr)


def test_a_full_run_without_its_pooled_head_is_refused(tiny_bert, toy_data, tmp_path):
    st_bert = tmp_path / "st-bert"
    shutil.copytree(tiny_bert, st_bert)
    (st_bert / "1_Pooling").mkdir()
    (st_bert / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    out = tmp_path / "full"
    finetune(load_config(None, sentiment_overrides(st_bert, toy_data, out, **{"lora.enabled": False, "train.max_steps": 2})))
    (out / "pooled_head.safetensors").unlink()
    code, stderr = cli("predict", str(out), "a good film")
    assert code == 2 and "pooled_head.safetensors" in one_error_line(stderr)


# --- SIGKILL at any moment ----------------------------------------------------------------------------------------
def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(reference, tiny_bert, toy_data, tmp_path):
    """The process dies (SIGKILL: no cleanup) at a random moment - while training, while writing a checkpoint,
    while saving the model - and `train.resume=true` ends with the uninterrupted run's exact adapter."""
    run, whole = reference
    rng = random.Random(1234)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(torch.get_num_threads()), "HF_HUB_OFFLINE": "1"}
    for attempt in range(3):
        out = tmp_path / f"killed-{attempt}"
        config = config_file(tmp_path, sentiment_overrides(tiny_bert, toy_data, out, **COMMON), f"c{attempt}.yaml")
        proc = subprocess.Popen([sys.executable, "-m", "mmkit", "train", str(config)], env=env, cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not (out / "checkpoints").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # wait until training has begun, then strike at a random moment of it
        time.sleep(rng.uniform(0.0, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        resumed = finetune(load_config(None, sentiment_overrides(tiny_bert, toy_data, out, **COMMON, **{"train.resume": True})))
        assert resumed["train_steps"] == whole["train_steps"] and resumed["accuracy"] == whole["accuracy"]
        assert_same_adapter(out, run)
        assert losses(out) == losses(run)
