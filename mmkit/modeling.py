"""Loading checkpoints safely, attaching LoRA, and finding the head that must be trained and saved."""

from __future__ import annotations

import warnings
from typing import Any

from mmkit.backbones import Family, base_model_id, family_of, lora_targets
from mmkit.config import Config, ModelConfig
from mmkit.errors import UserError

DTYPES = ("float32", "bfloat16", "float16")

# PEFT 0.21 still calls this transformers 5 deprecation on every get_peft_model; it is not the user's to fix.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def pretrained_kwargs(model_cfg: ModelConfig, source: str, local: bool = False) -> dict[str, Any]:
    """Arguments every `from_pretrained` call gets: safetensors only, remote code only when asked."""
    import torch

    if model_cfg.dtype not in DTYPES:
        raise UserError(f"model.dtype must be one of {', '.join(DTYPES)}, got {model_cfg.dtype!r}")
    kwargs: dict[str, Any] = {
        "trust_remote_code": model_cfg.trust_remote_code,
        "dtype": getattr(torch, model_cfg.dtype),
    }
    if not local and model_cfg.revision:
        kwargs["revision"] = model_cfg.revision
    return kwargs


def load_pretrained(auto_class, source: str, model_cfg: ModelConfig, what: str = "model", **kwargs):
    """`auto_class.from_pretrained` with safetensors only and a one-line error for a bad checkpoint."""
    import transformers

    transformers.logging.set_verbosity_error()  # the LOAD REPORT table: the head is new, on purpose
    try:
        return auto_class.from_pretrained(
            source, use_safetensors=True, **pretrained_kwargs(model_cfg, source), **kwargs
        )
    except (OSError, ValueError, KeyError) as err:
        raise UserError(_loading_error(source, what, err)) from None


def load_tokenizer(source: str, model_cfg: ModelConfig, **extra):
    import transformers
    from transformers import AutoTokenizer

    transformers.logging.set_verbosity_error()
    kwargs = pretrained_kwargs(model_cfg, source)
    kwargs.pop("dtype")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs, **extra)
    except (OSError, ValueError, KeyError) as err:
        raise UserError(_loading_error(source, "tokenizer", err)) from None
    ensure_pad_token(tokenizer)
    return tokenizer


def _loading_error(source: str, what: str, err: Exception) -> str:
    text = " ".join(str(err).split())
    if "safetensors" in text.lower():
        return (
            f"{source}: no safetensors weights; mmkit loads only .safetensors (pickled .bin files can run code). "
            "Convert the checkpoint or pick one that ships safetensors"
        )
    if "trust_remote_code" in text:
        return f"{source}: this checkpoint needs its own code; set model.trust_remote_code=true if you trust it"
    return f"could not load the {what} from '{source}': {text[:300]}"


def ensure_pad_token(tokenizer) -> None:
    """Decoder-only tokenizers (GPT-2, Llama) often lack a pad token: reuse EOS, which the mask hides."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token


def model_family(model) -> Family:
    if getattr(model, "family_name", None):  # image+text classifiers name their family
        return Family(model.family_name, (), (), kind="vision-language")
    return family_of(getattr(model.config, "model_type", ""))


def head_modules_of(model) -> list[str]:
    """Top-level children that hold parameters and are not the pretrained backbone: the task head.

    `BertForSequenceClassification` -> ["classifier"], `GPT2ForSequenceClassification` -> ["score"]. The
    names must not be the end of another module's name: PEFT's `modules_to_save` matches by suffix.
    """
    backbone = getattr(model, "base_model_prefix", "")
    heads = [
        name
        for name, child in model.named_children()
        if name != backbone and any(True for _ in child.parameters())
    ]
    all_names = [name for name, _ in model.named_modules()]
    for head in heads:
        clashes = [n for n in all_names if n.endswith(head) and n != head and not n.startswith(head + ".")]
        if clashes:
            raise RuntimeError(f"head module name {head!r} is also the end of {clashes[:3]}: it would not be saved alone")
    return heads


def attach_lora(model, cfg: Config, head_modules: list[str], task_type: str | None, new_token_ids: list[int] | None = None):
    """Wrap `model` with a LoRA adapter (or, with lora.enabled=false, make every weight trainable).

    The head is listed in `modules_to_save`: it trains in full and is saved with the adapter, so the
    adapter alone reloads to identical logits on a fresh base. `new_token_ids` (tokens added to the tokenizer):
    their embedding rows train and are saved with the adapter (PEFT trainable tokens, tied weights included).
    """
    if not cfg.lora.enabled:
        for param in model.parameters():
            param.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    # Image+text models aim LoRA at the towers the config names (a regex that cannot reach the others).
    configured = cfg.lora.target_modules
    if getattr(model, "lora_targets_for", None) is not None and configured == "auto":
        configured = model.lora_targets_for(cfg.lora.towers)
    targets, fan_in_fan_out = lora_targets(model, model_family(model), configured)
    # The adapter records the Hub id of its base (not the local folder it happened to load from).
    model.config._name_or_path = base_model_id(cfg.model)
    model.name_or_path = model.config._name_or_path  # what PEFT writes as base_model_name_or_path
    peft_config = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=targets,
        fan_in_fan_out=fan_in_fan_out,
        modules_to_save=head_modules or None,
        task_type=task_type,
        revision=cfg.model.revision,
        **({"trainable_token_indices": list(new_token_ids)} if new_token_ids else {}),
    )
    return get_peft_model(model, peft_config)


def parameter_counts(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = total = 0
    for param in model.parameters():
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
    return trainable, total


def trainable_state_dict(model) -> dict:
    """The trainable parameters only (LoRA weights + head; everything for full fine-tuning)."""
    return {name: param.detach() for name, param in model.named_parameters() if param.requires_grad}


def load_trainable_state_dict(model, state: dict) -> None:
    expected = {name for name, param in model.named_parameters() if param.requires_grad}
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise UserError(
            f"checkpoint does not fit this model (missing {missing[:3]}, unexpected {extra[:3]}); "
            "resume with the same config that wrote it"
        )
    params = dict(model.named_parameters())
    import torch

    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)
