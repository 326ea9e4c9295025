"""Image-text-to-text models (the generic VLM family, mmkit/models/multimodal/vlm.py) on tiny random replicas
with their real processor classes, special tokens and chat templates (tests/replicas.py).

Each family learns the fusion task (image colour XOR a word of the text) from images of two sizes, so every
batch mixes image-token counts; falls to chance with its images blanked; reloads on a fresh base to identical
logits; `mmkit eval` and `mmkit predict` agree with training. Placeholders that do not match a row's image are
refused, never run.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
from pathlib import Path

import pytest
import torch
from builders_multimodal import fusion_splits
from replicas import REPLICAS
from safetensors.torch import load_file
from test_multimodal import accuracy, predictions

from mmkit.config import ModelConfig, load_config
from mmkit.errors import UserError
from mmkit.models.lora import load_trainable_state_dict
from mmkit.runs.inference import load_trained, predict
from mmkit.training.finetune import finetune

# family (replica) -> the run's extra settings, the banner's image-token note, where LoRA must and must not go.
FAMILIES = {
    "qwen2-vl": dict(
        settings={"model.train_projector": True},  # the merger trains and is saved with the adapter
        tokens="image tokens per image: 4 to 6", language=".language_model.", vision=".visual.blocks.", projector="merger",
    ),
    "qwen2.5-vl": dict(
        settings={}, tokens="image tokens per image: 4 to 6", language=".language_model.", vision=".visual.blocks.", projector="merger",
    ),
    "smolvlm": dict(
        settings={"model.train_projector": True}, tokens="image tokens per image: 12 to 20", language=".text_model.",
        vision=".vision_model.", projector="connector",
    ),
    "llava-next": dict(  # the base view + the tiles of the best pinpoint grid + a newline per row of tiles
        settings={}, tokens="image tokens per image: 36 to 52", language=".language_model.", vision=".vision_tower.",
        projector="multi_modal_projector",
    ),
    "qwen3-vl": dict(  # the merger and the DeepStack mergers train and are saved with the adapter
        settings={"model.train_projector": True}, tokens="image tokens per image: 4 to 6", language=".language_model.",
        vision=".visual.blocks.", projector="merger", projector_note="merger/deepstack_merger_list",
        also_saved=("deepstack_merger_list.0.",),
    ),
    "gemma3": dict(  # fixed mm_tokens_per_image: both sizes give 4 soft tokens
        settings={"model.train_projector": True}, tokens="image tokens per image: 4 to 4", language=".language_model.",
        vision=".vision_tower.", projector="multi_modal_projector", fixed_tokens=True,
    ),
    "idefics3": dict(  # 4 tokens per tile: the square images give 2x2 tiles + the global view, the wide ones 2x1 + 1
        settings={"model.train_projector": True}, tokens="image tokens per image: 12 to 20", language=".text_model.",
        vision=".vision_model.", projector="connector",
    ),
    "llava-onevision": dict(  # anyres: the base view + the best pinpoint's tiles + newlines
        settings={}, tokens="image tokens per image: 36 to 52", language=".language_model.", vision=".vision_tower.",
        projector="multi_modal_projector",
    ),
}
WIDE = (56, 28)  # every third image: a different aspect, so a batch holds 4- and 6-token images


@pytest.fixture(scope="module")
def mixed_sizes(tmp_path_factory):
    """The fusion splits, every third image stretched to WIDE: two sizes (and token counts) per batch."""
    from PIL import Image

    splits = fusion_splits(tmp_path_factory.mktemp("vlm-fusion"), n_train=128, n_eval=48)
    for split in splits.values():
        for i, row in enumerate(map(json.loads, split.read_text().splitlines())):
            if i % 3 == 0:
                path = split.parent / row["image"]
                Image.open(path).resize(WIDE).save(path)
    return splits


def quiet_finetune(overrides) -> tuple[dict, str]:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        metrics = finetune(load_config(None, overrides))
    return metrics, printed.getvalue()


def run_overrides(base: Path, data: dict, out: Path, **extra) -> dict:
    return {
        "task": "mm_sentiment", "model.name_or_path": str(base), **{f"data.{name}": str(path) for name, path in data.items()},
        "train.output_dir": str(out), "train.batch_size": 8, "train.log_every": 2, "lora.r": 16, "lora.dropout": 0.0,
        "model.head_hidden": 64, "model.head_dropout": 0.0, "train.learning_rate": 3e-3, **extra,
    }


@pytest.fixture(scope="module", params=list(FAMILIES))
def vlm_run(request, tmp_path_factory, mixed_sizes):
    """A short run (the plumbing, not learning: test_learns_... is the slow proof that the family learns)."""
    family = request.param
    base = REPLICAS[family].build(tmp_path_factory.mktemp(family))
    out = tmp_path_factory.mktemp(f"{family}-run") / "run"
    metrics, banner = quiet_finetune(run_overrides(base, mixed_sizes, out, **{"train.max_steps": 6, **FAMILIES[family]["settings"]}))
    return family, base, out, metrics, banner


def test_banner_gives_the_image_token_range_and_what_trains(vlm_run):
    family, _, _, _, banner = vlm_run
    expected = FAMILIES[family]
    assert expected["tokens"] in banner, banner  # Qwen: 4 for the squares, 6 for the wide ones
    trains = next(line for line in banner.splitlines() if "trains:" in line)
    assert "LoRA on the language model" in trains and "frozen: the vision tower" in trains
    trained = f"the projector ({expected.get('projector_note', expected['projector'])}) in full" in trains
    assert trained == bool(expected["settings"].get("model.train_projector")), trains


@pytest.mark.slow  # 2 to 7 minutes per family on 2 shared CPU cores
@pytest.mark.parametrize("family", list(FAMILIES))
def test_learns_the_fusion_task_from_mixed_sizes_and_needs_the_image(family, mixed_sizes, tmp_path):
    base = REPLICAS[family].build(tmp_path / family)
    out = tmp_path / "run"
    epochs = {"smolvlm": 20}.get(family, 12)  # measured: SmolVLM 0.875 after 12 epochs, 0.98 after 20
    # Idefics3's replica measured 0.83 after 12 epochs and after 20 (0.75 at lr 6e-3): every wide image right,
    # a quarter of the square ones (5 tiles, plain-text tile tags: ~100 tokens) wrong. Above chance, not at 0.95.
    bar = {"idefics3": 0.75}.get(family, 0.95)
    metrics, _ = quiet_finetune(run_overrides(base, mixed_sizes, out, **{"train.epochs": epochs, "model.train_projector": True}))
    assert metrics["accuracy"] >= bar, (family, metrics)
    trained = load_trained(str(out))
    assert accuracy(predictions(trained, mixed_sizes["test"])) == metrics["accuracy"]
    # Grey images: the colour is gone, so the XOR is a coin toss. The model must have used the image.
    assert accuracy(predictions(trained, mixed_sizes["test"], blank_images=True)) <= 0.7


def test_adapter_and_head_reload_on_a_fresh_base_to_identical_logits(vlm_run, mixed_sizes):
    family, _, run, _, _ = vlm_run
    trained = load_trained(str(run))
    reference = trained.task.spec.build(trained.labels, trained.processor).eval()
    load_trainable_state_dict(reference, load_file(str(run / "checkpoints" / "best" / "trainable.safetensors")))
    folder = mixed_sizes["test"].parent
    rows = [json.loads(line) for line in mixed_sizes["test"].read_text().splitlines()[:6]]
    batch = trained.task.collator(trained.processor)([{"image": str(folder / r["image"]), "text": r["text"], "labels": 0} for r in rows])
    batch.pop("labels")
    image_tokens = (batch["input_ids"] == trained.task.encoder_class.image_token_id(trained.processor)).sum(-1)
    token_counts = 1 if FAMILIES[family].get("fixed_tokens") else 2
    assert len(set(image_tokens.tolist())) == token_counts, "the batch mixes two image sizes (and token counts)"
    with torch.inference_mode():
        assert torch.equal(trained.model(**batch).logits, reference(**batch).logits)


def test_lora_reaches_only_the_language_model_and_the_merger_when_asked(vlm_run):
    family, _, run, _, _ = vlm_run
    expected = FAMILIES[family]
    saved = load_file(str(run / "adapter_model.safetensors"))
    adapted = {k.split(".lora_A")[0] for k in saved if ".lora_A" in k}
    assert adapted and all(expected["language"] in name for name in adapted), sorted(adapted)[:4]
    assert not any(expected["vision"] in k for k in saved)
    assert any(f".{expected['projector']}." in k for k in saved) == bool(expected["settings"].get("model.train_projector"))
    assert all(any(part in k for k in saved) for part in expected.get("also_saved", ())), sorted(saved)[-4:]


def test_vision_tower_lora_never_hits_the_merger(vlm_run):
    family, base, _, _, _ = vlm_run
    from mmkit.models.multimodal import encoder_class, family_for

    model_cfg = ModelConfig(name_or_path=str(base))
    encoder = encoder_class(family_for(model_cfg, str(base))).load(model_cfg, str(base))
    names = [f"encoder.model.{name}" for name, _ in encoder.model.named_modules()]
    regex = encoder.lora_regex(["language", "vision"])
    hit = [name for name in names if re.fullmatch(regex, name)]
    expected = FAMILIES[family]
    assert any(expected["vision"] in n for n in hit) and any(expected["language"] in n for n in hit)
    assert not any(expected["projector"] in n for n in hit), hit


@pytest.mark.parametrize("vlm_run", ["qwen2-vl"], indirect=True)  # the commands are family-agnostic
def test_predict_agrees_with_eval(vlm_run, mixed_sizes, tmp_path, capsys):
    from mmkit.cli import main

    _, _, run, metrics, _ = vlm_run
    assert main(["eval", str(run), "--output", str(tmp_path / "eval")]) in (0, None)
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["accuracy"] == metrics["accuracy"]
    trained = load_trained(str(run))
    predicted, gold = predictions(trained, mixed_sizes["test"])
    folder = mixed_sizes["test"].parent
    rows = [json.loads(line) for line in mixed_sizes["test"].read_text().splitlines()]
    for i in (0, 1):  # a wide image and a square one
        capsys.readouterr()
        assert main(["predict", str(run), rows[i]["text"], "--image", str(folder / rows[i]["image"]), "--json"]) in (0, None)
        answer = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert answer["label"] == trained.labels[predicted[i]]
        assert answer["label"] == predict(trained, {"image": str(folder / rows[i]["image"]), "text": rows[i]["text"]})["label"]


def test_placeholders_that_do_not_match_a_rows_image_are_refused(tmp_path, monkeypatch):
    """The model checks only the batch total: one row with two images' tokens and one with none would run,
    the second reading the first's image. The collator refuses it per row; the forward refuses a total mismatch."""
    from PIL import Image

    from mmkit.models.multimodal import encoder_class, family_for

    base = REPLICAS["qwen2-vl"].build(tmp_path / "qwen2-vl")
    model_cfg = ModelConfig(name_or_path=str(base))
    cls = encoder_class(family_for(model_cfg, str(base)))
    processor = cls.load_processor(model_cfg, str(base))
    encoder = cls.load(model_cfg, str(base)).eval()
    images = [Image.new("RGB", (32, 32), "red"), Image.new("RGB", WIDE, "blue")]
    batch = cls.preprocess(processor, images, ["good film", "bad song"], model_cfg)
    assert (batch["input_ids"] == processor.image_token_id).sum(-1).tolist() == [4, 6]
    with torch.inference_mode():
        assert encoder(**batch).shape == (2, encoder.feature_dim)

    good = cls.prompts(processor, ["good film", "bad song"], model_cfg)
    image = "<|vision_start|><|image_pad|><|vision_end|>"
    monkeypatch.setattr(cls, "prompts", classmethod(lambda c, p, t, m: [good[0].replace(image, image * 2), good[1].replace(image, "")]))
    with pytest.raises(UserError, match="row 1 of the batch has 10 image placeholder tokens where its 32x32 image gives 4"):
        cls.preprocess(processor, images, ["good film", "bad song"], model_cfg)
    short = dict(batch, input_ids=batch["input_ids"].masked_fill(batch["input_ids"] == processor.image_token_id, processor.tokenizer.pad_token_id))
    with pytest.raises(UserError, match="Qwen2-VL: Image features and image tokens do not match"), torch.inference_mode():
        encoder(**short)


@pytest.mark.parametrize("vlm_run", ["gemma3"], indirect=True)
def test_gemma3_rows_have_one_bos_and_token_types_marking_the_image(vlm_run):
    """Gemma 3's template writes <bos> itself (the tokenizer must not add a second); token_type_ids mark the
    soft image tokens, which the model attends to bidirectionally."""
    from PIL import Image

    from mmkit.models.multimodal import encoder_class, family_for

    _, base, _, _, _ = vlm_run
    model_cfg = ModelConfig(name_or_path=str(base))
    cls = encoder_class(family_for(model_cfg, str(base)))
    processor = cls.load_processor(model_cfg, str(base))
    batch = cls.preprocess(processor, [Image.new("RGB", (32, 32), "red"), Image.new("RGB", WIDE, "blue")], ["good film", "bad"], model_cfg)
    ids, bos = batch["input_ids"], processor.tokenizer.bos_token_id
    assert (ids == bos).sum(-1).tolist() == [1, 1]
    image = ids == processor.tokenizer.image_token_id
    assert image.sum(-1).tolist() == [4, 4] and torch.equal(batch["token_type_ids"] == 1, image)


def test_pixel_limits_set_the_image_token_count(tmp_path):
    from PIL import Image

    from mmkit.models.multimodal import encoder_class, family_for

    base = REPLICAS["qwen2-vl"].build(tmp_path / "qwen2-vl")
    cls = encoder_class(family_for(ModelConfig(name_or_path=str(base)), str(base)))
    tokens = {}
    for max_pixels in (28 * 28 * 4, 28 * 28 * 64):
        model_cfg = ModelConfig(name_or_path=str(base), min_pixels=28 * 28 * 4, max_pixels=max_pixels)
        processor = cls.load_processor(model_cfg, str(base))
        batch = cls.preprocess(processor, [Image.new("RGB", (224, 224), "red")], ["good"], model_cfg)
        tokens[max_pixels] = int((batch["input_ids"] == processor.image_token_id).sum())
    assert tokens == {28 * 28 * 4: 4, 28 * 28 * 64: 64}, tokens
    with pytest.raises(UserError, match="more than model.max_pixels"):
        cls.load_processor(ModelConfig(name_or_path=str(base), min_pixels=10_000, max_pixels=5_000), str(base))


@pytest.mark.parametrize("name", ["qwen2_vl", "qwen2_5_vl", "smolvlm", "llava_next"])
def test_the_mvsa_configs_load_and_say_their_memory(name):
    from conftest import REPO

    path = REPO / "recipes" / "configs" / f"mm_sentiment_mvsa_{name}.yaml"
    cfg = load_config(path)
    assert cfg.task == "mm_sentiment" and cfg.lora.towers == ["language"] and not cfg.model.train_projector
    header = path.read_text(encoding="utf-8").split("task:")[0]
    assert f"--config recipes/configs/{path.name}" in header and "bfloat16" in header and "4-bit" in header
    if name.startswith("qwen"):
        assert cfg.model.max_pixels == 256 * 28 * 28


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


# --- model.quantization: a 4-bit base (QLoRA) ------------------------------------------------------------------
def _widened(folder: Path, family: str) -> Path:
    """The replica at width 64: bitsandbytes' CPU kernels quantize in blocks of 64 input features."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    base = REPLICAS[family].build(folder)
    config = AutoConfig.from_pretrained(base)
    text, vision = config.text_config, config.vision_config
    text.hidden_size, text.intermediate_size, text.num_attention_heads, text.head_dim = 64, 128, 4, 16
    vision.hidden_size, vision.intermediate_size = 64, 128
    if hasattr(vision, "out_hidden_size"):  # Qwen2.5-VL's merger output
        vision.out_hidden_size = 64
    for attribute in ("num_heads", "num_attention_heads"):
        if hasattr(vision, attribute):
            setattr(vision, attribute, 4)
    for old in base.glob("*.safetensors"):
        old.unlink()
    AutoModelForImageTextToText.from_config(config).save_pretrained(base)
    return base


@pytest.mark.parametrize("family, projector", [("qwen2.5-vl", "merger"), ("llava", "multi_modal_projector")])
def test_a_4bit_base_trains_lora_and_the_projector_and_reloads_to_identical_logits(family, projector, mixed_sizes, tmp_path):
    """QLoRA on a VLM: the language model and vision tower load in 4-bit, the projector stays in model.dtype so
    model.train_projector trains it; the run saves adapter + head + projector and reloads on a fresh 4-bit base."""
    bnb = pytest.importorskip("bitsandbytes", reason="the 4-bit path needs bitsandbytes: pip install 'mmkit[quantization]'")
    base = _widened(tmp_path / family, family)
    out = tmp_path / "run"
    quiet_finetune(run_overrides(base, mixed_sizes, out, **{
        "model.quantization": "4bit", "model.train_projector": True, "train.max_steps": 2, "lora.r": 8,
    }))
    trained = load_trained(str(out))
    inner = trained.model.get_base_model().encoder.model
    quantized = [name for name, module in inner.named_modules() if isinstance(module, bnb.nn.Linear4bit)]
    assert any("language_model" in n for n in quantized) and any(("visual" in n or "vision_tower" in n) for n in quantized), quantized[:4]
    assert not any(projector in n for n in quantized), [n for n in quantized if projector in n]
    saved = load_file(str(out / "adapter_model.safetensors"))
    assert any(f".{projector}." in k for k in saved) and all(v.dtype == torch.float32 for v in saved.values())

    reference = trained.task.spec.build(trained.labels, trained.processor).eval()
    load_trainable_state_dict(reference, load_file(str(out / "checkpoints" / "best" / "trainable.safetensors")))
    folder = mixed_sizes["test"].parent
    rows = [json.loads(line) for line in mixed_sizes["test"].read_text().splitlines()[:4]]
    batch = trained.task.collator(trained.processor)([{"image": str(folder / r["image"]), "text": r["text"], "labels": 0} for r in rows])
    batch.pop("labels")
    with torch.inference_mode():
        assert torch.equal(trained.model(**batch).logits, reference(**batch).logits)
