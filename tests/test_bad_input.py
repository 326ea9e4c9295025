"""Every bad input gets a one-line error naming the file, the row and the fix; exit code 2; no traceback;
nothing written into the output directory."""

from __future__ import annotations

import json

import pytest
from builders import write_jsonl
from conftest import run_cli, sentiment_overrides

from mmkit.cli import main

GOOD = [{"text": f"sample {i} good", "label": "positive"} for i in range(4)] + [
    {"text": f"sample {i} bad", "label": "negative"} for i in range(4)
]


def _train_args(tiny_bert, tmp_path, train, **extra):
    out = tmp_path / "run"
    valid = write_jsonl(tmp_path / "valid.jsonl", GOOD)
    overrides = sentiment_overrides(tiny_bert, {"train": train, "validation": valid, "test": valid}, out, **extra)
    config = tmp_path / "config.yaml"
    config.write_text("task: sentiment\n")
    return [str(config)] + [f"{k}={v}" for k, v in overrides.items()], out


def _bad_jsonl(tmp_path):
    path = tmp_path / "train.jsonl"
    lines = [json.dumps(r) for r in GOOD[:3]] + ['{"text": "broken row", "label": '] + [json.dumps(r) for r in GOOD[3:]]
    path.write_text("\n".join(lines) + "\n")
    return path


def _latin1_jsonl(tmp_path):
    """Row 3 saved in Latin-1 (as a spreadsheet export might): the accents as single bytes."""
    path = tmp_path / "train.jsonl"
    lines = [json.dumps(r) for r in GOOD]
    lines[2] = '{"text": "un film tr\u00e8s dr\u00f4le", "label": "positive"}'
    path.write_bytes("\n".join(lines).encode("latin-1") + b"\n")
    return path


CASES = {
    "missing file": (lambda tmp: tmp / "does_not_exist.jsonl", {}, ["does_not_exist.jsonl", "not found"]),
    "wrong text column": (
        lambda tmp: write_jsonl(tmp / "train.jsonl", GOOD),
        {"data.text_column": "sentence"},
        ["train.jsonl", "'sentence'", "data.text_column"],
    ),
    "label not in set": (
        lambda tmp: write_jsonl(tmp / "train.jsonl", GOOD[:5] + [{"text": "x", "label": "neutral"}] + GOOD[5:]),
        {"data.labels": "[negative,positive]"},
        ["train.jsonl", "line 6", "'neutral'", "negative, positive"],
    ),
    "empty split": (lambda tmp: _empty(tmp / "train.jsonl"), {}, ["train.jsonl", "empty", "needs rows"]),
    "unreadable row": (_bad_jsonl, {}, ["train.jsonl", "line 4"]),
    "mixed label types": (
        lambda tmp: write_jsonl(tmp / "train.jsonl", GOOD[:2] + [{"text": "x", "label": 1}] + GOOD[2:]),
        {},
        ["train.jsonl", "line 3", "mix"],
    ),
    "empty text": (
        lambda tmp: write_jsonl(tmp / "train.jsonl", GOOD[:6] + [{"text": "  ", "label": "positive"}] + GOOD[6:]),
        {},
        ["train.jsonl", "line 7", "empty"],
    ),
    "not utf-8": (_latin1_jsonl, {}, ["train.jsonl", "line 3", "byte offset", "not utf-8", "save it as utf-8"]),
    "broken yaml override": (
        lambda tmp: write_jsonl(tmp / "train.jsonl", GOOD),
        {"data.labels": "[negative,positive"},
        ["data.labels=[negative,positive", "not valid yaml", "close the brackets"],
    ),
    "max_length above the model's": (
        lambda tmp: write_jsonl(tmp / "train.jsonl", GOOD),
        {"data.max_length": 1000},
        ["data.max_length=1000", "128 tokens", "model_max_length", "data.max_length=128 or less"],
    ),
}


def _one_error(capsys) -> str:
    """The one `error:` line on stderr (no traceback), checked."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def _empty(path):
    path.write_text("")
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_training_data(case, tiny_bert, tmp_path, capsys):
    make, extra, expected = CASES[case]
    args, out = _train_args(tiny_bert, tmp_path, make(tmp_path), **extra)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *args])
    assert exit_info.value.code == 2
    message = _one_error(capsys)
    for fragment in expected:
        assert fragment.lower() in message.lower(), message
    assert not out.exists(), "nothing may be written for a run that never started"


def test_user_error_in_a_real_process_has_no_traceback(tiny_bert, tmp_path):
    args, out = _train_args(tiny_bert, tmp_path, tmp_path / "missing.jsonl")
    proc = run_cli("train", *args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and "missing.jsonl" in proc.stderr
    assert not out.exists()


def test_existing_run_is_not_overwritten(tiny_bert, toy_data, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("task: sentiment\n")
    (out / ".mmkit-run.json").write_text('{"files": []}')  # a run mmkit made
    overrides = sentiment_overrides(tiny_bert, toy_data, out)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(_config(tmp_path))] + [f"{k}={v}" for k, v in overrides.items()])
    assert exit_info.value.code == 2
    assert "train.overwrite=true" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [".mmkit-run.json", "config.yaml"]


def _config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("task: sentiment\n")
    return path


# --- files that are not UTF-8 ----------------------------------------------------------------------------


def test_utf8_check_streams_and_names_line_and_byte(tmp_path, monkeypatch):
    """The check reads in chunks: a character cut by a chunk boundary is fine, a bad byte is named exactly."""
    import mmkit.data as data
    from mmkit.errors import UserError

    monkeypatch.setattr(data, "_CHUNK", 5)  # every multi-byte character below straddles some boundary
    good = tmp_path / "good.jsonl"
    good.write_text('{"text": "caf\u00e9 \u2603 \U0001d11e \u4e2d\u6587"}\n' * 7, encoding="utf-8")
    data.check_utf8(good)
    bad = tmp_path / "bad.csv"
    head = "text,label\n\u2603 ok,1\n".encode()
    bad.write_bytes(head + b"caf\xe9,0\n")
    with pytest.raises(UserError, match=rf"bad.csv line 3 \(byte offset {len(head) + 3}\): not UTF-8 text \(byte 0xe9\)"):
        data.check_utf8(bad)
    cut = tmp_path / "cut.tsv"
    cut.write_bytes("a\t\u2603".encode()[:-1])  # the file ends inside a character
    with pytest.raises(UserError, match="line 1 .byte offset 2."):
        data.check_utf8(cut)


# --- data.max_length and the model's position limit ----------------------------------------------------


@pytest.fixture(scope="module")
def bert_without_tokenizer_limit(tiny_bert, tmp_path_factory):
    """The tiny BERT (128 positions) whose tokenizer announces no limit (model_max_length 1e30, as many Hub
    tokenizers ship): only config.json knows how far the model reads."""
    import shutil

    folder = tmp_path_factory.mktemp("bert-no-limit") / "model"
    shutil.copytree(tiny_bert, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["model_max_length"] = int(1e30)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def test_max_length_above_the_position_table_is_refused(bert_without_tokenizer_limit, tmp_path, capsys):
    args, out = _train_args(bert_without_tokenizer_limit, tmp_path, write_jsonl(tmp_path / "train.jsonl", GOOD), **{"data.max_length": 200})
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *args])
    message = _one_error(capsys)
    assert exit_info.value.code == 2
    assert "data.max_length=200" in message and "128 tokens: max_position_embeddings" in message, message
    assert not out.exists()


def test_default_max_length_stops_at_the_position_table(bert_without_tokenizer_limit, tmp_path, capsys):
    """No data.max_length and a tokenizer without a limit: rows are cut at the model's 128 positions (they
    used to be cut at 512 and crashed the embedding lookup mid-training)."""
    long_row = {"text": " ".join(["good film"] * 100), "label": "positive"}
    args, out = _train_args(bert_without_tokenizer_limit, tmp_path, write_jsonl(tmp_path / "train.jsonl", GOOD + [long_row]), **{"train.max_steps": 1})
    assert main(["train", *args]) == 0
    assert "1 of 9 rows truncated to 128 tokens" in capsys.readouterr().out


# --- images: a truncated JPEG is a bad row at load time ---------------------------------------------------


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
    from builders_multimodal import build_tiny_vit

    return build_tiny_vit(tmp_path_factory.mktemp("tiny-vit"))


def _jpeg_folder(root, per_label=8):
    import random

    from builders_multimodal import COLOURS, square_image

    rng = random.Random(0)
    for colour in COLOURS:
        (root / colour).mkdir(parents=True)
        for i in range(per_label):
            square_image(colour, rng).resize((96, 96)).save(root / colour / f"{i}.jpg", quality=90)
    return root


def test_truncated_jpeg_is_a_bad_row(tiny_vit, tmp_path, capsys):
    from PIL import Image

    train = _jpeg_folder(tmp_path / "train")
    valid = _jpeg_folder(tmp_path / "valid", per_label=4)
    broken = train / "red" / "3.jpg"
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2])  # a download cut short
    with Image.open(broken) as image:
        image.verify()  # what the old check did: it passes a truncated JPEG
    out = tmp_path / "run"
    args = [
        "train", str(_config(tmp_path)), "task=image_classification", f"model.name_or_path={tiny_vit}",
        f"data.train={train}", f"data.validation={valid}", f"data.test={valid}", f"train.output_dir={out}",
        "train.batch_size=4", "train.max_steps=3",
    ]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    message = _one_error(capsys)
    assert exit_info.value.code == 2
    assert "red/3.jpg" in message and "truncated" in message and "data.on_bad_row=skip" in message, message
    assert not out.exists()

    assert main(args + ["data.on_bad_row=skip"]) == 0  # left out and counted; training never meets it
    captured = capsys.readouterr()
    assert "train: skipped 1 rows with a bad image" in captured.out, captured.out
    assert "Traceback" not in captured.err
    assert (out / "adapter_model.safetensors").is_file()


# --- a finished run: eval --output, predict ----------------------------------------------------------------


@pytest.fixture(scope="module")
def sentiment_run(tiny_bert, toy_data, tmp_path_factory):
    from mmkit.config import load_config
    from mmkit.training.finetune import finetune

    out = tmp_path_factory.mktemp("sentiment-run") / "run"
    finetune(load_config(None, sentiment_overrides(tiny_bert, toy_data, out, **{"train.max_steps": 2})))
    return out


def _listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_eval_output_that_is_a_file_is_refused(sentiment_run, tmp_path, capsys):
    target = tmp_path / "metrics.txt"
    target.write_text("keep me\n")
    before = _listing(sentiment_run)
    for output, fragment in ((target, "is a file"), (target / "sub", f"is inside {target}, which is a file")):
        with pytest.raises(SystemExit) as exit_info:
            main(["eval", str(sentiment_run), "--output", str(output)])
        message = _one_error(capsys)
        assert exit_info.value.code == 2
        assert f"--output {output}" in message and fragment in message and "give a folder" in message, message
    assert target.read_text() == "keep me\n" and _listing(sentiment_run) == before


@pytest.mark.parametrize("text", ["", "   "])
def test_predict_blank_text_is_refused(sentiment_run, text, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(sentiment_run), text])
    message = _one_error(capsys)
    assert exit_info.value.code == 2 and "the text to predict for is empty" in message, message


def test_predict_says_when_it_read_only_the_start(sentiment_run, capsys):
    assert main(["predict", str(sentiment_run), " ".join(["good"] * 300), "--json"]) == 0
    captured = capsys.readouterr()
    notes = [line for line in captured.err.splitlines() if line.startswith("note:")]
    # tiny BERT reads 128 tokens: [CLS] + 126 of the text + [SEP]
    assert notes == ["note: the text is 300 tokens; the model read the first 126"], captured.err
    assert set(json.loads(captured.out.strip().splitlines()[-1])["probabilities"]) == {"negative", "positive"}
    assert main(["predict", str(sentiment_run), "a good film"]) == 0
    assert "note:" not in capsys.readouterr().err  # a short text: nothing to say


@pytest.fixture(scope="module")
def mm_run(tmp_path_factory):
    from builders_multimodal import build_tiny_clip, fusion_splits

    from mmkit.config import load_config
    from mmkit.training.finetune import finetune

    clip = build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))
    data = fusion_splits(tmp_path_factory.mktemp("fusion"), n_train=16, n_eval=8)
    out = tmp_path_factory.mktemp("mm-run") / "run"
    finetune(load_config(None, {
        "task": "mm_sentiment", "model.name_or_path": str(clip), "data.train": str(data["train"]),
        "data.validation": str(data["validation"]), "train.output_dir": str(out), "train.batch_size": 8,
        "train.max_steps": 1, "model.head_hidden": 16,
    }))
    return out, data["train"].parent / json.loads(data["train"].read_text().splitlines()[0])["image"]


def test_mm_predict_blank_text_and_long_text(mm_run, capsys):
    run, image = mm_run
    for text in ("", "  "):
        with pytest.raises(SystemExit) as exit_info:
            main(["predict", str(run), text, "--image", str(image)])
        message = _one_error(capsys)
        assert exit_info.value.code == 2 and "the text is empty" in message and "--image" in message, message
    assert main(["predict", str(run), " ".join(["good"] * 50), "--image", str(image)]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert notes == ["note: the text is 50 tokens; the model read the first 32"]  # the tiny CLIP reads 32


def test_translation_predict_says_when_the_source_was_cut(tmp_path, capsys):
    from builders_translation import toy_translation_splits

    from mmkit.config import load_config
    from mmkit.tokenizer_training import train_tokenizer
    from mmkit.training.finetune import finetune

    data = toy_translation_splits(tmp_path / "data", n_train=64, n_eval=8)
    tokenizer = tmp_path / "tok"
    train_tokenizer([str(data["train"])], str(tokenizer), kind="bpe", vocab_size=300)
    out = tmp_path / "run"
    finetune(load_config(None, {
        "task": "translation", "model.init": "scratch", "model.tokenizer": str(tokenizer), "model.config.family": "marian",
        "model.config.d_model": 16, "model.config.layers": 1, "model.config.heads": 2, "model.config.ffn_dim": 32,
        "model.config.max_positions": 64, "data.train": str(data["train"]), "data.validation": str(data["validation"]),
        "data.max_length": 8, "train.output_dir": str(out), "lora.enabled": False, "train.max_steps": 1,
        "translation.max_new_tokens": 4,
    }))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(out), "  "])
    assert exit_info.value.code == 2 and "empty" in _one_error(capsys)
    text = "the cat sees the dog and the red bird eats the old fish"
    assert main(["predict", str(out), text]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    total = len(tok(text, add_special_tokens=False)["input_ids"])
    read = 8 - (len(tok(text)["input_ids"]) - total)  # data.max_length 8, less the special tokens
    assert notes == [f"note: the text is {total} tokens; the model read the first {read}"], notes
