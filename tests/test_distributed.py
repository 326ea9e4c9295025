"""The real multi-process path on CPU: 2 processes, gloo, launched the way that works here
(`accelerate launch --multi_gpu --num_processes 2` with no GPU; `--cpu --num_processes 2` silently starts one).

Both ranks must end with identical weights, the result must match a single-process run with the same global
batch, and evaluating with 2 processes must give exactly the single-process metrics (no duplicated rows from
the padded last batch)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, sentiment_overrides
from safetensors.torch import load_file

ACCELERATE = str(Path(sys.executable).parent / "accelerate")
TWO_CPU_PROCESSES = [
    "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
    "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
]


def _launch(processes: int, *args: str) -> subprocess.CompletedProcess:
    launch = TWO_CPU_PROCESSES if processes == 2 else ["launch", "--num_processes", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    env = {"ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    import os

    proc = subprocess.run([ACCELERATE, *launch, *args], cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def no_dropout_bert(tiny_bert, tmp_path_factory) -> Path:
    """The tiny BERT without dropout: the ranks' RNG streams differ, so dropout would blur the comparison."""
    folder = tmp_path_factory.mktemp("bert-no-dropout")
    shutil.copytree(tiny_bert, folder, dirs_exist_ok=True)
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _overrides(model, data, out, batch_size):
    # No length grouping: two processes of 8 rows then see exactly the rows of one 16-row batch.
    return sentiment_overrides(
        model, data, out, **{"train.batch_size": batch_size, "train.eval_batch_size": 6, "train.epochs": 2,
                             "train.group_by_length": False, "lora.dropout": 0.0, "train.learning_rate": 1e-2}
    )


def test_two_processes_match_one(no_dropout_bert, toy_data, tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    two.mkdir(), one.mkdir()
    worker = str(REPO / "tests" / "ddp_worker.py")
    _launch(2, worker, str(two), json.dumps(_overrides(no_dropout_bert, toy_data, two / "run", 8)))
    _launch(1, worker, str(one), json.dumps(_overrides(no_dropout_bert, toy_data, one / "run", 16)))
    assert (two / "processes.txt").read_text() == "2", "the launch must really start two processes"

    rank0, rank1 = load_file(str(two / "rank0.safetensors")), load_file(str(two / "rank1.safetensors"))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0), "DDP ranks must end with identical weights"
    single = load_file(str(one / "rank0.safetensors"))
    for key in single:
        torch.testing.assert_close(rank0[key], single[key], atol=2e-4, rtol=1e-3, msg=key)

    # Evaluation of one saved run with 2 processes (80 rows, eval batches of 6: the last round is padded)
    # must give exactly the single-process figures.
    run = two / "run"
    _launch(2, "-m", "mmkit", "eval", str(run), "--output", str(tmp_path / "eval2"))
    _launch(1, "-m", "mmkit", "eval", str(run), "--output", str(tmp_path / "eval1"))
    m2 = json.loads((tmp_path / "eval2" / "metrics.json").read_text())
    m1 = json.loads((tmp_path / "eval1" / "metrics.json").read_text())
    for key in ("accuracy", "macro_f1", "weighted_f1", "negative/support", "positive/support", "num_examples"):
        assert m2[key] == m1[key], key
    assert m1["negative/support"] + m1["positive/support"] == 80
    # The training run's own test metrics (computed with 2 processes) agree with both.
    assert json.loads((run / "metrics.json").read_text())["accuracy"] == m1["accuracy"]


@pytest.mark.parametrize("config", sorted((REPO / "recipes" / "accelerate").glob("*.yaml")) + [REPO / "accelerate_config.yaml"], ids=lambda p: p.name)
def test_shipped_accelerate_configs_load(config):
    from accelerate.commands.config.config_args import load_config_from_file

    loaded = load_config_from_file(str(config))
    assert loaded.num_processes >= 1
    assert "accelerate launch --config_file" in config.read_text(), "each variant documents its launch command"
