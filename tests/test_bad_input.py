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
}


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
    err = capsys.readouterr().err.strip().splitlines()
    message = err[-1]
    assert message.startswith("error: ")
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
