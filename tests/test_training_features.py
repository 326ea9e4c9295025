"""Training features on tiny random BERTs: TensorBoard scalars read back from the event files, early stopping
(stops where it must, keeps the best checkpoint, resumes to the same stop), class weights in the loss (against
a hand computation), DoRA / rsLoRA reloading to identical logits and PiSSA / OLoRA to the same logits (converted
to plain LoRA), and adapter saving that never asks the Hub."""

from __future__ import annotations

import importlib.util
import json
import math
import time

import pytest
import torch
from conftest import sentiment_overrides
from safetensors.torch import load_file

from mmkit.cli import main
from mmkit.config import load_config
from mmkit.errors import UserError
from mmkit.models.lora import REWRITES_BASE, load_trainable_state_dict
from mmkit.runs.inference import evaluate_run, load_trained
from mmkit.tasks import build_task
from mmkit.training.class_weights import resolve_class_weights
from mmkit.training.finetune import finetune, load_splits
from mmkit.training.trainer import Trainer, loss_stalled, make_accelerator

FAST = {"train.learning_rate": 1e-2, "lora.dropout": 0.0, "train.save_every_minutes": 0}


def _train_cli_error(tmp_path, overrides, capsys) -> str:
    """`mmkit train` in this process: it must exit 2 with one error line and no traceback; the line."""
    config = tmp_path / "config.yaml"
    config.write_text("task: sentiment\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(config), *(f"{k}={v}" for k, v in overrides.items())])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def _history(run):
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


# --- trackers ------------------------------------------------------------------------------------------------


def test_tensorboard_scalars_are_read_back_at_their_steps(tiny_bert, toy_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    overrides = {**FAST, "train.max_steps": 6, "train.log_every": 2, "train.eval_every": 3, "train.report_to": "tensorboard",
                 "train.project": "toy", "train.class_weights": [1.0, 3.0]}
    finetune(load_config(None, sentiment_overrides(tiny_bert, toy_data, run, **overrides)))
    events = EventAccumulator(str(run / "logs" / "toy")).Reload()
    scalars = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    history = _history(run)
    logged = [(r["step"], r["loss"]) for r in history if r["kind"] == "train"]
    assert [s for s, _ in scalars["train/loss"]] == [2, 4, 6]
    assert [s for s, _ in scalars["train/loss"]] == [s for s, _ in logged]
    for (_, value), (_, expected) in zip(scalars["train/loss"], logged):
        assert value == pytest.approx(expected, rel=1e-6)
    assert [s for s, _ in scalars["train/learning_rate"]] == [2, 4, 6]
    assert all(v > 0 for _, v in scalars["train/samples_per_s"])
    evals = [(r["step"], r["accuracy"]) for r in history if r["kind"] == "eval"]
    assert [s for s, _ in scalars["eval/accuracy"]] == [3, 6] == [s for s, _ in evals]
    assert [v for _, v in scalars["eval/macro_f1"]] == pytest.approx([r["macro_f1"] for r in history if r["kind"] == "eval"], rel=1e-6)
    # The resolved config went in as hyperparameters (accelerate also keeps them as YAML).
    hparams = list((run / "logs" / "toy").rglob("hparams.yml"))
    assert hparams and "train.learning_rate: 0.01" in hparams[0].read_text()
    # class weights recorded in the run (for eval and reports)
    assert json.loads((run / "class_weights.json").read_text()) == {"setting": [1.0, 3.0], "weights": {"negative": 1.0, "positive": 3.0}}


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_a_missing_tracker_is_one_line_before_anything_is_written(tiny_bert, toy_data, tmp_path, capsys):
    run = tmp_path / "run"
    overrides = sentiment_overrides(tiny_bert, toy_data, run, **{"train.report_to": "[tensorboard, wandb]"})
    line = _train_cli_error(tmp_path, overrides, capsys)
    assert "train.report_to=wandb" in line and "pip install wandb" in line, line
    assert not run.exists()


def test_report_to_choices(tmp_path):
    from mmkit.training.tracking import requested_trackers

    assert requested_trackers(load_config(None, {})) == []
    assert requested_trackers(load_config(None, {"train.report_to": "none"})) == []
    assert requested_trackers(load_config(None, {"train.report_to": "tensorboard"})) == ["tensorboard"]
    assert "tensorboard" in requested_trackers(load_config(None, {"train.report_to": "all"}))
    with pytest.raises(UserError, match="none together with tensorboard"):
        requested_trackers(load_config(None, {"train.report_to": ["none", "tensorboard"]}))
    with pytest.raises(UserError, match="must be one of none, tensorboard"):
        load_config(None, {"train.report_to": "tensorbord"})


def test_a_tracker_that_cannot_start_is_one_line():
    from types import SimpleNamespace

    from mmkit.training.tracking import start_trackers

    def unreachable(*_args, **_kwargs):
        raise ConnectionError("[Errno -2] Name or service not known")

    accelerator = SimpleNamespace(log_with=["wandb"], trackers=[], init_trackers=unreachable)
    with pytest.raises(UserError, match=r"wandb could not start \(ConnectionError: .*Name or service not known\); .*WANDB_MODE=offline"):
        start_trackers(accelerator, load_config(None, {}), "run", {"train": {"seed": 1}})


# --- early stopping ------------------------------------------------------------------------------------------

# A threshold no macro-F1 gain can pass: after the first validation none counts as an improvement, so the run
# must stop at validation 1 + patience, whatever the (weakly trained) model's numbers are.
PLATEAU = {**FAST, "train.max_steps": 40, "train.eval_every": 2, "train.save_every": 2, "train.keep_checkpoints": 0,
           "train.early_stopping_patience": 2, "train.early_stopping_threshold": 10.0}


def test_early_stopping_stops_at_the_expected_validation_keeps_the_best_and_resumes_to_the_same_stop(tiny_bert, toy_data, tmp_path):
    run = tmp_path / "run"
    metrics = finetune(load_config(None, sentiment_overrides(tiny_bert, toy_data, run, **PLATEAU)))
    evals = [r for r in _history(run) if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [2, 4, 6]
    assert metrics["train_steps"] == 6 and metrics["stopped_early"] is True
    state = json.loads((run / "checkpoints" / "step-0000004" / "trainer_state.json").read_text())
    assert state["evals_without_improvement"] == 1 and state["stopped_early"] is False
    assert not (run / "checkpoints" / "step-0000006").exists(), "no resumable checkpoint after the stop"
    # The kept model is the best validation's, not the last step's.
    best = max(evals, key=lambda r: r["macro_f1"])
    assert metrics["best_step"] == best["step"]
    result, _, _ = evaluate_run(load_trained(str(run)), None, "validation", tmp_path / "eval")
    assert result.metrics["macro_f1"] == pytest.approx(best["macro_f1"], abs=1e-9)

    # Resumed from the checkpoint of step 4 (one validation without improvement counted), it stops at step 6 too.
    resumed_run = tmp_path / "resumed"
    resumed = finetune(load_config(None, sentiment_overrides(
        tiny_bert, toy_data, resumed_run, **PLATEAU, **{"train.resume": str(run / "checkpoints" / "step-0000004")})))
    assert resumed["train_steps"] == 6 and resumed["stopped_early"] is True
    assert [r["step"] for r in _history(resumed_run) if r["kind"] == "eval"] == [2, 4, 6]


def test_early_stopping_threshold_may_not_change_on_resume(tiny_bert, toy_data, tmp_path):
    run = tmp_path / "run"
    finetune(load_config(None, sentiment_overrides(tiny_bert, toy_data, run, **{**PLATEAU, "train.max_steps": 4})))
    changed = {**PLATEAU, "train.early_stopping_threshold": 0.5, "train.early_stopping_patience": 5, "train.resume": True}
    with pytest.raises(UserError, match="early_stopping_threshold"):
        finetune(load_config(None, sentiment_overrides(tiny_bert, toy_data, run, **changed)))


def test_early_stopping_needs_validation_rows(tiny_bert, toy_data, tmp_path):
    overrides = sentiment_overrides(tiny_bert, toy_data, tmp_path / "run", **{"train.early_stopping_patience": 2})
    overrides.pop("data.validation")
    with pytest.raises(UserError, match="data.validation"):
        finetune(load_config(None, overrides))
    assert not (tmp_path / "run").exists()


# --- a run that learned nothing -----------------------------------------------------------------------------


def test_loss_stalled_reads_the_first_and_last_quarter():
    history = lambda losses: [{"kind": "train", "loss": x} for x in losses] + [{"kind": "eval", "loss": 9.0}]
    assert loss_stalled(history([1.14] * 12)) == (pytest.approx(1.14), pytest.approx(1.14))
    assert loss_stalled(history([0.7, 0.6, 0.5, 0.4, 0.3, 0.3, 0.2, 0.2])) is None
    assert loss_stalled(history([0.7, 0.69, 0.7, 0.68, 0.7, 0.69, 0.7, 0.67])) == (pytest.approx(0.695), pytest.approx(0.685))
    assert loss_stalled(history([0.7, 0.6, 0.6, 0.6, 0.6, 0.6, float("nan"), float("nan")])) is not None
    assert loss_stalled(history([1.0] * 7)) is None  # too few records to judge


def test_a_run_whose_loss_stays_flat_says_so(tiny_bert, toy_data, tmp_path, capsys):
    overrides = {**FAST, "train.log_every": 2}
    finetune(load_config(None, sentiment_overrides(tiny_bert, toy_data, tmp_path / "stuck", **{**overrides, "train.learning_rate": 1e-9})))
    out = capsys.readouterr().out
    assert "warning: the training loss did not fall" in out and "train.learning_rate=1e-09" in out, out[-2000:]
    # 20 epochs at this rate learn the toy task whatever the seed (accuracy 0.988-1.0 over seeds 42, 1..7); 4 do not.
    learns = {**overrides, "train.epochs": 20}
    metrics = finetune(load_config(None, sentiment_overrides(tiny_bert, toy_data, tmp_path / "learns", **learns)))
    assert metrics["accuracy"] > 0.9 and "did not fall" not in capsys.readouterr().out


# --- class weights ---------------------------------------------------------------------------------------------


def _trainer(cfg, tmp_path):
    """A Trainer put together as `finetune` does (nothing trained, nothing written)."""
    from mmkit.runs.run_dir import RunDir

    task = build_task(cfg)
    data = task.load_data(load_splits(cfg))
    processor = task.load_processor()
    prepared = {name: task.prepare(split, processor, data.labels)[0] for name, split in data.splits.items()}
    model = task.spec.build(data.labels, processor)
    return Trainer(cfg, task, model, processor, prepared, data.labels, RunDir(tmp_path / "unused"), make_accelerator(cfg, task.spec.family))


def test_class_weights_change_the_loss_as_computed_by_hand(tiny_bert, toy_data, tmp_path):
    cfg = load_config(None, sentiment_overrides(tiny_bert, toy_data, tmp_path / "run", **{"train.class_weights": [0.5, 4.0]}))
    trainer = _trainer(cfg, tmp_path)
    trainer.model.eval()  # no dropout: one forward pass, two losses
    batch = next(iter(trainer.train_loader))
    labels = batch["labels"]
    assert 0 < int(labels.sum()) < len(labels), "the batch must hold both classes for the weights to matter"
    with torch.no_grad():
        weighted = trainer.compute_loss(batch).item()
        logits = trainer.model(**{k: v for k, v in batch.items() if k != "labels"}).logits.double()
        plain = trainer.model(**batch).loss.item()
    log_p = logits.log_softmax(-1)[torch.arange(len(labels)), labels]
    w = torch.tensor([0.5, 4.0], dtype=torch.float64)[labels]
    assert weighted == pytest.approx(float(-(w * log_p).sum() / w.sum()), rel=1e-5)
    assert plain == pytest.approx(float(-log_p.mean()), rel=1e-5)
    assert abs(weighted - plain) > 1e-3


@pytest.mark.parametrize("class_weights", ["none", "balanced"])
def test_token_losses_weigh_every_token_the_same_whatever_its_batch(class_weights, tmp_path):
    """NER batches hold different numbers of labelled tokens (more so grouped by length): the epoch's mean of the
    batch losses must be the mean loss per token (per class weight), not a mean of per-batch means."""
    from builders import build_tiny_bert
    from builders_ner import NER_WORDS, toy_ner_splits

    data = toy_ner_splits(tmp_path / "data")
    cfg = load_config(None, {
        "task": "ner", "model.name_or_path": str(build_tiny_bert(tmp_path / "bert", extra_words=NER_WORDS)),
        "data.train": str(data["train"]), "train.batch_size": 16, "train.class_weights": class_weights,
    })
    trainer = _trainer(cfg, tmp_path)
    trainer.model.eval()
    weights = trainer.class_weights
    batch_losses, sums, totals = [], [], []
    with torch.no_grad():
        for batch in trainer.train_loader:
            batch_losses.append(trainer.compute_loss(batch).item())
            logits = trainer.model(**{k: v for k, v in batch.items() if k != "labels"}).logits.double()
            mask = batch["labels"] != -100
            labels = batch["labels"][mask]
            token_weights = torch.ones(len(labels), dtype=torch.float64) if weights is None else weights.double()[labels]
            nll = -logits[mask].log_softmax(-1)[torch.arange(len(labels)), labels]
            sums.append(float((token_weights * nll).sum()))
            totals.append(float(token_weights.sum()))
    assert len(set(totals)) > 1, "the batches must differ in labelled tokens for the test to mean anything"
    per_batch = sum(totals) / len(totals)
    assert batch_losses == pytest.approx([s / per_batch for s in sums], rel=1e-5)
    assert sum(batch_losses) / len(batch_losses) == pytest.approx(sum(sums) / sum(totals), rel=1e-5)
    mean_of_means = sum(s / t for s, t in zip(sums, totals)) / len(sums)
    assert abs(mean_of_means - sum(sums) / sum(totals)) > 1e-4  # what the model's own per-batch mean would give


def test_balanced_weights_follow_the_label_counts(tiny_bert, toy_data, tmp_path):
    cfg = load_config(None, {"task": "ner", "train.class_weights": "balanced", "data.train": "train.jsonl"})
    labels = ["O", "B-PER", "I-PER"]
    # Two windows of token labels: -100 (special tokens, sub-words, padding) is not counted. O 6, B-PER 2, I-PER 1.
    rows = [[-100, 0, 0, 1, 2, 0, -100], [-100, 0, 1, 0, 0, -100, -100]]
    weights = resolve_class_weights(cfg, labels, rows)
    assert weights == pytest.approx([9 / (3 * 6), 9 / (3 * 2), 9 / (3 * 1)])
    with pytest.raises(UserError, match="no training tokens carry 'I-PER'"):
        resolve_class_weights(cfg, labels, [[0, 1, 0]])
    wrong = load_config(None, {"task": "sentiment", "train.class_weights": [1, 2, 3]})
    with pytest.raises(UserError, match=r"3 weights but there are 2 labels \(negative, positive\)"):
        resolve_class_weights(wrong, ["negative", "positive"], [0, 1])
    with pytest.raises(UserError, match="task translation has no classes"):
        resolve_class_weights(load_config(None, {"task": "translation", "train.class_weights": "balanced"}), None, [])
    with pytest.raises(UserError, match="must be one of none, balanced"):
        load_config(None, {"train.class_weights": "balancd"})


def test_a_class_weight_list_of_the_wrong_length_is_one_line(tiny_bert, toy_data, tmp_path, capsys):
    run = tmp_path / "run"
    line = _train_cli_error(tmp_path, sentiment_overrides(tiny_bert, toy_data, run, **{"train.class_weights": "[1, 2, 3]"}), capsys)
    assert "train.class_weights has 3 weights but there are 2 labels (negative, positive)" in line, line
    assert not run.exists()


# --- PEFT variants ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    [{"lora.use_dora": True}, {"lora.use_rslora": True, "lora.r": 16}, {"lora.init": "pissa"}, {"lora.init": "olora"}],
    ids=["dora", "rslora", "pissa", "olora"],
)
def test_lora_variants_reload_to_identical_logits(variant, tiny_bert, toy_data, tmp_path):
    run = tmp_path / "run"
    finetune(load_config(None, sentiment_overrides(tiny_bert, toy_data, run, **FAST, **{"train.max_steps": 4, "train.epochs": 1}, **variant)))
    adapter_config = json.loads((run / "adapter_config.json").read_text())
    assert adapter_config["use_dora"] is bool(variant.get("lora.use_dora"))
    assert adapter_config["use_rslora"] is bool(variant.get("lora.use_rslora"))
    keys = load_file(str(run / "adapter_model.safetensors")).keys()
    assert any("lora_magnitude_vector" in k for k in keys) is bool(variant.get("lora.use_dora"))

    trained = load_trained(str(run))
    task = build_task(load_config(run / "config.yaml"))
    reference = task.spec.build(json.loads((run / "labels.json").read_text()), trained.processor)
    load_trainable_state_dict(reference, load_file(str(run / "checkpoints" / "best" / "trainable.safetensors")))
    reference.eval()
    texts = [json.loads(line)["text"] for line in toy_data["test"].read_text().splitlines()[:16]]
    batch = trained.processor(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        reloaded, expected = trained.model(**batch).logits, reference(**batch).logits
    if variant.get("lora.init") in REWRITES_BASE:
        # Saved as a plain LoRA of rank 2r on the original base: the same function, summed in another order.
        assert adapter_config["r"] == 2 * 8 and adapter_config["init_lora_weights"] is True
        torch.testing.assert_close(reloaded, expected, rtol=1e-4, atol=1e-5)
    else:
        assert torch.equal(reloaded, expected)
    fresh = task.spec.build(json.loads((run / "labels.json").read_text()), trained.processor).eval()
    with torch.inference_mode():
        assert not math.isclose(float((fresh(**batch).logits - expected).abs().max()), 0.0), "training changed nothing"


# --- quiet output ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("init", ["default", "pissa"])
def test_saving_an_adapter_of_a_hub_model_never_asks_the_hub(init, tmp_path, monkeypatch):
    """PEFT's default save looks the base up on the Hub to learn whether the vocabulary grew (offline: two warnings
    on every `mmkit train` of the default model); mmkit saves added tokens as trainable-token rows and never asks.
    PiSSA: PEFT's conversion reads the initial adapter back the same way."""
    import peft.utils.other as peft_other

    asked = []
    monkeypatch.setattr(peft_other, "file_exists", lambda *args, **kwargs: asked.append(args) or True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    task = build_task(load_config(None, {"task": "sentiment", "data.labels": ["negative", "positive"], "lora.init": init}))  # the embedded MiniLM
    processor = task.load_processor()
    model = task.spec.build(["negative", "positive"], processor)
    assert model.peft_config["default"].base_model_name_or_path == "sentence-transformers/all-MiniLM-L6-v2"
    task.spec.save(model, tmp_path)
    assert asked == [] and (tmp_path / "adapter_model.safetensors").is_file()


# --- speed defaults: precision, where the time went -------------------------------


@pytest.mark.parametrize(
    "capabilities, setting, expected",
    [
        ({"avx512_bf16": True, "amx_bf16": False}, "auto", "bf16"),
        ({"avx512_bf16": False, "amx_bf16": True}, "auto", "bf16"),
        ({"avx512_bf16": False, "amx_bf16": False, "avx2": True}, "auto", "no"),  # bf16 emulated: slower than fp32
        ({"avx512_bf16": True}, "no", "no"),  # what the user set wins
        ({}, "bf16", "bf16"),
    ],
)
def test_auto_precision_is_bf16_only_where_the_cpu_has_bf16_units(capabilities, setting, expected, monkeypatch):
    from mmkit.training import precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    assert precision.resolve_mixed_precision(setting)[0] == expected


def test_a_run_reports_where_its_time_went(tiny_bert, toy_data, tmp_path, capsys):
    started = time.perf_counter()
    metrics = finetune(load_config(None, sentiment_overrides(tiny_bert, toy_data, tmp_path / "run", **FAST, **{"train.epochs": 1})))
    wall = time.perf_counter() - started
    phases = metrics["phases_s"]
    assert {"read data", "tokenize", "load model", "train steps", "validation", "save adapter", "eval test", "report"} <= set(phases)
    assert all(seconds >= 0 for seconds in phases.values()) and sum(phases.values()) <= wall
    assert phases["train steps"] == pytest.approx(metrics["train_runtime_s"], abs=0.5)
    assert "  time: read data" in capsys.readouterr().out
