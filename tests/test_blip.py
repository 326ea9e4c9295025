"""BLIP (v1) image+text sentiment, and 4-bit (QLoRA) bases through bitsandbytes.

The tiny random BLIP (tests/builders_blip.py: BlipForImageTextRetrieval, BlipProcessor + BertTokenizer as
Salesforce/blip-itm-base-coco) learns the fusion task of builders_multimodal (the label is an XOR of the image's
colour and a word of the text: neither alone beats chance), falls to chance with the images blanked, reloads
on a fresh base to identical logits, and `mmkit predict` agrees with `mmkit eval`.

bitsandbytes 0.50 runs 4-bit layers on this CPU, so the QLoRA path is tested here for real: a 4-bit base with
LoRA trains, saves only the adapter and head, reloads on a 4-bit base to identical logits and on an unquantized
base, and merges into the unquantized base. What cannot work is refused with one line before anything is written.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from builders_blip import build_tiny_blip
from builders_multimodal import build_tiny_clip, fusion_splits
from safetensors.torch import load_file

from mmkit.config import load_config
from mmkit.models.lora import load_trainable_state_dict
from mmkit.runs.inference import load_trained
from mmkit.training.finetune import finetune


def cli(*args: str) -> tuple[int, str, str]:
    """`mmkit ARGS` in this process: (exit code, stdout, stderr)."""
    from mmkit.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args)) or 0
        except SystemExit as stop:
            code = stop.code
    return code, out.getvalue(), err.getvalue()


def overrides(model, data, output, **extra) -> dict:
    settings = {
        "task": "mm_sentiment", "model.name_or_path": str(model), "data.train": str(data["train"]),
        "data.validation": str(data["validation"]), "data.test": str(data["test"]), "train.output_dir": str(output),
        "train.batch_size": 16, "train.log_every": 4, "lora.r": 8, "lora.dropout": 0.0, "model.head_hidden": 64,
        "model.head_dropout": 0.0, "train.epochs": 4, "train.learning_rate": 1e-2,
    }
    settings.update(extra)
    return settings


def _args(settings: dict) -> list[str]:
    """`mmkit train CONFIG` arguments: the settings in a YAML file beside the (not yet existing) run folder."""
    config = Path(settings["train.output_dir"]).parent / "config.yaml"
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return [str(config)]


def _assert_refused(code, stderr, out, *fragments):
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in stderr, stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not out.exists(), "nothing is written before the checks pass"


def batch_of(trained, data_file, n=8):
    rows = [json.loads(line) for line in data_file.read_text().splitlines()[:n]]
    folder = data_file.parent
    batch = trained.task.collator(trained.processor)(
        [{"image": str(folder / r["image"]), "text": r["text"], "labels": 0} for r in rows]
    )
    batch.pop("labels")
    return batch


def accuracy(trained, data_file, blank_images=False) -> float:
    from mmkit.data import load_split

    task = trained.task
    split = task.load_data({"test": load_split(str(data_file), "test", None)}, labels=trained.labels).splits["test"]
    dataset, _ = task.prepare(split, trained.processor, trained.labels)
    batch = task.collator(trained.processor, blank_images=blank_images)([dataset[i] for i in range(len(dataset))])
    gold = batch.pop("labels")
    batch.pop("row_index")
    with torch.inference_mode():
        return (trained.model(**batch).logits.argmax(-1) == gold).float().mean().item()


@pytest.fixture(scope="module")
def fusion(tmp_path_factory):
    return fusion_splits(tmp_path_factory.mktemp("blip-fusion"))


@pytest.fixture(scope="module")
def blip_run(tmp_path_factory, fusion):
    model = build_tiny_blip(tmp_path_factory.mktemp("tiny-blip"))
    out = tmp_path_factory.mktemp("blip-run") / "run"
    return out, finetune(load_config(None, overrides(model, fusion, out)))


@pytest.fixture(scope="module")
def blip_trained(blip_run):
    """The finished run as `load_trained` reads it (adapter + head on a fresh base), loaded once."""
    return load_trained(str(blip_run[0]))


def test_blip_learns_the_fusion_task_and_needs_the_image(blip_run, blip_trained, fusion):
    run, metrics = blip_run
    assert metrics["accuracy"] >= 0.95, metrics
    trained = blip_trained
    assert accuracy(trained, fusion["test"]) == metrics["accuracy"]
    # Grey images: the colour is gone and the XOR is a coin toss, so the model must have read the image.
    assert accuracy(trained, fusion["test"], blank_images=True) <= 0.7

    # LoRA on the text encoder only (the default lora.towers), its cross-attention over the image included.
    adapter = load_file(str(run / "adapter_model.safetensors"))
    adapted = {k.split(".lora_A")[0] for k in adapter if ".lora_A" in k}
    assert adapted and all(".text_encoder." in name for name in adapted), sorted(adapted)[:4]
    assert any(".crossattention." in name for name in adapted)
    assert any("mm_head" in k for k in adapter)


def test_adapter_and_head_reload_on_a_fresh_base_to_identical_logits(blip_run, blip_trained, fusion):
    run, _ = blip_run
    trained = blip_trained
    reference = trained.task.spec.build(trained.labels, trained.processor).eval()
    load_trainable_state_dict(reference, load_file(str(run / "checkpoints" / "best" / "trainable.safetensors")))
    batch = batch_of(trained, fusion["test"])
    with torch.inference_mode():
        assert torch.equal(trained.model(**batch).logits, reference(**batch).logits)


def test_predict_agrees_with_eval(blip_run, blip_trained, fusion, tmp_path):
    """`mmkit predict RUN TEXT --image` gives the labels `mmkit eval` scores on the same rows. Half the rows get a
    grey image, so the predictions are not simply the gold labels; rows the model is unsure of (p < 0.55) are left
    out, where batched and single-row arithmetic may round to different sides. The command is run on two rows
    (it loads the run each time); the rest go through the function it calls."""
    from PIL import Image

    from mmkit.runs.inference import predict

    run, _ = blip_run
    folder = fusion["test"].parent
    Image.new("RGB", (32, 32), (128, 128, 128)).save(folder / "images" / "grey.png")
    rows = [json.loads(line) for line in fusion["test"].read_text().splitlines()[:24]]
    for row in rows[::2]:
        row["image"] = "images/grey.png"
    trained = blip_trained
    answers = [predict(trained, {"text": r["text"], "image": str(folder / r["image"])}) for r in rows]
    for row, answer in list(zip(rows, answers))[:2]:
        code, stdout, stderr = cli("predict", str(run), row["text"], "--image", str(folder / row["image"]), "--json")
        assert code == 0, stderr
        said = json.loads(stdout.strip().splitlines()[-1])
        assert said["label"] == answer["label"]
        for label, p in answer["probabilities"].items():
            assert abs(said["probabilities"][label] - p) < 1e-4
    kept = [(r, a["label"]) for r, a in zip(rows, answers) if max(a["probabilities"].values()) >= 0.55]
    assert len(kept) >= 12, [max(a["probabilities"].values()) for a in answers]
    subset = folder / "predict-subset.jsonl"
    subset.write_text("".join(json.dumps(r) + "\n" for r, _ in kept))
    code, _, stderr = cli("eval", str(run), "--data", str(subset), "--output", str(tmp_path / "eval"))
    assert code == 0, stderr
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    right = [label == r["label"] for r, label in kept]
    assert evaluated["accuracy"] == pytest.approx(sum(right) / len(kept))
    for label in ("negative", "positive"):  # which rows were wrong, not only how many
        gold = [r["label"] for r, said in kept if said == label]
        expected = sum(g == label for g in gold) / len(gold) if gold else 0.0
        assert evaluated[f"{label}/precision"] == pytest.approx(expected), label


def test_a_captioning_checkpoint_is_refused(tmp_path, fusion):
    """blip-image-captioning-* has a text decoder, no ITM encoder: refused, not trained on random weights."""
    from transformers import BlipConfig, BlipForConditionalGeneration

    itm = build_tiny_blip(tmp_path / "itm")
    config = BlipConfig.from_pretrained(itm)
    config.architectures = ["BlipForConditionalGeneration"]
    BlipForConditionalGeneration(config).save_pretrained(tmp_path / "captioning")
    for file in itm.iterdir():  # the processor files
        if file.name not in ("config.json", "model.safetensors"):
            (tmp_path / "captioning" / file.name).write_bytes(file.read_bytes())
    out = tmp_path / "run"
    code, _, stderr = cli("train", *_args(overrides(tmp_path / "captioning", fusion, out)))
    _assert_refused(code, stderr, out, "no BLIP image-text matching encoder", "blip-itm")


# --- model.quantization ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blip64(tmp_path_factory):
    """bitsandbytes' CPU kernels quantize in blocks of 64 input features: hidden 32 would not run."""
    return build_tiny_blip(tmp_path_factory.mktemp("tiny-blip-64"), hidden=64)


@pytest.fixture(scope="module")
def small_fusion(tmp_path_factory):
    return fusion_splits(tmp_path_factory.mktemp("blip-fusion-small"), n_train=16, n_eval=8)


@pytest.fixture(scope="module")
def qlora_run(tmp_path_factory, blip64, small_fusion):
    pytest.importorskip("bitsandbytes", reason="the 4-bit path needs bitsandbytes: pip install 'mmkit[quantization]'")
    out = tmp_path_factory.mktemp("blip-4bit") / "run"
    settings = overrides(blip64, small_fusion, out, **{"model.quantization": "4bit", "train.max_steps": 2, "train.batch_size": 8})
    return out, finetune(load_config(None, settings))


def test_4bit_base_trains_lora_and_saves_only_the_adapter_and_head(qlora_run, small_fusion):
    import bitsandbytes as bnb

    run, _ = qlora_run
    trained = load_trained(str(run))
    base = trained.model.get_base_model().encoder.model
    linear4 = [name for name, m in base.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert any("text_encoder" in n for n in linear4) and any("vision_model" in n for n in linear4), linear4[:4]
    saved = load_file(str(run / "adapter_model.safetensors"))
    assert saved and all(".lora_" in k or ".mm_head." in k for k in saved), [k for k in saved if ".lora_" not in k][:4]
    assert all(v.dtype == torch.float32 for v in saved.values())  # no packed 4-bit weights or their scales

    # On a fresh 4-bit base: the best checkpoint's logits exactly.
    reference = trained.task.spec.build(trained.labels, trained.processor).eval()
    load_trainable_state_dict(reference, load_file(str(run / "checkpoints" / "best" / "trainable.safetensors")))
    batch = batch_of(trained, small_fusion["test"])
    with torch.inference_mode():
        quantized = trained.model(**batch).logits
        assert torch.equal(quantized, reference(**batch).logits)

    # On the unquantized base (model.dtype): the same adapter loads; the logits move only by the rounding of the base.
    full = load_trained(str(run), unquantized=True)
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in full.model.modules())
    with torch.inference_mode():
        unquantized = full.model(**batch).logits
    assert unquantized.shape == quantized.shape and torch.isfinite(unquantized).all()
    assert not torch.equal(unquantized, quantized)  # the base really differs


def test_4bit_run_merges_into_the_unquantized_base(qlora_run, small_fusion, tmp_path):
    """Merging adds the LoRA deltas into the base in model.dtype (into 4-bit weights they would be rounded
    away): the merged model equals the adapter on the unquantized base."""
    run, _ = qlora_run
    merged = tmp_path / "merged"
    code, _, stderr = cli("merge", str(run), "--output", str(merged))
    assert code == 0, stderr
    assert (merged / "mm_model.safetensors").is_file()
    assert load_config(merged / "config.yaml").model.quantization is None
    adapter = load_trained(str(run), unquantized=True)
    full = load_trained(str(merged))
    batch = batch_of(adapter, small_fusion["test"])
    with torch.inference_mode():
        torch.testing.assert_close(full.model(**batch).logits, adapter.model(**batch).logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "case",
    ["full fine-tuning", "not available for the family", "bitsandbytes missing", "no backend"],
)
def test_quantization_that_cannot_work_is_one_line_before_anything_is_written(case, blip64, small_fusion, tmp_path, monkeypatch):
    out = tmp_path / "run"
    settings = overrides(blip64, small_fusion, out, **{"model.quantization": "4bit"})
    if case == "full fine-tuning":
        settings["lora.enabled"] = False
        expected = ("model.quantization=4bit", "lora.enabled=true")
    elif case == "not available for the family":
        settings["model.name_or_path"] = str(build_tiny_clip(tmp_path / "clip"))
        expected = ("not available for clip", "BLIP")
    elif case == "bitsandbytes missing":
        monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # `import bitsandbytes` raises ImportError
        expected = ("needs the bitsandbytes package", "pip install 'mmkit[quantization]'")
    else:
        pytest.importorskip("bitsandbytes")
        import transformers.integrations.bitsandbytes as integration

        # A machine whose devices the installed bitsandbytes has no kernels for (e.g. an old CUDA-only build here).
        monkeypatch.setattr(integration, "validate_bnb_backend_availability", lambda raise_exception=False: False)
        expected = ("has no backend for this machine", "CUDA GPU")
    code, _, stderr = cli("train", *_args(settings))
    _assert_refused(code, stderr, out, *expected)


def test_quantization_values_are_checked_with_the_config():
    from mmkit.errors import UserError

    assert load_config(None, {"model.quantization": "8bit"}).model.quantization == "8bit"
    with pytest.raises(UserError, match="model.quantization' must be one of 4bit, 8bit"):
        load_config(None, {"model.quantization": "3bit"})
