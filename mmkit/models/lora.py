"""LoRA through PEFT, and the trainable weights a checkpoint holds."""

from __future__ import annotations

import contextlib
import os
import warnings

from mmkit.config import LoraConfig
from mmkit.errors import UserError


def attach_lora(
    model,
    lora: LoraConfig,
    targets: str | list[str],
    fan_in_fan_out: bool,
    head_modules: list[str],
    task_type: str | None,
    new_token_ids: list[int],
    base_id: str,
    revision: str | None,
):
    """Wrap `model` with a LoRA adapter (or, with lora.enabled=false, make every weight trainable).

    The head is listed in `modules_to_save`: it trains in full and is saved with the adapter, so the adapter
    alone reloads to identical logits on a fresh base. `new_token_ids` (tokens added to the tokenizer): their
    embedding rows train and are saved with the adapter (PEFT trainable tokens, tied weights included).
    """
    if not lora.enabled:
        # Full fine-tuning trains what the model trains: parameters its architecture keeps frozen (Marian's
        # sinusoidal position table) stay frozen. Trained, they would be saved, then re-created on loading: the
        # reloaded model would not be the trained one.
        return model
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    # The adapter records the Hub id of its base (not the local folder it happened to load from).
    model.config._name_or_path = base_id
    model.name_or_path = base_id  # what PEFT writes as base_model_name_or_path
    peft_config = PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        fan_in_fan_out=fan_in_fan_out,
        modules_to_save=head_modules or None,
        task_type=task_type,
        revision=revision,
        use_dora=lora.use_dora,
        use_rslora=lora.use_rslora,
        init_lora_weights=True if lora.init == "default" else lora.init,
        **({"trainable_token_indices": list(new_token_ids)} if new_token_ids else {}),
    )
    peft_model = get_peft_model(model, peft_config)
    if lora.init in REWRITES_BASE:
        _keep_initial_adapter(peft_model)
    return peft_model


# Inits that move part of each adapted base weight into the adapter (W = W_res + B0 A0): the adapter alone fits
# only the rewritten base. Saved, it is converted to a plain LoRA of rank 2r that fits the original base.
REWRITES_BASE = ("pissa", "olora")
_INITIAL_ADAPTER = "initial"


def _keep_initial_adapter(peft_model) -> None:
    """Save the adapter as initialised (A0, B0, head), for PEFT's conversion at save time. A temporary folder that
    lives with the model: nothing is written into the run before training starts."""
    import tempfile

    folder = tempfile.TemporaryDirectory(prefix="mmkit-lora-init-")
    config = peft_model.peft_config["default"]
    init, config.init_lora_weights = config.init_lora_weights, True  # what the initial adapter must say (PEFT docs)
    try:
        peft_model.save_pretrained(f"{folder.name}/{_INITIAL_ADAPTER}", save_embedding_layers=False)
    finally:
        config.init_lora_weights = init
    peft_model._mmkit_initial_adapter = folder


def save_adapter(model, folder, state_dict: dict | None = None) -> None:
    """The adapter + head as PEFT files, loadable on the original base model. `state_dict`: the full weights
    gathered from every process (under FSDP / ZeRO-3 the model itself holds shards)."""
    # PEFT's save_embedding_layers="auto" looks the base up on the Hub (offline: two warnings) to learn whether
    # the vocabulary grew; mmkit knows it: the model has trainable-token rows exactly when tokens were added.
    # Then the embedding matrices are saved too: a reload on the resized base needs them to embed the new
    # tokens as trained (tests/test_translation.py checks the reloaded row).
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

    new_tokens = any(isinstance(module, TrainableTokensLayer) for module in model.modules())
    initial = getattr(model, "_mmkit_initial_adapter", None)
    conversion = {"path_initial_model_for_weight_conversion": f"{initial.name}/{_INITIAL_ADAPTER}"} if initial else {}
    with warnings.catch_warnings(), _no_hub_lookup() if initial else contextlib.nullcontext():
        # The conversion loads the initial adapter beside the trained one, and PEFT warns that PiSSA/OLoRA should
        # be converted: this is that conversion.
        warnings.filterwarnings("ignore", message="(PiSSA|OLoRA) changes the base weights")
        model.save_pretrained(
            folder, safe_serialization=True, save_embedding_layers=new_tokens, state_dict=state_dict, **conversion
        )
    if initial:
        _restore_non_lora_weights(model, folder)


@contextlib.contextmanager
def _no_hub_lookup():
    """PEFT 0.21's conversion reads the initial adapter with save_embedding_layers="auto" (no way to pass False),
    which asks the Hub whether the base's vocabulary grew; offline that is a warning at every save. Offline mode
    skips the question; the answer is known (trainable-token rows are saved as such)."""
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Could not find a config file")
            yield
    finally:
        if previous is None:
            del os.environ["HF_HUB_OFFLINE"]
        else:
            os.environ["HF_HUB_OFFLINE"] = previous


def _restore_non_lora_weights(model, folder) -> None:
    """PEFT's PiSSA/OLoRA conversion (0.21) writes back only lora_A/lora_B: the head (modules_to_save) and any
    trainable-token rows would be lost, so they are put back from the model's own adapter state."""
    from pathlib import Path

    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import load_file, save_file

    path = Path(folder) / "adapter_model.safetensors"
    converted = load_file(str(path))
    for key, value in get_peft_model_state_dict(model, save_embedding_layers=False).items():
        if "lora_A" not in key and "lora_B" not in key:
            converted.setdefault(key, value.detach().clone().contiguous().cpu())
    save_file(converted, str(path), metadata={"format": "pt"})


def describe_lora(model, lora: LoraConfig) -> str:
    """One line for the start banner: the method, its settings and the modules it adapts."""
    if not lora.enabled:
        return "full fine-tuning"
    peft_cfg = next(iter(model.peft_config.values()))
    targets = peft_cfg.target_modules
    targets = ", ".join(sorted(targets)) if isinstance(targets, (set, list)) else targets
    name = "DoRA" if lora.use_dora else "LoRA"
    extras = [text for flag, text in ((lora.use_rslora, "rsLoRA scaling"), (lora.init != "default", f"init {lora.init}")) if flag]
    return f"{name} r={lora.r} alpha={lora.alpha} dropout={lora.dropout}{''.join(', ' + e for e in extras)} on {targets}"


def parameter_counts(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = total = 0
    for param in model.parameters():
        size = getattr(param, "ds_numel", None) or param.numel()  # ZeRO-3 leaves each process an empty partition
        total += size
        if param.requires_grad:
            trainable += size
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
