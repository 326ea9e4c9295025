"""Run configuration: one YAML file per run, overridable with dotted `key=value` arguments.

The schema is a tree of dataclasses; every field has a type and a default, so a config file only names what
it changes. Unknown keys and wrong types are `UserError`s that name the key and, for a typo, the closest
valid key. `Config.to_dict()` is what a run directory stores as its resolved `config.yaml`.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from mmkit.errors import UserError


def opt(default: Any, help: str, ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None):
    """A config field with its `--help` text and, for numbers, the range it must lie in (checked at load)."""
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    return field(default=default, metadata={"help": help, "bounds": bounds})


TaskName = Literal["sentiment", "ner", "translation", "mm_sentiment", "image_classification"]
# transformers schedulers that need nothing beyond warmup and total steps.
Scheduler = Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt"]
# Experiment trackers Accelerate drives (`Accelerator(log_with=...)`); "all": every one whose package is installed.
Tracker = Literal["none", "tensorboard", "wandb", "mlflow", "trackio", "all"]
# PEFT's `init_lora_weights` choices that need nothing beyond the base weights (eva/corda/loftq need data or
# extra configs). pissa and olora also rewrite the base weights; the saved adapter is converted back.
LoraInit = Literal["default", "gaussian", "orthogonal", "pissa", "olora"]
BleuTokenizer = Literal["auto", "13a", "zh", "intl", "char", "none", "ja-mecab", "ko-mecab", "spm", "flores101", "flores200"]


@dataclass
class ArchitectureConfig:
    """The shape of a model built from scratch (model.init=scratch without a model.name_or_path)."""

    family: Optional[Literal["marian", "gpt2"]] = opt(None, "scratch: marian (encoder-decoder) | gpt2 (decoder-only): the architecture to build with random weights")
    d_model: int = opt(256, "scratch: hidden size", ge=8)
    layers: int = opt(3, "scratch: layers (in the encoder and in the decoder of a seq2seq model)", ge=1)
    heads: int = opt(4, "scratch: attention heads", ge=1)
    ffn_dim: int = opt(1024, "scratch: feed-forward size", ge=1)
    max_positions: int = opt(256, "scratch: longest sequence the position embeddings cover", ge=8)
    dropout: float = opt(0.1, "scratch: dropout", ge=0, lt=1)


@dataclass
class ModelConfig:
    name_or_path: Optional[str] = opt(None, "Hub id or checkpoint folder; empty: the embedded default (all-MiniLM-L6-v2)")
    revision: Optional[str] = opt(None, "Hub branch, tag or commit of the checkpoint")
    trust_remote_code: bool = opt(False, "run Python code shipped with the checkpoint (only for checkpoints you trust)")
    dtype: Literal["float32", "bfloat16", "float16"] = opt("float32", "weights dtype when loading: float32 | bfloat16 | float16")
    quantization: Optional[Literal["4bit", "8bit"]] = opt(None, "load the frozen base in 4-bit (NF4, QLoRA) or 8-bit through bitsandbytes (pip install 'mmkit[quantization]'); LoRA runs only; empty: model.dtype")
    pooling: Literal["auto", "mean", "model"] = opt("auto", "classification: auto (mean of token states for sentence-embedding checkpoints, else the model's own head) | mean | model")
    # image(+text) models
    text: Optional[str] = opt(None, "two-tower image+text model: the text encoder (Hub id or folder; empty: the embedded MiniLM when model.vision is set)")
    vision: Optional[str] = opt(None, "two-tower image+text model: the image encoder, e.g. google/vit-base-patch16-224-in21k (replaces model.name_or_path)")
    head_hidden: int = opt(256, "image(+text) models: hidden size of the MLP head on the fused features (0: one linear layer)", ge=0)
    head_dropout: float = opt(0.1, "image(+text) models: dropout before and inside the head", ge=0, lt=1)
    fusion: Optional[list[Literal["text", "image", "product", "difference"]]] = opt(None, "CLIP: features the head sees, from text, image, product, difference; empty: all four")
    prompt: str = opt("{text}", "BLIP-2 / LLaVA / image-text-to-text models: the prompt around the row's text; LLaVA-style models add the image (chat template when the processor has one)")
    train_projector: bool = opt(False, "LLaVA and image-text-to-text models: also train the vision-to-language projector / merger (saved with the adapter)")
    min_pixels: Optional[int] = opt(None, "Qwen2-VL-style dynamic resolution: images are resized to at least this many pixels; empty: 3136 (Qwen3-VL 4096)", ge=1)
    max_pixels: Optional[int] = opt(None, "Qwen2-VL-style dynamic resolution: at most this many pixels (28x28 per image token; 32x32 for Qwen3-VL); empty: 256 tokens' worth", ge=1)
    # translation
    init: Literal["pretrained", "scratch"] = opt("pretrained", "pretrained: load the weights of name_or_path | scratch: random weights (with lora.enabled=false)")
    tokenizer: Optional[str] = opt(None, "tokenizer folder (e.g. from `mmkit tokenizer train`); empty: the checkpoint's own")
    config: ArchitectureConfig = field(default_factory=ArchitectureConfig)
    special_tokens: Optional[list[str]] = opt(None, "tokens added to the tokenizer (embeddings resized, trained and saved with the run)")


@dataclass
class DataConfig:
    train: Optional[str] = opt(None, "training rows: .jsonl/.json/.csv/.tsv/.parquet file, or Hub dataset id owner/name[:split]")
    validation: Optional[str] = opt(None, "validation rows (picks the best checkpoint); same forms as data.train")
    test: Optional[str] = opt(None, "test rows (final metrics); same forms as data.train")
    hub_config: Optional[str] = opt(None, "configuration name of a Hub dataset that has several")
    text_column: str = opt("text", "column holding the input text")
    label_column: str = opt("label", "column holding the label (an integer class index or a label name)")
    labels: Optional[list[str]] = opt(None, "label names in class-index order; empty: read them from the training split")
    image_column: str = opt("image", "image tasks: column holding the image path (relative to data.image_root) or a Hub Image feature")
    image_root: Optional[str] = opt(None, "image tasks: folder that image paths are relative to and may not leave; empty: each data file's folder")
    on_bad_row: Literal["error", "skip"] = opt("error", "error: stop at the first bad row; skip: leave bad rows out and count them")
    max_length: Optional[int] = opt(None, "tokens per example, longer rows are truncated and counted; empty: model limit, at most 512", ge=2)
    max_train_rows: Optional[int] = opt(None, "train on the first N rows after a shuffle with data.shuffle_seed; empty: all", ge=1)
    max_eval_rows: Optional[int] = opt(None, "same for validation and test", ge=1)
    shuffle_seed: int = opt(0, "seed of the shuffle behind max_train_rows / max_eval_rows")


@dataclass
class NerConfig:
    tokens_column: str = opt("tokens", "column holding the list of words (JSONL/Hub); CoNLL files need none")
    tags_column: str = opt("ner_tags", "column holding one tag per word (names like B-PER, or class indices)")
    stride: int = opt(32, "tokens shared by consecutive windows when a sentence is longer than data.max_length", ge=0)
    label_all_subtokens: bool = opt(
        True, "train on every sub-token of a word (B-X -> I-X after the first; CoNLL-2003: +1.3 F1); false: first only. "
        "Predictions always come from the first"
    )


@dataclass
class LoraConfig:
    enabled: bool = opt(True, "false: full fine-tuning (every weight trains) through the same loop")
    r: int = opt(8, "LoRA rank", ge=1)
    alpha: int = opt(16, "LoRA scaling numerator (the update is scaled by alpha / r)", ge=1)
    dropout: float = opt(0.1, "dropout on the LoRA input", ge=0, lt=1)
    target_modules: Union[str, list[str]] = opt(
        "auto", "auto (the family's attention projections), a list of module-name suffixes, or one regex"
    )
    towers: Optional[list[str]] = opt(
        None, "image+text models, parts LoRA adapts: CLIP/two-tower text,vision; BLIP-2 qformer,language; LLaVA language; Qwen2-VL, LLaVA-NeXT, Idefics3, Gemma 3 ... language,vision; empty: the family's default"
    )
    use_dora: bool = opt(False, "DoRA: train each adapted weight's magnitude apart from its direction (more compute per step)")
    use_rslora: bool = opt(False, "rsLoRA: scale the update by alpha / sqrt(r) instead of alpha / r (meant for high ranks)")
    init: LoraInit = opt("default", "LoRA init: default (B = 0) | gaussian | orthogonal | pissa (principal singular vectors) | olora (QR of the weight)")


@dataclass
class TrainConfig:
    output_dir: Optional[str] = opt(None, "the run directory; empty: runs/<task>-<model name>")
    epochs: int = opt(3, "passes over the training rows", ge=1)
    max_steps: Optional[int] = opt(None, "stop after this many optimizer steps (replaces epochs when set)", ge=1)
    batch_size: int = opt(16, "rows per batch on each process", ge=1)
    eval_batch_size: Optional[int] = opt(None, "rows per evaluation batch on each process; empty: 2 x batch_size", ge=1)
    gradient_accumulation_steps: int = opt(1, "batches per optimizer step", ge=1)
    learning_rate: float = opt(5e-4, "peak learning rate (LoRA likes ~5e-4; full fine-tuning ~3e-5)", gt=0)
    weight_decay: float = opt(0.0, "AdamW weight decay (never on biases and norms)", ge=0)
    warmup_ratio: float = opt(0.06, "share of the steps spent warming the learning rate up", ge=0, le=1)
    lr_scheduler: Scheduler = opt("linear", "linear | cosine | cosine_with_restarts | polynomial | constant | constant_with_warmup | inverse_sqrt")
    max_grad_norm: float = opt(1.0, "gradient clipping norm (0: no clipping)", ge=0)
    seed: int = opt(42, "seed for the head, LoRA init, dropout and the batch order")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = opt(
        "no", "no | bf16 | fp16 | auto (bf16 where the GPU or CPU computes bf16 natively: AVX-512 BF16 / AMX, else no; no for DeBERTa v1, which breaks in bf16)"
    )
    resume: Union[bool, str] = opt(False, "true: continue from the newest checkpoint of output_dir; or a checkpoint path")
    overwrite: bool = opt(False, "replace a previous run in output_dir")
    eval_every: Optional[int] = opt(None, "optimizer steps between evaluations; empty: at the end of each epoch", ge=1)
    save_every: Optional[int] = opt(None, "optimizer steps between resumable checkpoints; empty: at the end of each epoch", ge=1)
    save_every_minutes: float = opt(10.0, "also save a resumable checkpoint when this many minutes passed since the last one (0: off)", ge=0)
    keep_checkpoints: int = opt(2, "newest resumable checkpoints kept (0: all)", ge=0)
    metric_for_best: Optional[str] = opt(None, "validation metric that picks the best checkpoint; empty: the task's")
    log_every: int = opt(10, "optimizer steps between loss records", ge=1)
    group_by_length: bool = opt(True, "batch rows of similar length together (far less padding; batch order stays random)")
    num_workers: int = opt(0, "DataLoader worker processes", ge=0)
    gradient_checkpointing: bool = opt(False, "recompute activations in backward: less memory, ~30% slower")
    torch_compile: bool = opt(False, "compile the model with torch.compile (inductor)")
    push_to_hub: Optional[str] = opt(None, "Hub repo id owner/name: push the run there when training ends (token: HF_TOKEN)")
    report_to: Optional[list[Tracker]] = opt(None, "experiment trackers: none | tensorboard | wandb | mlflow | trackio | all (the installed ones), or a list; empty: none")
    project: str = opt("mmkit", "trackers: the project (wandb/trackio project, mlflow experiment, tensorboard folder under RUN/logs)")
    run_name: Optional[str] = opt(None, "trackers: the run's name; empty: the name of train.output_dir")
    early_stopping_patience: Optional[int] = opt(None, "stop after this many validations without the best metric improving by early_stopping_threshold; empty: off", ge=1)
    early_stopping_threshold: float = opt(0.0, "early stopping: how much the best metric must improve to count as an improvement", ge=0)
    class_weights: Union[Literal["none", "balanced"], list[float]] = opt(
        "none", "classification and NER: weights of the classes in the loss: none | balanced (n / (classes x count) on the training labels) | [w0, w1, ...] in label order"
    )


@dataclass
class TranslationConfig:
    source_column: str = opt("source", "column holding the source text")
    target_column: str = opt("target", "column holding the reference translation")
    source_lang: Optional[str] = opt(None, "source language code: reads Hub rows {'translation': {'en': ..., 'de': ...}}; mBART/NLLB: the tokenizer's code, e.g. en_XX / eng_Latn")
    target_lang: Optional[str] = opt(None, "target language code: picks the BLEU tokenizer (zh -> zh, else 13a); mBART/NLLB: the forced first token, e.g. de_DE / deu_Latn")
    source_prefix: str = opt("", "text put before every source, e.g. 'translate English to German: ' for T5")
    target_lang_token: Optional[str] = opt(None, "target language token: >>xx<< (opus-mt multi-target) goes before the source; others (mBART de_DE) start the target")
    template: str = opt("{source} => {target}", "decoder-only models: how a pair becomes one sequence; loss only on {target} and what follows it (+ eos)")
    max_target_length: Optional[int] = opt(None, "target tokens (seq2seq); longer targets are truncated and counted; empty: data.max_length", ge=2)
    num_beams: int = opt(1, "beam search width in evaluation and predict (1: greedy)", ge=1)
    max_new_tokens: int = opt(64, "longest generated translation, in tokens", ge=1)
    length_penalty: float = opt(1.0, "beam search: >1 favours longer translations, <1 shorter")
    bleu_tokenize: BleuTokenizer = opt("auto", "sacrebleu tokenizer: auto (zh for Chinese targets, else 13a) | 13a | zh | intl | char | none | ...")


@dataclass
class Config:
    task: TaskName = opt("sentiment", "what to train: sentiment | ner | translation | mm_sentiment (image + text) | image_classification")
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # task sections: read only by their task
    ner: NerConfig = field(default_factory=NerConfig)
    translation: TranslationConfig = field(default_factory=TranslationConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


# Keys that moved to their task's section; the old names are read (with a note) until mmkit 0.3.
ALIASES = {
    "data.tokens_column": "ner.tokens_column",
    "data.tags_column": "ner.tags_column",
    "data.stride": "ner.stride",
}


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
    except yaml.YAMLError as err:
        # A value that opens a YAML list, mapping or quoted string and never closes it is a typo
        # (`data.labels=[neg,pos`), not text; anything else YAML refuses is read as plain text
        # (`translation.template={source} => {target}`: a complete `{source}`, then more text).
        context = getattr(err, "context", None) or ""
        if text.lstrip()[:1] in ("[", "{", '"', "'") and context.startswith(("while parsing a flow", "while scanning a")):
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise UserError(
                f"override {item!r} is not valid YAML ({context}: {problem}); close the brackets or quotes "
                f"(e.g. {key}=[a,b]), or, to pass the value as text, put it in single quotes: {key}=\"'...'\""
            ) from None
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
    return _build(Config, _apply_aliases(raw), "")


_ALIAS_NOTES_SHOWN: set[str] = set()


def _apply_aliases(raw: dict[str, Any]) -> dict[str, Any]:
    """Move keys that changed section to their new place (a key given under both names is an error)."""
    if not isinstance(raw, dict):
        return raw
    raw = {section: (dict(value) if isinstance(value, dict) else value) for section, value in raw.items()}
    for old, new in ALIASES.items():
        old_section, old_key = old.split(".")
        section = raw.get(old_section)
        if not isinstance(section, dict) or old_key not in section:
            continue
        new_section, new_key = new.split(".")
        target = raw.setdefault(new_section, {})
        if not isinstance(target, dict):
            continue  # reported as "must be a mapping" by _build
        if new_key in target:
            raise UserError(f"config keys '{old}' and '{new}' are the same setting; keep only '{new}'")
        target[new_key] = section.pop(old_key)
        if old not in _ALIAS_NOTES_SHOWN:
            _ALIAS_NOTES_SHOWN.add(old)
            print(f"note: config key '{old}' is now '{new}'; the old name is read until mmkit 0.3", file=sys.stderr)
    return raw


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
    bounds = {f.name: f.metadata.get("bounds") for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in raw.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, prefix + name + ".")
        else:
            kwargs[name] = _check_bounds(_coerce(value, hint, prefix + name), bounds.get(name), prefix + name)
    return cls(**kwargs)


_BOUND_TEXT = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
_BOUND_TEST = {"ge": lambda v, b: v >= b, "gt": lambda v, b: v > b, "le": lambda v, b: v <= b, "lt": lambda v, b: v < b}


def _check_bounds(value: Any, bounds: dict[str, float] | None, key: str) -> Any:
    if not bounds or not isinstance(value, (int, float)) or isinstance(value, bool):
        return value
    failed = [f"{_BOUND_TEXT[k]} {b:g}" for k, b in bounds.items() if not _BOUND_TEST[k](value, b)]
    if failed or value != value:  # NaN compares false with everything
        wanted = " and ".join(f"{_BOUND_TEXT[k]} {b:g}" for k, b in bounds.items())
        raise UserError(f"config key '{key}' must be {wanted}, got {value!r}")
    return value


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check `value` against the type `hint`, converting the forgiving cases (1 -> 1.0, "a,b" -> [a, b])."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value in choices and not isinstance(value, bool):
            return value
        shown = ", ".join(str(c) for c in choices)
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
        hint_text = f"; did you mean '{close[0]}'?" if close else ""
        raise UserError(f"config key '{key}' must be one of {shown}; got {value!r}{hint_text}")
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None:
            if type(None) in options:
                return None
            raise UserError(f"config key '{key}' must be set (it cannot be empty)")
        options = [o for o in options if o is not type(None)]
        # A value that already has one of the types keeps it ("auto" stays a string, [a] a list).
        for option in options:
            if typing.get_origin(option) is Literal:
                continue
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
