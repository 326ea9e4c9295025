"""The task x family conformance matrix: every cell mmkit claims is proven here, every other one is refused.

For each model family (a tiny random replica with the tokenizer/processor class of its real checkpoint,
tests/replicas.py) and each task, `MATRIX` says what must happen:

- "pass": train a few LoRA steps with `lora.target_modules=auto`; reload the saved adapter (+ head) on a fresh
  base to bit-identical logits; `mmkit eval` reproduces the training run's metrics; `mmkit predict` answers;
  the model card's code (plain transformers/PEFT, or mmkit's Python API for image+text models) runs as written
  and predicts what `mmkit predict` does; `mmkit merge` writes a model whose outputs equal the adapter's and
  whose own README code runs.
- anything else: the reason mmkit refuses the cell; `mmkit train` must exit 2 with one line naming it.

README.md's support table is generated from `MATRIX` (`python tests/test_matrix.py` prints it) and a test
checks the two agree, so the docs cannot claim a cell this module does not pass.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import builders  # noqa: E402
import builders_multimodal  # noqa: E402
import builders_ner  # noqa: E402
import builders_translation  # noqa: E402
from replicas import build_replica  # noqa: E402

TASKS = ("sentiment", "ner", "translation", "image_classification", "mm_sentiment")
NO_HEAD = "no head in transformers"
ENCODER = "encoder: cannot generate"
NOT_VISION = "not an image model"
NOT_IMAGE_TEXT = "not an image+text model"
TEXT_ONLY = "needs a text model"
TWO_TOWERS = "image+text only"
IMAGE_TEXT_TO_TEXT = "image-text-to-text: mm_sentiment only"  # transformers has the head, on the image+text model

# family -> task -> "pass" or the reason the cell is refused (the README shows both).
_TEXT_ENCODER = {"sentiment": "pass", "ner": "pass", "translation": ENCODER, "image_classification": NOT_VISION, "mm_sentiment": NOT_IMAGE_TEXT}
_DECODER = {"sentiment": "pass", "ner": "pass", "translation": "pass", "image_classification": NOT_VISION, "mm_sentiment": NOT_IMAGE_TEXT}
MATRIX: dict[str, dict[str, str]] = {
    "bert": _TEXT_ENCODER,
    "roberta": _TEXT_ENCODER,
    "xlm-roberta": _TEXT_ENCODER,
    "electra": _TEXT_ENCODER,
    "distilbert": _TEXT_ENCODER,
    "deberta": _TEXT_ENCODER,
    "deberta-v2": _TEXT_ENCODER,
    "mpnet": _TEXT_ENCODER,
    "gpt2": _DECODER,
    "llama": _DECODER,
    "qwen2": _DECODER,
    "qwen3": _DECODER,
    "mistral": _DECODER,
    "gemma": _DECODER,
    "phi3": _DECODER,
    "t5": {**_DECODER},
    "bart": {**_DECODER, "ner": NO_HEAD},
    "mbart": {**_DECODER, "ner": NO_HEAD},
    "marian": {**_DECODER, "sentiment": NO_HEAD, "ner": NO_HEAD},
    "marian-zh": {**_DECODER, "sentiment": NO_HEAD, "ner": NO_HEAD},
    "nllb": {**_DECODER, "sentiment": NO_HEAD, "ner": NO_HEAD},
    "vit": {"sentiment": TEXT_ONLY, "ner": TEXT_ONLY, "translation": TEXT_ONLY, "image_classification": "pass", "mm_sentiment": NOT_IMAGE_TEXT},
    "clip": {"sentiment": NO_HEAD, "ner": NO_HEAD, "translation": TEXT_ONLY, "image_classification": "pass", "mm_sentiment": "pass"},
    "blip": {"sentiment": NO_HEAD, "ner": NO_HEAD, "translation": TEXT_ONLY, "image_classification": NO_HEAD, "mm_sentiment": "pass"},
    "blip2-opt": {"sentiment": NO_HEAD, "ner": NO_HEAD, "translation": TEXT_ONLY, "image_classification": NO_HEAD, "mm_sentiment": "pass"},
    "blip2-t5": {"sentiment": NO_HEAD, "ner": NO_HEAD, "translation": TEXT_ONLY, "image_classification": NO_HEAD, "mm_sentiment": "pass"},
    "llava": {"sentiment": NO_HEAD, "ner": NO_HEAD, "translation": TEXT_ONLY, "image_classification": NO_HEAD, "mm_sentiment": "pass"},
    "qwen2-vl": {"sentiment": NO_HEAD, "ner": NO_HEAD, "translation": TEXT_ONLY, "image_classification": NO_HEAD, "mm_sentiment": "pass"},
    "qwen2.5-vl": {"sentiment": NO_HEAD, "ner": NO_HEAD, "translation": TEXT_ONLY, "image_classification": NO_HEAD, "mm_sentiment": "pass"},
    "llava-next": {"sentiment": NO_HEAD, "ner": NO_HEAD, "translation": TEXT_ONLY, "image_classification": NO_HEAD, "mm_sentiment": "pass"},
    "smolvlm": {"sentiment": NO_HEAD, "ner": NO_HEAD, "translation": TEXT_ONLY, "image_classification": NO_HEAD, "mm_sentiment": "pass"},
    "qwen3-vl": {"sentiment": NO_HEAD, "ner": NO_HEAD, "translation": TEXT_ONLY, "image_classification": NO_HEAD, "mm_sentiment": "pass"},
    "gemma3": {"sentiment": IMAGE_TEXT_TO_TEXT, "ner": NO_HEAD, "translation": IMAGE_TEXT_TO_TEXT, "image_classification": NO_HEAD, "mm_sentiment": "pass"},
    "idefics3": {"sentiment": NO_HEAD, "ner": NO_HEAD, "translation": TEXT_ONLY, "image_classification": NO_HEAD, "mm_sentiment": "pass"},
    "llava-onevision": {"sentiment": NO_HEAD, "ner": NO_HEAD, "translation": TEXT_ONLY, "image_classification": NO_HEAD, "mm_sentiment": "pass"},
    "two-tower": {"sentiment": TWO_TOWERS, "ner": TWO_TOWERS, "translation": TWO_TOWERS, "image_classification": TWO_TOWERS, "mm_sentiment": "pass"},
}
# What each refusal's one-line error says (a fragment of it).
REFUSAL_TEXT = {
    NO_HEAD: "transformers has no",
    ENCODER: "translation needs an encoder-decoder",
    NOT_VISION: "transformers has no image-classification head",
    NOT_IMAGE_TEXT: "not an image+text model",
    TEXT_ONLY: "transformers has no",
    TWO_TOWERS: "two-tower image+text model",
    IMAGE_TEXT_TO_TEXT: "image-text-to-text model: mmkit fine-tunes it on task mm_sentiment",
}
# Real checkpoints the replicas copy (README table).
REAL = {
    "bert": "bert-base-uncased", "roberta": "roberta-base", "xlm-roberta": "xlm-roberta-base",
    "electra": "google/electra-small-discriminator", "distilbert": "distilbert-base-uncased",
    "deberta": "microsoft/deberta-base", "deberta-v2": "microsoft/deberta-v3-small", "mpnet": "microsoft/mpnet-base",
    "gpt2": "gpt2", "llama": "meta-llama/Llama-2-7b-hf", "qwen2": "Qwen/Qwen2-0.5B", "qwen3": "Qwen/Qwen3-0.6B",
    "mistral": "mistralai/Mistral-7B-v0.1", "gemma": "google/gemma-2b", "phi3": "microsoft/Phi-3-mini-4k-instruct",
    "t5": "t5-small", "bart": "facebook/bart-base", "mbart": "facebook/mbart-large-50-many-to-many-mmt",
    "marian": "Helsinki-NLP/opus-mt-en-de", "marian-zh": "Helsinki-NLP/opus-mt-en-zh",
    "nllb": "facebook/nllb-200-distilled-600M", "vit": "google/vit-base-patch16-224",
    "clip": "openai/clip-vit-base-patch32", "blip2-opt": "Salesforce/blip2-opt-2.7b", "blip2-t5": "Salesforce/blip2-flan-t5-xl",
    "blip": "Salesforce/blip-itm-base-coco",
    "llava": "llava-hf/llava-1.5-7b-hf", "qwen2-vl": "Qwen/Qwen2-VL-2B-Instruct", "qwen2.5-vl": "Qwen/Qwen2.5-VL-3B-Instruct",
    "smolvlm": "HuggingFaceTB/SmolVLM-256M-Instruct", "llava-next": "llava-hf/llava-v1.6-mistral-7b-hf",
    "qwen3-vl": "Qwen/Qwen3-VL-2B-Instruct", "gemma3": "google/gemma-3-4b-it",
    "idefics3": "HuggingFaceM4/Idefics3-8B-Llama3", "llava-onevision": "llava-hf/llava-onevision-qwen2-0.5b-ov-hf",
    "two-tower": "any text encoder + any image encoder (model.text + model.vision)",
}
# Per-cell settings a real checkpoint of the family needs (the same a user sets).
TRANSLATION = {
    "t5": {"translation.source_prefix": "translate English to German: "},
    "mbart": {"translation.source_lang": "en_XX", "translation.target_lang": "de_DE"},
    "marian-zh": {"translation.target_lang_token": ">>cmn_Hans<<"},
    "nllb": {"translation.source_lang": "eng_Latn", "translation.target_lang": "deu_Latn"},
}

CELLS = [(family, task) for family, row in MATRIX.items() for task in TASKS]


# --- data and models ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("matrix")


@pytest.fixture(scope="module")
def data(root) -> dict[str, dict[str, Path]]:
    """Small splits of every task's toy data (a few steps each: this proves the plumbing, not learning)."""
    out: dict[str, dict[str, Path]] = {}
    folder = root / "data"
    out["sentiment"] = {
        "train": builders.write_jsonl(folder / "sentiment" / "train.jsonl", builders.toy_sentiment_rows(24, 1)),
        "validation": builders.write_jsonl(folder / "sentiment" / "validation.jsonl", builders.toy_sentiment_rows(8, 2)),
        "test": builders.write_jsonl(folder / "sentiment" / "test.jsonl", builders.toy_sentiment_rows(8, 3)),
    }
    out["ner"] = {
        "train": builders.write_jsonl(folder / "ner" / "train.jsonl", builders_ner.toy_ner_rows(24, 1)),
        "validation": builders.write_jsonl(folder / "ner" / "validation.jsonl", builders_ner.toy_ner_rows(8, 2)),
        "test": builders.write_jsonl(folder / "ner" / "test.jsonl", builders_ner.toy_ner_rows(8, 3)),
    }
    out["translation"] = builders_translation.toy_translation_splits(folder / "translation", n_train=24, n_eval=6)
    out["mm_sentiment"] = builders_multimodal.fusion_splits(folder / "mm", n_train=24, n_eval=8)
    images = builders_multimodal.colour_folder(folder / "images", per_label=12)
    out["image_classification"] = {"train": images, "validation": images, "test": images}
    return out


_BUILT: dict[str, Path] = {}


def replica(family: str, root: Path) -> Path:
    if family not in _BUILT:
        _BUILT[family] = build_replica(family, root / "models" / family)
    return _BUILT[family]


def cell_overrides(family: str, task: str, root: Path, data, out: Path) -> dict:
    splits = data[task]
    overrides = {
        "task": task,
        "data.train": str(splits["train"]), "data.validation": str(splits["validation"]), "data.test": str(splits["test"]),
        "train.output_dir": str(out), "train.epochs": 1, "train.batch_size": 8, "train.learning_rate": 1e-2,
        "train.log_every": 1, "lora.r": 4, "lora.dropout": 0.0, "lora.target_modules": "auto",
        "translation.max_new_tokens": 8, "model.head_hidden": 16, "model.head_dropout": 0.0,
    }
    if family == "two-tower":
        overrides.update({"model.text": str(replica("bert", root)), "model.vision": str(replica("vit", root))})
    else:
        overrides["model.name_or_path"] = str(replica(family, root))
    if task == "translation":
        overrides.update(TRANSLATION.get(family, {}))
    return overrides


def write_config(overrides: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump({k: v for k, v in overrides.items()}, allow_unicode=True), encoding="utf-8")
    return path


def cli(*args: str) -> tuple[int, str, str]:
    """`mmkit ARGS` in this process (the real entry point), with its exit code, stdout and stderr."""
    from mmkit.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main(list(args)) or 0
        except SystemExit as stop:
            code = stop.code
    return code, stdout.getvalue(), stderr.getvalue()


# --- what a prediction is, to compare two code paths -----------------------------------------------------------
def parsed_card_output(task: str, printed: str):
    if task == "translation":  # a barely trained model may well translate to nothing
        return printed.strip()
    line = printed.strip().splitlines()[-1]
    if task in ("sentiment", "image_classification"):
        label, probabilities = line.split(" ", 1)
        return {"label": label, "probabilities": ast.literal_eval(probabilities)}
    if task == "ner":
        return [list(pair) for pair in ast.literal_eval(line)]
    return ast.literal_eval(line)  # mmkit's predict dict


def comparable(task: str, prediction):
    if task == "ner":
        return prediction["words"]
    if task == "translation":
        return prediction["translation"]
    return prediction


def assert_same_prediction(task: str, got, expected, atol: float = 1e-4):
    if isinstance(expected, dict) and "probabilities" in expected:
        assert got["label"] == expected["label"], (got, expected)
        for name, p in expected["probabilities"].items():
            assert abs(got["probabilities"][name] - p) <= atol, (got, expected)
    else:
        assert got == expected


def run_card_code(readme: Path, workdir: Path) -> str:
    """Execute the Python block of a model card as a user would paste it; returns what it printed."""
    code = re.search(r"```python\n(.*?)```", readme.read_text(encoding="utf-8"), re.S).group(1)
    compile(code, str(readme), "exec")  # it parses
    printed = io.StringIO()
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(code, str(readme), "exec"), {"__name__": "__main__"})  # noqa: S102 - the card's own code
    finally:
        os.chdir(cwd)
    return printed.getvalue()


def logits_on_a_batch(trained, batch):
    with torch.inference_mode():
        return trained.model(**batch).logits.float()


def a_training_batch(trained, data_file: Path):
    from mmkit.data import load_split

    task = trained.task
    raw = load_split(str(data_file), "train")
    task_data = task.load_data({"train": raw}, labels=trained.labels)
    dataset, _ = task.prepare(task_data.splits["train"], trained.processor, trained.labels)
    keep = [c for c in dataset.column_names if c not in ("length", "row_index", *task.eval_only_columns)]
    rows = [{k: dataset[i][k] for k in keep} for i in range(min(4, len(dataset)))]
    batch = task.collator(trained.processor)(rows)
    return {k: v for k, v in batch.items() if k != "labels" or task.name == "translation"}


# --- the cells ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family, task", CELLS, ids=[f"{f}-{t}" for f, t in CELLS])
def test_cell(family, task, root, data):
    expected = MATRIX[family][task]
    out = root / "runs" / f"{family}-{task}"
    config = write_config(cell_overrides(family, task, root, data, out), root / f"{family}-{task}.yaml")
    if expected != "pass":
        code, stdout, stderr = cli("train", str(config))
        assert code == 2, (stdout, stderr)
        lines = [line for line in stderr.strip().splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and "Traceback" not in stderr, stderr
        assert REFUSAL_TEXT[expected] in lines[0], lines[0]
        assert not out.exists(), "nothing is written for a refused cell"
        return
    prove_cell(family, task, config, out, root, data)


def prove_cell(family, task, config: Path, out: Path, root: Path, data):
    from safetensors.torch import load_file

    from mmkit.config import load_config
    from mmkit.models.lora import load_trainable_state_dict
    from mmkit.runs.inference import load_trained
    from mmkit.training.finetune import finetune

    # 1. A few LoRA steps with the family's automatic targets.
    metrics = finetune(load_config(config))
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["target_modules"], adapter

    # 2. The adapter (+ head) on a fresh base gives the best checkpoint's logits, bit for bit.
    trained = load_trained(str(out))
    reference = trained.task.spec.build(trained.labels, trained.processor).eval()
    load_trainable_state_dict(reference, load_file(str(out / "checkpoints" / "best" / "trainable.safetensors")))
    batch = a_training_batch(trained, Path(data[task]["train"]))
    with torch.inference_mode():
        assert torch.equal(trained.model(**batch).logits, reference(**batch).logits)

    # 3. `mmkit eval` reproduces the run's test metrics.
    code, stdout, stderr = cli("eval", str(out), "--output", str(out / "eval"))
    assert code == 0, stderr
    evaluated = json.loads((out / "eval" / "metrics.json").read_text())
    headline = trained.task.default_metric
    assert evaluated[headline] == metrics[headline], (evaluated, metrics)

    # 4. `mmkit predict`, and the model card's code run as a user would: the same prediction.
    workdir = out.parent / f"{out.name}-user"
    workdir.mkdir()
    shutil.copyfile(Path(data["image_classification"]["train"]) / "red" / "0.png", workdir / "photo.jpg")
    example = dict(trained.task.example_input)
    args = [example["text"]] if "text" in example else []
    if "image" in example:
        args += ["--image", str(workdir / example["image"])]
    code, stdout, stderr = cli("predict", str(out), *args, "--json")
    assert code == 0, stderr
    predicted = json.loads(stdout.strip().splitlines()[-1])
    from mmkit.hub.model_card import build_model_card

    card = workdir / "README.md"
    card.write_text(build_model_card(str(out), trained.task, trained.labels, metrics, adapter=True), encoding="utf-8")
    from_card = parsed_card_output(task, run_card_code(card, workdir))
    assert_same_prediction(task, from_card, comparable(task, predicted))

    # 5. `mmkit merge`: the merged model's outputs equal the adapter's; its own card code runs and agrees.
    merged = out.parent / f"{out.name}-merged"
    code, stdout, stderr = cli("merge", str(out), "--output", str(merged))
    assert code == 0, stderr
    merged_model = load_trained(str(merged))
    torch.testing.assert_close(logits_on_a_batch(merged_model, batch), logits_on_a_batch(trained, batch), atol=1e-4, rtol=1e-4)
    code, stdout, stderr = cli("predict", str(merged), *args, "--json")
    assert code == 0, stderr
    merged_prediction = json.loads(stdout.strip().splitlines()[-1])
    assert_same_prediction(task, parsed_card_output(task, run_card_code(merged / "README.md", workdir)), comparable(task, merged_prediction))


# --- the README table is this matrix -------------------------------------------------------------------------------
TABLE_START = "<!-- support-matrix: generated by `python tests/test_matrix.py`; tests/test_matrix.py checks it -->"
TABLE_END = "<!-- /support-matrix -->"


def render_table() -> str:
    header = "| family (replica of) | " + " | ".join(f"`{t}`" for t in TASKS) + " |"
    lines = [header, "|" + " --- |" * (len(TASKS) + 1)]
    for family, row in MATRIX.items():
        cells = ["yes" if row[t] == "pass" else f"no: {row[t]}" for t in TASKS]
        lines.append(f"| {family} ({REAL[family]}) | " + " | ".join(cells) + " |")
    return "\n".join([TABLE_START, *lines, TABLE_END])


# --- every family under bf16 autocast ---------------------------------------------------------------------------
# What `train.mixed_precision=auto` picks on a CPU with bf16 units or a bf16 GPU: one passing cell per family
# trains in bf16 and `mmkit eval` (also in bf16) reproduces its test metrics. A family whose transformers code
# breaks in bf16 is refused before anything is written, and `auto` keeps it in fp32.
BREAKS_IN_BF16 = {"deberta": "cannot run deberta models"}
BF16_CELLS = [(family, next(task for task in TASKS if row[task] == "pass")) for family, row in MATRIX.items()]


@pytest.fixture
def fresh_accelerator_state():
    """Accelerate keeps one mixed precision per process; its own test cases reset it like this between tests."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    yield
    AcceleratorState._reset_state()


@pytest.mark.parametrize("family, task", BF16_CELLS, ids=[f"{f}-{t}" for f, t in BF16_CELLS])
def test_cell_in_bf16(family, task, root, data, fresh_accelerator_state):
    out = root / "runs-bf16" / f"{family}-{task}"
    overrides = {**cell_overrides(family, task, root, data, out), "train.mixed_precision": "bf16"}
    code, stdout, stderr = cli("train", str(write_config(overrides, root / f"{family}-{task}-bf16.yaml")))
    if family in BREAKS_IN_BF16:
        assert code == 2, (stdout, stderr)
        errors = [line for line in stderr.strip().splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in stderr and BREAKS_IN_BF16[family] in errors[0], stderr
        assert "train.mixed_precision=no" in errors[0] and not out.exists()
        overrides["train.mixed_precision"] = "auto"
        code, stdout, stderr = cli("train", str(write_config(overrides, root / f"{family}-{task}-auto.yaml")))
        assert code == 0, stderr
        assert "precision no (auto: deberta models fail under bf16 autocast)" in stdout, stdout
        return
    assert code == 0, stderr
    assert "precision bf16 (train.mixed_precision=bf16)" in stdout, stdout
    losses = [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines() if '"train"' in line]
    assert losses and all(torch.isfinite(torch.tensor(losses))), losses
    code, _, stderr = cli("eval", str(out), "--output", str(out / "eval"))
    assert code == 0, stderr
    from mmkit.runs.inference import load_trained

    metrics = json.loads((out / "metrics.json").read_text())
    evaluated = json.loads((out / "eval" / "metrics.json").read_text())
    headline = load_trained(str(out)).task.default_metric
    assert evaluated[headline] == metrics[headline], (evaluated, metrics)


def test_readme_table_is_the_matrix():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    start, end = readme.find(TABLE_START), readme.find(TABLE_END)
    assert start >= 0 and end > start, "README.md has no generated support table"
    assert readme[start : end + len(TABLE_END)] == render_table(), "README's table differs: run `python tests/test_matrix.py`"


if __name__ == "__main__":  # rewrite README.md's table from MATRIX
    path = Path(__file__).resolve().parents[1] / "README.md"
    text = path.read_text(encoding="utf-8")
    start, end = text.find(TABLE_START), text.find(TABLE_END)
    if start < 0:
        raise SystemExit(f"put {TABLE_START} ... {TABLE_END} in README.md first")
    path.write_text(text[:start] + render_table() + text[end + len(TABLE_END):], encoding="utf-8")
    print(render_table())
