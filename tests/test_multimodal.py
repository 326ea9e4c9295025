"""Image + text sentiment and image classification on tiny CLIP, BLIP-2 (OPT and T5), LLaVA, two-tower and ViT
checkpoints.

Each family learns the fusion task (an XOR of image colour and text word: neither modality alone is better
than chance), falls to chance when its images are blanked, reloads on a fresh base to identical logits, and
`mmkit eval` / `mmkit predict` reproduce what training reported. Bad images and texts are named by row.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml
from builders_multimodal import (
    ZERO_SHOT_NAMES, build_tiny_blip2, build_tiny_blip2_t5, build_tiny_clip, build_tiny_llava, build_tiny_vit,
    build_zero_shot_clip, colour_folder, fusion_splits,
)
from conftest import run_cli
from safetensors.torch import load_file

from mmkit.config import load_config
from mmkit.data import load_split
from mmkit.errors import UserError
from mmkit.training.finetune import finetune
from mmkit.runs.inference import evaluate_run, load_trained, predict
from mmkit.models.lora import load_trainable_state_dict

# blip2: OPT (decoder-only) language model; blip2_t5: T5 (encoder-decoder), as Salesforce/blip2-flan-t5-xl.
BUILDERS = {
    "clip": build_tiny_clip, "blip2": build_tiny_blip2, "blip2_t5": build_tiny_blip2_t5, "llava": build_tiny_llava,
}
# Per family: the settings that learn the fusion task in well under a minute on a CPU.
LEARN = {
    "clip": {"train.epochs": 8, "train.learning_rate": 3e-3},
    "blip2": {"train.epochs": 15, "train.learning_rate": 1e-2},
    "blip2_t5": {"train.epochs": 15, "train.learning_rate": 1e-2},
    "llava": {"train.epochs": 15, "train.learning_rate": 3e-3, "model.train_projector": True},  # projector saved too
    "two_tower": {"train.epochs": 8, "train.learning_rate": 3e-3},
}


@pytest.fixture(scope="module")
def fusion_data(tmp_path_factory):
    return fusion_splits(tmp_path_factory.mktemp("fusion"))


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
    return build_tiny_vit(tmp_path_factory.mktemp("tiny-vit"))


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


def mm_overrides(data, output, **extra) -> dict:
    overrides = {
        "task": "mm_sentiment",
        "data.train": str(data["train"]),
        "data.validation": str(data["validation"]),
        "data.test": str(data["test"]),
        "train.output_dir": str(output),
        "train.batch_size": 16,
        "train.log_every": 4,
        "lora.r": 8,
        "lora.dropout": 0.0,
        "model.head_hidden": 64,
        "model.head_dropout": 0.0,
    }
    overrides.update(extra)
    return overrides


def model_overrides(family, tmp_path_factory, tiny_bert, tiny_vit, tiny_clip) -> dict:
    if family == "two_tower":
        # Mean-pooled, as the MiniLM text tower users pair is: a random BERT's [CLS] state barely varies with the text.
        text = tmp_path_factory.mktemp("tiny-st-bert")
        shutil.copytree(tiny_bert, text, dirs_exist_ok=True)
        (text / "1_Pooling").mkdir()
        (text / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
        return {"model.text": str(text), "model.vision": str(tiny_vit)}
    if family == "clip":
        return {"model.name_or_path": str(tiny_clip)}
    return {"model.name_or_path": str(BUILDERS[family](tmp_path_factory.mktemp(f"tiny-{family}")))}


@pytest.fixture(scope="module", params=["clip", "blip2", "blip2_t5", "llava", "two_tower"])
def mm_run(request, tmp_path_factory, fusion_data, tiny_bert, tiny_vit, tiny_clip):
    family = request.param
    out = tmp_path_factory.mktemp(f"{family}-run") / "run"
    overrides = mm_overrides(fusion_data, out, **model_overrides(family, tmp_path_factory, tiny_bert, tiny_vit, tiny_clip), **LEARN[family])
    return family, out, finetune(load_config(None, overrides))


def predictions(trained, data_file, blank_images=False) -> tuple[list[int], list[int]]:
    """Predicted and gold label ids over a file, through the training collator (optionally blanking images)."""
    task = trained.task
    raw = load_split(str(data_file), "test", None)
    task_data = task.load_data({"test": raw}, labels=trained.labels)
    dataset, _ = task.prepare(task_data.splits["test"], trained.processor, trained.labels)
    collate = task.collator(trained.processor, blank_images=blank_images)
    predicted, gold = [], []
    for start in range(0, len(dataset), 32):
        batch = collate([dataset[i] for i in range(start, min(start + 32, len(dataset)))])
        gold += batch.pop("labels").tolist()
        batch.pop("row_index")
        with torch.inference_mode():
            predicted += trained.model(**batch).logits.argmax(-1).tolist()
    return predicted, gold


def accuracy(pairs) -> float:
    predicted, gold = pairs
    return sum(p == g for p, g in zip(predicted, gold)) / len(gold)


def test_each_family_learns_the_fusion_task_and_needs_the_image(mm_run, fusion_data):
    family, run, metrics = mm_run
    losses = [r["loss"] for r in map(json.loads, (run / "train_log.jsonl").read_text().splitlines()) if r["kind"] == "train"]
    assert sum(losses[-3:]) < 0.5 * sum(losses[:3]), losses
    assert metrics["accuracy"] >= 0.95, (family, metrics)
    for name in ("metrics.json", "confusion_matrix.png", "loss_curve.png", "labels.json", "adapter_model.safetensors"):
        assert (run / name).is_file(), name
    adapter_keys = load_file(str(run / "adapter_model.safetensors")).keys()
    assert any("mm_head" in k for k in adapter_keys) and any("lora_A" in k for k in adapter_keys)

    trained = load_trained(str(run))
    assert accuracy(predictions(trained, fusion_data["test"])) == metrics["accuracy"]
    # Grey images: the colour is gone, so the XOR is a coin toss. The model must have used the image.
    assert accuracy(predictions(trained, fusion_data["test"], blank_images=True)) <= 0.7


def test_adapter_reloads_on_a_fresh_base_to_identical_logits(mm_run, fusion_data):
    family, run, _ = mm_run
    trained = load_trained(str(run))
    task = trained.task
    reference = task.spec.build(trained.labels, trained.processor).eval()
    load_trainable_state_dict(reference, load_file(str(run / "checkpoints" / "best" / "trainable.safetensors")))
    rows = [json.loads(line) for line in fusion_data["test"].read_text().splitlines()[:8]]
    folder = fusion_data["test"].parent
    batch = task.collator(trained.processor)([{"image": str(folder / r["image"]), "text": r["text"], "labels": 0} for r in rows])
    batch.pop("labels")
    with torch.inference_mode():
        assert torch.equal(trained.model(**batch).logits, reference(**batch).logits)


def test_lora_hits_only_the_chosen_towers(mm_run):
    family, run, _ = mm_run
    adapter = json.loads((run / "adapter_config.json").read_text())
    hit = {k.split(".lora_A")[0] for k in load_file(str(run / "adapter_model.safetensors")) if ".lora_A" in k}
    expected_prefix = {
        "clip": ("encoder.model.text_model", "encoder.model.vision_model"),
        "blip2": ("encoder.model.qformer", "encoder.model.language_model"),
        "blip2_t5": ("encoder.model.qformer", "encoder.model.language_model.encoder"),  # T5's decoder is not run
        "llava": ("encoder.model.language_model",),
        "two_tower": ("encoder.text", "encoder.vision"),
    }[family]
    assert isinstance(adapter["target_modules"], str)  # one regex per run, scoped to the towers
    assert hit and all(any(prefix in name for prefix in expected_prefix) for name in hit), sorted(hit)[:5]
    for prefix in expected_prefix:  # every chosen tower is adapted
        assert any(prefix in name for name in hit), prefix


@pytest.mark.parametrize("mm_run", ["clip", "llava"], indirect=True)  # the CLI is family-agnostic: two prove it
def test_eval_and_predict_commands(mm_run, fusion_data, tmp_path):
    family, run, metrics = mm_run
    proc = run_cli("eval", str(run), "--output", str(tmp_path / "eval"))
    assert proc.returncode == 0, proc.stderr
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    for key in ("accuracy", "macro_f1", "weighted_f1"):
        assert evaluated[key] == metrics[key], key

    row = json.loads(fusion_data["test"].read_text().splitlines()[0])
    image = fusion_data["test"].parent / row["image"]
    proc = run_cli("predict", str(run), row["text"], "--image", str(image), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(out["probabilities"]) == {"negative", "positive"}
    assert out["label"] == predict(load_trained(str(run)), {"image": str(image), "text": row["text"]})["label"]

    proc = run_cli("predict", str(run), row["text"])
    assert proc.returncode == 2 and "--image" in proc.stderr and "Traceback" not in proc.stderr


def test_full_fine_tuning_saves_and_reloads(tiny_clip, fusion_data, tmp_path):
    out = tmp_path / "run"
    overrides = mm_overrides(fusion_data, out, **{
        "model.name_or_path": str(tiny_clip), "lora.enabled": False, "train.epochs": 2, "train.learning_rate": 1e-3,
        "train.gradient_checkpointing": True,
    })
    metrics = finetune(load_config(None, overrides))
    assert (out / "mm_model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    result, _, _ = evaluate_run(load_trained(str(out)), None, output=tmp_path / "eval")
    assert result.metrics["accuracy"] == metrics["accuracy"]


def test_vit_image_classification_from_folders(tiny_vit, tmp_path):
    train = colour_folder(tmp_path / "train", per_label=48, seed=0)
    test = colour_folder(tmp_path / "test", per_label=16, seed=1)
    out = tmp_path / "run"
    overrides = {
        "task": "image_classification", "model.name_or_path": str(tiny_vit), "data.train": str(train),
        "data.validation": str(test), "data.test": str(test), "train.output_dir": str(out), "train.batch_size": 16,
        "train.epochs": 4, "train.learning_rate": 3e-3, "lora.dropout": 0.0,
    }
    metrics = finetune(load_config(None, overrides))
    assert metrics["accuracy"] >= 0.95, metrics
    assert json.loads((out / "labels.json").read_text()) == ["blue", "red"]
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == ["q_proj", "v_proj"]
    assert any("classifier" in k for k in load_file(str(out / "adapter_model.safetensors")))
    trained = load_trained(str(out))  # fresh base + adapter + head: the best checkpoint's exact logits
    reference = trained.task.spec.build(trained.labels, trained.processor).eval()
    load_trainable_state_dict(reference, load_file(str(out / "checkpoints" / "best" / "trainable.safetensors")))
    batch = trained.task.collator(trained.processor)([{"image": str(test / "red" / f"{i}.png"), "labels": 0} for i in range(4)])
    with torch.inference_mode():
        assert torch.equal(trained.model(pixel_values=batch["pixel_values"]).logits, reference(pixel_values=batch["pixel_values"]).logits)
    proc = run_cli("predict", str(out), "--image", str(test / "red" / "0.png"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["label"] == "red"


# --- bad input ---------------------------------------------------------------------------------------------


@pytest.fixture
def bad_data(fusion_data, tmp_path):
    """A copy of the fusion train split (images included) that each test then breaks in one row."""
    folder = tmp_path / "data"
    shutil.copytree(fusion_data["train"].parent / "images", folder / "images")
    rows = [json.loads(line) for line in fusion_data["train"].read_text().splitlines()[:40]]
    return folder, rows


def _nested(overrides: dict) -> dict:
    """{"a.b": 1} -> {"a": {"b": 1}}: the dotted overrides as a YAML config."""
    tree: dict = {}
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def _write(folder, rows):
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(
    "breakage, expected",
    [
        (lambda folder, row: row.update(image="images/nope.png"), "not found"),
        (lambda folder, row: (folder / row["image"]).write_bytes(b"not a png"), "not a readable image"),
        (lambda folder, row: row.update(image="../../etc/passwd"), "leaves the image root"),
        (lambda folder, row: row.update(text=" ".join(["good"] * 40)), "more than the 32"),
        (lambda folder, row: row.update(text=""), "is empty"),
    ],
    ids=["missing", "corrupt", "escapes-root", "too-long-text", "empty-text"],
)
def test_a_bad_row_is_named_and_can_be_skipped(bad_data, tiny_clip, tmp_path, capsys, breakage, expected):
    from mmkit.cli import main

    folder, rows = bad_data
    breakage(folder, rows[7])
    train = _write(folder, rows)
    overrides = mm_overrides({"train": train, "validation": train, "test": None}, tmp_path / "run", **{"model.name_or_path": str(tiny_clip), "train.epochs": 1})
    overrides.pop("data.test")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(_nested(overrides)))
    with pytest.raises(SystemExit) as exit_info:  # the CLI in-process (tests/test_bad_input.py runs a real process)
        main(["train", str(config)])
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_info.value.code == 2 and message.startswith("error: ")
    assert expected in message and "line 8" in message, message
    assert not (tmp_path / "run").exists(), "nothing half-written"

    assert main(["train", str(config), "data.on_bad_row=skip"]) == 0
    assert "train: skipped 1 rows" in capsys.readouterr().out  # left out, and counted in the banner
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["num_examples"] == 39


def test_image_placeholder_mismatch_is_a_clear_error(tmp_path_factory):
    from mmkit.models.multimodal.base import check_placeholders

    ids = torch.tensor([[5, 9, 9, 9, 1], [5, 9, 9, 1, 1]])
    check_placeholders(ids[:1], image_token_id=9, per_image=3, family="blip2")
    with pytest.raises(UserError, match="2 image placeholder tokens where the image gives 3"):
        check_placeholders(ids, image_token_id=9, per_image=3, family="blip2")


@pytest.mark.parametrize("family", ["blip2", "blip2_t5"])
def test_blip2_rows_without_their_image_tokens_are_refused(family, tmp_path):
    """OPT and T5 language models alike: a row whose image tokens are missing is an error (in preprocess and in
    forward), never a model that runs and silently ignores the image."""
    from PIL import Image
    from transformers import AutoProcessor, Blip2ForConditionalGeneration

    from mmkit.config import ModelConfig
    from mmkit.models.multimodal.blip2 import Blip2Encoder

    folder = BUILDERS[family](tmp_path / family)
    processor = AutoProcessor.from_pretrained(folder)
    encoder = Blip2Encoder(Blip2ForConditionalGeneration.from_pretrained(folder)).eval()
    images, texts = [Image.new("RGB", (32, 32), "red")] * 2, ["good film", "the bad song was so"]
    batch = Blip2Encoder.preprocess(processor, images, texts, ModelConfig())
    with torch.inference_mode():
        assert encoder(**batch).shape == (2, encoder.feature_dim)
    processor.num_query_tokens = None  # the processor no longer expands the image token
    with pytest.raises(UserError, match="no num_query_tokens"):
        Blip2Encoder.preprocess(processor, images, texts, ModelConfig())
    bare = dict(processor(images=images, text=texts, return_tensors="pt", padding=True))
    with pytest.raises(UserError, match="0 image placeholder tokens where the image gives 4"), torch.inference_mode():
        encoder(**bare)


def test_zero_shot_clip_scores_rows_against_label_prompts(tiny_clip, fusion_data, tmp_path):
    """`mmkit eval --zero-shot`: metrics equal a direct CLIP computation (image and text vs. each prompt)."""
    from sklearn.metrics import accuracy_score, f1_score
    from transformers import CLIPModel, CLIPProcessor

    from mmkit.data.images import load_rgb

    out = tmp_path / "zs"
    proc = run_cli("eval", "--zero-shot", str(tiny_clip), "--data", str(fusion_data["test"]), "--labels", "negative,positive", "--output", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["zero_shot"] is True and metrics["num_examples"] == 64 and (out / "confusion_matrix.png").is_file()

    model, processor = CLIPModel.from_pretrained(tiny_clip).eval(), CLIPProcessor.from_pretrained(tiny_clip)
    rows = [json.loads(line) for line in fusion_data["test"].read_text().splitlines()]
    unit = lambda x: x / x.norm(dim=-1, keepdim=True)  # noqa: E731
    with torch.inference_mode():
        prompts = unit(model.get_text_features(**processor(text=["a photo that feels negative", "a photo that feels positive"], return_tensors="pt", padding=True)).pooler_output)
        inputs = processor(text=[r["text"] for r in rows], images=[load_rgb(str(fusion_data["test"].parent / r["image"])) for r in rows], return_tensors="pt", padding=True)
        image = unit(model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output)
        text = unit(model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).pooler_output)
        predicted = (unit(image + text) @ prompts.T).argmax(-1).tolist()
    gold = [["negative", "positive"].index(r["label"]) for r in rows]
    assert metrics["accuracy"] == pytest.approx(accuracy_score(gold, predicted))
    assert metrics["macro_f1"] == pytest.approx(f1_score(gold, predicted, average="macro"))

    proc = run_cli("eval", "--zero-shot", str(tiny_clip), "--data", str(fusion_data["test"]), "--prompt", "no placeholder")
    assert proc.returncode == 2 and "{label}" in proc.stderr and "Traceback" not in proc.stderr


# --- zero-shot on image-only data, prompt ensembles ----------------------------------------------------------


@pytest.fixture(scope="module")
def zero_shot_clip(tmp_path_factory):
    return build_zero_shot_clip(tmp_path_factory.mktemp("zs-clip"))


@pytest.fixture(scope="module")
def zero_shot_folder(tmp_path_factory):
    """root/film/*.png (red squares), root/song/*.png (blue): the names the zero-shot CLIP was taught."""
    return colour_folder(tmp_path_factory.mktemp("zs-folder") / "images", per_label=16, seed=1, names=ZERO_SHOT_NAMES)


def _zero_shot(argv: list[str], capsys) -> tuple[int, str]:
    """`mmkit eval --zero-shot ...` in-process: (exit code, stderr)."""
    from mmkit.cli import main

    capsys.readouterr()
    try:
        code = main(["eval", "--zero-shot", *argv])
    except SystemExit as exit_info:
        code = exit_info.code
    return code, capsys.readouterr().err


def _flags(option: str, values: list[str]) -> list[str]:
    return [arg for value in values for arg in (option, value)]


def test_zero_shot_on_an_image_folder_with_a_prompt_ensemble(zero_shot_clip, zero_shot_folder, tmp_path, capsys):
    """CLIP's classic zero-shot ("a photo of a {label}.") on an image folder: --image-only reads it as an
    image_classification dataset; a 2-template ensemble's metrics equal a hand computation (each label's
    template embeddings normalised, averaged, normalised again)."""
    from sklearn.metrics import accuracy_score, f1_score
    from transformers import CLIPModel, CLIPProcessor

    from mmkit.data.images import load_rgb
    from mmkit.zero_shot import label_embeddings

    templates = ["a photo of a {label}.", "a bad photo of a {label}."]
    out = tmp_path / "zs"
    code, err = _zero_shot([str(zero_shot_clip), "--data", str(zero_shot_folder), "--image-only", "--output", str(out), *_flags("--prompt", templates)], capsys)
    assert code == 0, err[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["zero_shot"] is True and metrics["task"] == "image_classification" and metrics["inputs"] == "image"
    assert metrics["prompts"] == templates and metrics["num_examples"] == 32 and (out / "confusion_matrix.png").is_file()

    model, processor = CLIPModel.from_pretrained(zero_shot_clip).eval(), CLIPProcessor.from_pretrained(zero_shot_clip)
    labels = sorted(ZERO_SHOT_NAMES.values())  # the folder names, sorted: ["film", "song"]
    paths = sorted(zero_shot_folder.glob("*/*.png"))
    unit = lambda x: x / x.norm(dim=-1, keepdim=True)  # noqa: E731
    with torch.inference_mode():
        def embed(template):
            prompts = processor(text=[template.replace("{label}", name) for name in labels], return_tensors="pt", padding=True)
            return model.get_text_features(**prompts).pooler_output

        raw = torch.stack([embed(template) for template in templates])  # (templates, labels, dim)
        label_vectors = unit(unit(raw).mean(0))
        pixels = processor(images=[load_rgb(str(path)) for path in paths], return_tensors="pt")["pixel_values"]
        predicted = (unit(model.get_image_features(pixel_values=pixels).pooler_output) @ label_vectors.T).argmax(-1).tolist()
        ours = label_embeddings(model, processor.tokenizer, labels, templates)
    gold = [labels.index(path.parent.name) for path in paths]
    assert metrics["accuracy"] == pytest.approx(accuracy_score(gold, predicted))
    assert metrics["macro_f1"] == pytest.approx(f1_score(gold, predicted, average="macro"))
    assert metrics["accuracy"] >= 0.95, metrics  # the prompts do classify: this CLIP knows red films, blue songs
    assert torch.allclose(ours, label_vectors, atol=1e-5)
    # Unit vectors are averaged, not raw embeddings (those would weigh each template by its norm).
    assert not torch.allclose(ours, unit(raw.mean(0)), atol=1e-4)


def test_zero_shot_image_rows_prompt_files_and_the_default_ensemble(zero_shot_clip, zero_shot_folder, tmp_path, capsys):
    from mmkit.zero_shot import IMAGE_PROMPTS

    templates = ["a photo of a {label}.", "a bad photo of a {label}."]
    data = tmp_path / "data"
    shutil.copytree(zero_shot_folder, data / "images")
    paths = sorted((data / "images").glob("*/*.png"))
    names = [{"image": str(path.relative_to(data)), "label": path.parent.name} for path in paths]
    rows = _write(data, names)  # {"image", "label"} rows, no text
    prompt_file = tmp_path / "prompts.txt"
    prompt_file.write_text("# CLIP-style templates\n" + templates[0] + "\n\n" + templates[1] + "\n")

    def metrics_of(argv):
        out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
        code, err = _zero_shot([str(zero_shot_clip), *argv, "--output", str(out)], capsys)
        assert code == 0, err[-2000:]
        return json.loads((out / "metrics.json").read_text())

    folder = metrics_of(["--data", str(zero_shot_folder), "--image-only", *_flags("--prompt", templates)])
    from_rows = metrics_of(["--data", str(rows), "--image-only", "--prompts", str(prompt_file)])
    assert from_rows["prompts"] == templates and from_rows["num_examples"] == 32
    assert {k: from_rows[k] for k in ("accuracy", "macro_f1")} == {k: folder[k] for k in ("accuracy", "macro_f1")}

    default = metrics_of(["--data", str(zero_shot_folder), "--image-only"])
    assert default["prompts"] == list(IMAGE_PROMPTS) and len(IMAGE_PROMPTS) >= 5
    assert default["accuracy"] >= 0.95, default

    # Class ids need their names: the prompts are built from them.
    ids = _write(data, [{"image": row["image"], "label": sorted(ZERO_SHOT_NAMES.values()).index(row["label"])} for row in names])
    code, err = _zero_shot([str(zero_shot_clip), "--data", str(ids), "--image-only"], capsys)
    assert code == 2 and "--labels" in err and "Traceback" not in err
    named = metrics_of(["--data", str(ids), "--image-only", "--labels", "film,song", *_flags("--prompt", templates)])
    assert named["accuracy"] == folder["accuracy"]

    # Image-only data without --image-only: told what to pass, not "no column 'text'".
    for source in (zero_shot_folder, rows):
        code, err = _zero_shot([str(zero_shot_clip), "--data", str(source)], capsys)
        assert code == 2 and "--image-only" in err and len(err.strip().splitlines()) == 1, err
    prompt_file.write_text("a photo of a {label}.\nno placeholder here\n")
    code, err = _zero_shot([str(zero_shot_clip), "--data", str(rows), "--image-only", "--prompts", str(prompt_file)], capsys)
    assert code == 2 and "line 2" in err and "{label}" in err


def test_zero_shot_image_only_on_image_text_rows_keeps_the_sentiment_prompt(tiny_clip, fusion_data, tmp_path, capsys):
    out = tmp_path / "zs"
    code, err = _zero_shot([str(tiny_clip), "--data", str(fusion_data["test"]), "--image-only", "--output", str(out)], capsys)
    assert code == 0, err[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["inputs"] == "image" and metrics["prompts"] == ["a photo that feels {label}"]
    assert metrics["num_examples"] == 64


@pytest.mark.parametrize(
    "flags",
    [["--labels", "a,b"], ["--prompt", "a photo of a {label}."], ["--prompts", "prompts.txt"], ["--image-only"],
     ["--labels", "a,b", "--prompt", "a {label}", "--image-only"]],
    ids=["labels", "prompt", "prompts", "image-only", "several"],
)
def test_zero_shot_options_without_zero_shot_are_refused(flags, tmp_path, capsys):
    """Never silently ignored: exit code 2 and one line on stderr, before anything is loaded."""
    from mmkit.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(tmp_path / "some-run"), *flags])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: ") and flags[0] in lines[0] and "--zero-shot" in lines[0], lines


def test_rows_with_embedded_images_as_the_hub_stores_them(tiny_clip, fusion_data, tmp_path):
    """A parquet file with a datasets `Image` feature (how Hub datasets arrive): images are bytes, decoded per
    batch; a corrupt one is named by row like a bad file path."""
    import datasets

    folder = fusion_data["train"].parent
    rows = [json.loads(line) for line in fusion_data["train"].read_text().splitlines()[:32]]
    images = [{"bytes": (folder / r["image"]).read_bytes(), "path": None} for r in rows]
    table = {"picture": images, "text": [r["text"] for r in rows], "label": [r["label"] for r in rows]}
    good = tmp_path / "good.parquet"
    datasets.Dataset.from_dict(table).cast_column("picture", datasets.Image()).to_parquet(good)
    overrides = mm_overrides({"train": good, "validation": good, "test": good}, tmp_path / "run", **{
        "model.name_or_path": str(tiny_clip), "train.epochs": 1, "data.image_column": "picture",
    })
    assert finetune(load_config(None, overrides))["num_examples"] == 32

    images[5] = {"bytes": b"not an image", "path": None}
    bad = tmp_path / "bad.parquet"
    datasets.Dataset.from_dict(table).cast_column("picture", datasets.Image()).to_parquet(bad)
    with pytest.raises(UserError, match=r"row 6.*not readable"):
        finetune(load_config(None, {**overrides, "data.train": str(bad), "train.output_dir": str(tmp_path / "bad-run")}))


@pytest.mark.parametrize("mm_run", ["llava"], indirect=True)
def test_llava_projector_is_trained_and_saved_when_asked(mm_run):
    family, run, _ = mm_run
    saved = load_file(str(run / "adapter_model.safetensors"))
    assert any("multi_modal_projector" in k for k in saved), "model.train_projector=true saves the projector"
    assert not any("vision_tower" in k for k in saved), "the vision tower stays frozen"


def test_mvsa_recipe_end_to_end_on_a_tiny_clip(shared_data, tiny_clip, tmp_path):
    """The MVSA-Single recipe as a user launches it, with the tiny CLIP in place of the real checkpoint: real
    tweets and JPEGs of every size, three labels, texts longer than the model reads truncated and counted."""
    from conftest import REPO

    out = tmp_path / "run"
    proc = run_cli(
        "recipes/mm_sentiment.py", "--config", str(REPO / "recipes" / "configs" / "mm_sentiment_mvsa_clip.yaml"),
        f"model.name_or_path={tiny_clip}", f"train.output_dir={out}", "train.epochs=1", "data.max_train_rows=160",
        "data.max_length=32", module="",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_examples"] == 200 and json.loads((out / "labels.json").read_text()) == ["negative", "neutral", "positive"]
    assert "truncated to 32 tokens" in proc.stdout + proc.stderr


def test_jpegs_are_decoded_at_the_scale_the_processor_needs(tmp_path):
    """A JPEG is decoded at the smallest DCT scale that keeps both sides >= what the processor resizes to:
    the model's input barely changes, the decoding work shrinks."""
    from PIL import Image
    from transformers import CLIPImageProcessor

    from mmkit.data.images import load_rgb, processor_min_side

    path = tmp_path / "photo.jpg"
    Image.radial_gradient("L").resize((640, 480)).convert("RGB").save(path, quality=95)
    processor = CLIPImageProcessor(size={"shortest_edge": 100}, crop_size={"height": 100, "width": 100})
    assert processor_min_side(processor) == 100
    small = load_rgb(str(path), processor_min_side(processor))
    assert small.size == (160, 120)  # 1/4 scale; 1/8 (80 x 60) would be smaller than the processor needs
    full = load_rgb(str(path))
    assert full.size == (640, 480) and load_rgb(str(tmp_path / "photo.jpg"), 1000).size == (640, 480)
    a, b = (processor(image, return_tensors="pt")["pixel_values"] for image in (small, full))
    assert a.shape == b.shape and (a - b).abs().mean() < 0.02, (a - b).abs().mean()


@pytest.mark.parametrize("mm_run", ["clip"], indirect=True)
def test_push_then_eval_from_the_hub(mm_run, fusion_data, hub, hub_home, tmp_path):
    """An image+text run pushed to a (local) Hub carries its adapter, head and processor, and evaluates from
    the repo id to the metrics training reported."""
    from conftest import hub_env

    _, run, metrics = mm_run
    env = hub_env(hub, hub_home)
    proc = run_cli("push", str(run), "--repo-id", "tester/tiny-clip-mm", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    uploaded = set(hub.files("tester/tiny-clip-mm"))
    assert {"adapter_model.safetensors", "processor_config.json", "tokenizer_config.json", "README.md"} <= uploaded, uploaded
    assert b"mm_sentiment" in hub.files("tester/tiny-clip-mm")["README.md"]
    proc = run_cli("eval", "tester/tiny-clip-mm", "--data", str(fusion_data["test"]), "--output", str(tmp_path / "eval"), env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["accuracy"] == metrics["accuracy"]
