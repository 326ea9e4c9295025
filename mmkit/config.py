"""Run configuration: one YAML file per run, overridable with dotted `key=value` arguments.

The schema is a tree of dataclasses; every field has a type and a default, so a config file only names what
it changes. Unknown keys and wrong types are `UserError`s that name the key and, for a typo, the closest
valid key. `Config.to_dict()` is what a run directory stores as its resolved `config.yaml`.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from mmkit.errors import UserError


def opt(default: Any, help: str):
    """A config field with its `--help` text."""
    return field(default=default, metadata={"help": help})


# translation
@dataclass
class ArchitectureConfig:
    """The shape of a model built from scratch (model.init=scratch without a model.name_or_path)."""

    family: str | None = opt(None, "scratch: marian (encoder-decoder) | gpt2 (decoder-only): the architecture to build with random weights")
    d_model: int = opt(256, "scratch: hidden size")
    layers: int = opt(3, "scratch: layers (in the encoder and in the decoder of a seq2seq model)")
    heads: int = opt(4, "scratch: attention heads")
    ffn_dim: int = opt(1024, "scratch: feed-forward size")
    max_positions: int = opt(256, "scratch: longest sequence the position embeddings cover")
    dropout: float = opt(0.1, "scratch: dropout")


@dataclass
class ModelConfig:
    name_or_path: str | None = opt(None, "Hub id or checkpoint folder; empty: the embedded default (all-MiniLM-L6-v2)")
    revision: str | None = opt(None, "Hub branch, tag or commit of the checkpoint")
    trust_remote_code: bool = opt(False, "run Python code shipped with the checkpoint (only for checkpoints you trust)")
    dtype: str = opt("float32", "weights dtype when loading: float32 | bfloat16 | float16")
    pooling: str = opt("auto", "classification: auto (mean of token states for sentence-embedding checkpoints, else the model's own head) | mean | model")
    # image(+text) models
    text: str | None = opt(None, "two-tower image+text model: the text encoder (Hub id or folder; empty: the embedded MiniLM when model.vision is set)")
    vision: str | None = opt(None, "two-tower image+text model: the image encoder, e.g. google/vit-base-patch16-224-in21k (replaces model.name_or_path)")
    head_hidden: int = opt(256, "image(+text) models: hidden size of the MLP head on the fused features (0: one linear layer)")
    head_dropout: float = opt(0.1, "image(+text) models: dropout before and inside the head")
    fusion: list[str] | None = opt(None, "CLIP: features the head sees, from text, image, product, difference; empty: all four")
    prompt: str = opt("{text}", "BLIP-2 / LLaVA: the prompt around the row's text; LLaVA adds the image (chat template when the processor has one)")
    train_projector: bool = opt(False, "LLaVA: also train the vision-to-language projector (saved with the adapter)")
    # translation
    init: str = opt("pretrained", "pretrained: load the weights of name_or_path | scratch: random weights (with lora.enabled=false)")
    tokenizer: str | None = opt(None, "tokenizer folder (e.g. from `mmkit tokenizer train`); empty: the checkpoint's own")
    config: ArchitectureConfig = field(default_factory=ArchitectureConfig)
    special_tokens: list[str] | None = opt(None, "tokens added to the tokenizer (embeddings resized, trained and saved with the run)")


@dataclass
class DataConfig:
    train: str | None = opt(None, "training rows: .jsonl/.json/.csv/.tsv/.parquet file, or Hub dataset id owner/name[:split]")
    validation: str | None = opt(None, "validation rows (picks the best checkpoint); same forms as data.train")
    test: str | None = opt(None, "test rows (final metrics); same forms as data.train")
    hub_config: str | None = opt(None, "configuration name of a Hub dataset that has several")
    text_column: str = opt("text", "column holding the input text")
    label_column: str = opt("label", "column holding the label (an integer class index or a label name)")
    labels: list[str] | None = opt(None, "label names in class-index order; empty: read them from the training split")
    tokens_column: str = opt("tokens", "NER: column holding the list of words (JSONL/Hub); CoNLL files need none")
    tags_column: str = opt("ner_tags", "NER: column holding one tag per word (names like B-PER, or class indices)")
    stride: int = opt(32, "NER: tokens shared by consecutive windows when a sentence is longer than max_length")
    image_column: str = opt("image", "image tasks: column holding the image path (relative to data.image_root) or a Hub Image feature")
    image_root: str | None = opt(None, "image tasks: folder that image paths are relative to and may not leave; empty: each data file's folder")
    on_bad_row: str = opt("error", "error: stop at the first bad row; skip: leave bad rows out and count them")
    max_length: int | None = opt(None, "tokens per example, longer rows are truncated and counted; empty: model limit, at most 512")
    max_train_rows: int | None = opt(None, "train on the first N rows after a shuffle with data.shuffle_seed; empty: all")
    max_eval_rows: int | None = opt(None, "same for validation and test")
    shuffle_seed: int = opt(0, "seed of the shuffle behind max_train_rows / max_eval_rows")


@dataclass
class LoraConfig:
    enabled: bool = opt(True, "false: full fine-tuning (every weight trains) through the same loop")
    r: int = opt(8, "LoRA rank")
    alpha: int = opt(16, "LoRA scaling numerator (the update is scaled by alpha / r)")
    dropout: float = opt(0.1, "dropout on the LoRA input")
    target_modules: Union[str, list[str]] = opt(
        "auto", "auto (the family's attention projections), a list of module-name suffixes, or one regex"
    )
    towers: list[str] | None = opt(
        None, "image+text models, parts LoRA adapts: CLIP/two-tower text,vision; BLIP-2 qformer,language; LLaVA language; empty: the family's default"
    )


@dataclass
class TrainConfig:
    output_dir: str | None = opt(None, "the run directory; empty: runs/<task>-<model name>")
    epochs: int = opt(3, "passes over the training rows")
    max_steps: int | None = opt(None, "stop after this many optimizer steps (replaces epochs when set)")
    batch_size: int = opt(16, "rows per batch on each process")
    eval_batch_size: int | None = opt(None, "rows per evaluation batch on each process; empty: 2 x batch_size")
    gradient_accumulation_steps: int = opt(1, "batches per optimizer step")
    learning_rate: float = opt(5e-4, "peak learning rate (LoRA likes ~5e-4; full fine-tuning ~3e-5)")
    weight_decay: float = opt(0.0, "AdamW weight decay (never on biases and norms)")
    warmup_ratio: float = opt(0.06, "share of the steps spent warming the learning rate up")
    lr_scheduler: str = opt("linear", "transformers scheduler: linear, cosine, constant, constant_with_warmup, ...")
    max_grad_norm: float = opt(1.0, "gradient clipping norm (0: no clipping)")
    seed: int = opt(42, "seed for the head, LoRA init, dropout and the batch order")
    mixed_precision: str = opt("no", "no | bf16 | fp16")
    resume: Union[bool, str] = opt(False, "true: continue from the newest checkpoint of output_dir; or a checkpoint path")
    overwrite: bool = opt(False, "replace a previous run in output_dir")
    eval_every: int | None = opt(None, "optimizer steps between evaluations; empty: at the end of each epoch")
    save_every: int | None = opt(None, "optimizer steps between resumable checkpoints; empty: at the end of each epoch")
    keep_checkpoints: int = opt(2, "newest resumable checkpoints kept (0: all)")
    metric_for_best: str | None = opt(None, "validation metric that picks the best checkpoint; empty: the task's")
    log_every: int = opt(10, "optimizer steps between loss records")
    group_by_length: bool = opt(True, "batch rows of similar length together (far less padding; batch order stays random)")
    num_workers: int = opt(0, "DataLoader worker processes")
    gradient_checkpointing: bool = opt(False, "recompute activations in backward: less memory, ~30% slower")
    torch_compile: bool = opt(False, "compile the model with torch.compile (inductor)")
    push_to_hub: str | None = opt(None, "Hub repo id owner/name: push the run there when training ends (token: HF_TOKEN)")


# translation
@dataclass
class TranslationConfig:
    source_column: str = opt("source", "column holding the source text")
    target_column: str = opt("target", "column holding the reference translation")
    source_lang: str | None = opt(None, "source language code (reads Hub rows {'translation': {'en': ..., 'de': ...}})")
    target_lang: str | None = opt(None, "target language code: picks the BLEU tokenizer (zh -> zh, else 13a); empty: guessed from the references")
    source_prefix: str = opt("", "text put before every source, e.g. 'translate English to German: ' for T5")
    target_lang_token: str | None = opt(None, "target language token: >>xx<< (opus-mt multi-target) goes before the source; others (mBART de_DE) start the target")
    template: str = opt("{source} => {target}", "decoder-only models: how a pair becomes one sequence; loss only on {target} and what follows it (+ eos)")
    max_target_length: int | None = opt(None, "target tokens (seq2seq); longer targets are truncated and counted; empty: data.max_length")
    num_beams: int = opt(1, "beam search width in evaluation and predict (1: greedy)")
    max_new_tokens: int = opt(64, "longest generated translation, in tokens")
    length_penalty: float = opt(1.0, "beam search: >1 favours longer translations, <1 shorter")
    bleu_tokenize: str = opt("auto", "sacrebleu tokenizer: auto (zh for Chinese targets, else 13a) | 13a | zh | intl | char | none ...")


@dataclass
class Config:
    task: str = opt("sentiment", "what to train: sentiment | ner | translation | mm_sentiment (image + text) | image_classification")
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # translation
    translation: TranslationConfig = field(default_factory=TranslationConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


# ----------------------------------------------------------------------------------------------------------
# Loading and validation


class _Yaml12Loader(yaml.SafeLoader):
    """YAML with 1.2 scalars: only true/false are booleans (`mixed_precision: no` stays the string "no"),
    and 5e-4 is a number."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader subclass


def load_config(path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None) -> Config:
    """Read a YAML config (or start from defaults), apply `key=value` overrides, validate, return a Config."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = read_yaml_mapping(Path(path))
    if isinstance(overrides, dict):
        overrides = [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip()}" for k, v in overrides.items()]
    for item in overrides or []:
        key, value = parse_override(item)
        set_dotted(raw, key, value)
    return config_from_dict(raw)


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"config file {path} not found; pass the path to a YAML config such as recipes/configs/sentiment_minilm.yaml")
    try:
        raw = yaml_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"config file {path}{where} is not valid YAML: {getattr(err, 'problem', err)}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UserError(f"config file {path} must hold a mapping of keys (task:, model:, data:, ...), not {type(raw).__name__}")
    nested: dict[str, Any] = {}
    for key, value in raw.items():  # flat dotted keys (`data.test: x`) mean the same as nested ones
        if isinstance(key, str) and "." in key:
            set_dotted(nested, key, value)
        else:
            nested[key] = {**nested.get(key, {}), **value} if isinstance(value, dict) and isinstance(nested.get(key), dict) else value
    return nested


def parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise UserError(f"override {item!r} must look like key=value, e.g. train.epochs=2")
    key, text = item.split("=", 1)
    key = key.strip()
    if not key:
        raise UserError(f"override {item!r} has no key; use key=value, e.g. lora.r=16")
    try:
        value = yaml_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return key, value


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def all_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every valid dotted key of the schema, e.g. `train.learning_rate`."""
    keys = []
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            keys.extend(all_keys(hint, prefix + f.name + "."))
        else:
            keys.append(prefix + f.name)
    return keys


def config_from_dict(raw: dict[str, Any]) -> Config:
    return _build(Config, raw, "")


def _unknown_key_error(key: str) -> UserError:
    keys = all_keys()
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
    if not close:  # a right name in the wrong section: lora.epochs -> train.epochs
        leaf = key.rsplit(".", 1)[-1]
        close = [k for k in keys if k.rsplit(".", 1)[-1] == leaf] or difflib.get_close_matches(
            leaf, keys, n=1, cutoff=0.6
        )
    hint = f"; did you mean '{close[0]}'?" if close else "; run `mmkit train --help` for the list of keys"
    return UserError(f"unknown config key '{key}'{hint}")


def _build(cls: type, raw: Any, prefix: str):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"config key '{prefix.rstrip('.')}' must be a mapping of keys, not {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in names:
            raise _unknown_key_error(prefix + str(key))
    kwargs = {}
    for name, value in raw.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, prefix + name + ".")
        else:
            kwargs[name] = _coerce(value, hint, prefix + name)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check `value` against the type `hint`, converting the forgiving cases (1 -> 1.0, "a,b" -> [a, b])."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None:
            if type(None) in options:
                return None
            raise UserError(f"config key '{key}' must be set (it cannot be empty)")
        options = [o for o in options if o is not type(None)]
        # A value that already has one of the types keeps it ("auto" stays a string, [a] a list).
        for option in options:
            if isinstance(value, typing.get_origin(option) or option) and not (
                isinstance(value, bool) and option in (int, float)
            ):
                return _coerce(value, option, key)
        errors = []
        for option in sorted(options, key=_specificity):
            try:
                return _coerce(value, option, key)
            except UserError as err:
                errors.append(err)
        raise errors[-1]
    if origin is list:
        (item_type,) = typing.get_args(hint)
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list):
            raise UserError(f"config key '{key}' must be a list, got {value!r}")
        return [_coerce(v, item_type, key) for v in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"config key '{key}' must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise UserError(f"config key '{key}' must be a whole number, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 5e-4 as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise UserError(f"config key '{key}' must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise UserError(f"config key '{key}' must be a string, got {value!r}")
    raise TypeError(f"unsupported config type {hint!r} for {key}")


def _specificity(hint: Any) -> int:
    order = {bool: 0, int: 1, float: 2}
    if typing.get_origin(hint) is list:
        return 3
    return order.get(hint, 4)


def describe_keys() -> str:
    """The schema as text for `--help`: one line per key with its default."""
    lines = []
    for key, default, help_text in _key_docs(Config, ""):
        shown = "(empty)" if default is None else yaml.safe_dump(default, default_flow_style=True).strip().removesuffix("...").strip()
        lines.append(f"  {key + ' = ' + shown:<44} {help_text}")
    return "\n".join(lines)


def _key_docs(cls: type, prefix: str):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _key_docs(hints[f.name], prefix + f.name + ".")
        else:
            default = f.default if f.default is not dataclasses.MISSING else None
            yield prefix + f.name, default, f.metadata.get("help", "")
