"""The config contract: YAML + dotted overrides, types checked, unknown keys caught with a suggestion."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mmkit.config import Config, describe_keys, load_config, yaml_load
from mmkit.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_defaults_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("task: sentiment\ntrain:\n  epochs: 2\n  learning_rate: 1e-3\nlora:\n  r: 4\n")
    cfg = load_config(path, ["train.epochs=5", "lora.target_modules=[query,value]", "data.labels=[neg,pos]"])
    assert isinstance(cfg, Config)
    assert cfg.train.epochs == 5  # the override wins over the file
    assert cfg.train.learning_rate == pytest.approx(1e-3)  # YAML 1.2: 1e-3 is a float, not a string
    assert cfg.lora.r == 4 and cfg.lora.enabled is True  # file value, then the default
    assert cfg.lora.target_modules == ["query", "value"]
    assert cfg.data.labels == ["neg", "pos"]


def test_yaml_12_booleans_only_true_false():
    # YAML 1.1 turns `no`/`on` into booleans: a label named "no" must stay a string.
    assert yaml_load("[no, yes, on, true, 5e-4]") == ["no", "yes", "on", True, 5e-4]


def test_resume_accepts_bool_or_path():
    assert load_config(None, ["train.resume=true"]).train.resume is True
    assert load_config(None, ["train.resume=runs/x/checkpoints/step-10"]).train.resume == "runs/x/checkpoints/step-10"


def test_round_trip_through_yaml(tmp_path):
    cfg = load_config(None, {"task": "sentiment", "train.epochs": 7, "data.labels": ["a", "b"]})
    path = tmp_path / "again.yaml"
    path.write_text(cfg.to_yaml())
    assert load_config(path).to_dict() == cfg.to_dict()


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epoch=3", "did you mean 'train.epochs'"),
        ("train.epochs=three", "train.epochs"),
        ("lora.enabled=maybe", "lora.enabled"),
        ("trainepochs", "key=value"),
    ],
)
def test_bad_overrides_are_user_errors(override, message):
    with pytest.raises(UserError, match=message):
        load_config(None, [override])


def test_missing_config_file(tmp_path):
    with pytest.raises(UserError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_help_lists_every_key_with_its_default():
    text = describe_keys()
    for key in ("model.name_or_path", "data.train", "lora.target_modules", "train.gradient_accumulation_steps"):
        assert key in text


def test_flat_dotted_keys_in_a_file(tmp_path):
    path = tmp_path / "flat.yaml"
    path.write_text("task: sentiment\ndata.test: t.jsonl\ntrain:\n  epochs: 2\ntrain.batch_size: 8\n")
    cfg = load_config(path)
    assert cfg.data.test == "t.jsonl" and cfg.train.epochs == 2 and cfg.train.batch_size == 8


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "recipes" / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    """A shipped config names only keys that exist, with values of the right type and range, and no old key
    names (those print a note)."""
    import contextlib
    import io

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        cfg = load_config(path)
    assert "is now" not in stderr.getvalue(), stderr.getvalue()
    header = path.read_text(encoding="utf-8").split("\ntask:")[0]
    assert f"--config recipes/configs/{path.name}" in header or f"mmkit train recipes/configs/{path.name}" in header, "the header gives the launch command"
    assert cfg.task in path.name or cfg.task.replace("_", "") in path.name.replace("_", "")


def test_old_key_names_are_read_with_a_note(capsys):
    cfg = load_config(None, ["data.stride=4", "data.tokens_column=words"])
    assert cfg.ner.stride == 4 and cfg.ner.tokens_column == "words"
    with pytest.raises(UserError, match="same setting"):
        load_config(None, ["data.stride=4", "ner.stride=8"])


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("train.learning_rate=-1", "must be > 0"),
        ("train.batch_size=0", "must be >= 1"),
        ("train.log_every=0", "must be >= 1"),
        ("train.max_grad_norm=-3", "must be >= 0"),
        ("lora.dropout=1.5", "must be >= 0 and < 1"),
        ("train.mixed_precision=bf61", "did you mean 'bf16'"),
        ("model.pooling=meen", "must be one of auto, mean, model"),
        ("data.on_bad_row=ignore", "must be one of error, skip"),
        ("model.fusion=[text,colour]", "must be one of text, image, product, difference"),
    ],
)
def test_choices_and_ranges_are_checked_at_load(override, fragment):
    with pytest.raises(UserError, match=re.escape(fragment)):
        load_config(None, [override])


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("data.labels=[neg,pos", "flow sequence"),
        ("model.fusion=[text, image", "flow sequence"),
        ('train.output_dir="runs/x', "quoted scalar"),
        ("data.labels={a: 1", "flow mapping"),
    ],
)
def test_broken_yaml_override_is_refused(override, fragment):
    """A value that opens a YAML list, mapping or quote and never closes it is a typo, not text."""
    with pytest.raises(UserError, match=re.escape(fragment)) as info:
        load_config(None, [override])
    message = str(info.value)
    assert override in message and "\n" not in message and "close the brackets or quotes" in message


@pytest.mark.parametrize(
    "override, key, value",
    [
        ("model.name_or_path=org/name", "model.name_or_path", "org/name"),
        ("translation.template={source} => {target}", "translation.template", "{source} => {target}"),
        ("translation.template=[{source}] => {target}", "translation.template", "[{source}] => {target}"),
        ("translation.template=Q: {source} A: {target}", "translation.template", "Q: {source} A: {target}"),
        ("data.labels='[neg,pos'", "data.labels", ["[neg", "pos"]),  # quoted: text (then split at commas)
        ("train.output_dir=runs/my run", "train.output_dir", "runs/my run"),
    ],
)
def test_plain_text_overrides_still_work(override, key, value):
    section, name = key.split(".")
    assert getattr(getattr(load_config(None, [override]), section), name) == value
