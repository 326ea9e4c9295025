"""4-bit / 8-bit bases through bitsandbytes (QLoRA): `model.quantization: 4bit | 8bit`.

The base's Linear weights are stored quantized and stay frozen; LoRA adapters and the task head train in
`model.dtype` beside them and are all a run saves, so the adapter also loads on an unquantized base.
Everything that can refuse runs in `check_quantization`, while the config is checked (before any file is
written); loading then only adds `from_pretrained` arguments.
"""

from __future__ import annotations

import re
from typing import Any

from mmkit.errors import UserError

INSTALL = "pip install 'mmkit[quantization]'"


def check_quantization(cfg, spec) -> None:
    """Refuse model.quantization where it cannot work: full fine-tuning, models it does not fit, a machine
    without bitsandbytes or without a device bitsandbytes runs on."""
    mode = cfg.model.quantization
    if not mode:
        return
    if cfg.model.init == "scratch":
        raise UserError(
            f"model.quantization={mode} stores pretrained weights in {mode}; model.init=scratch trains random weights "
            "in full: leave model.quantization empty"
        )
    if not cfg.lora.enabled:
        raise UserError(
            f"model.quantization={mode} freezes the base in {mode} and trains LoRA adapters on it; it cannot fine-tune "
            "every weight: set lora.enabled=true, or leave model.quantization empty for full fine-tuning"
        )
    encoder = getattr(spec, "encoder_class", None)
    if encoder is None or not encoder.supports_quantization:
        name = encoder.family if encoder is not None else f"{spec.family.name} ({cfg.task})"
        raise UserError(
            f"model.quantization is not available for {name} models in mmkit: their task head or trained parts sit "
            "inside the quantized model; it works with the image+text families BLIP, LLaVA and the image-text-to-text "
            "models (Qwen2-VL, SmolVLM, ...; task mm_sentiment). Leave "
            "model.quantization empty (model.dtype=bfloat16 halves the memory)"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise UserError(f"model.quantization={mode} needs the bitsandbytes package, which is not installed: {INSTALL}") from None
    from transformers.integrations.bitsandbytes import validate_bnb_backend_availability
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # its own warning would repeat what the error says
    try:
        usable = validate_bnb_backend_availability(raise_exception=False)
    finally:
        logging.set_verbosity(verbosity)
    if not usable:
        import bitsandbytes as bnb

        supported = ", ".join(sorted(getattr(bnb, "supported_torch_devices", ()))) or "none"
        raise UserError(
            f"model.quantization={mode}: the installed bitsandbytes {bnb.__version__} has no backend for this machine "
            f"(it supports: {supported}); run on a CUDA GPU, install a bitsandbytes build for this platform, "
            "or leave model.quantization empty"
        )


def quantization_kwargs(model_cfg, keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """`from_pretrained` arguments for a quantized base: the BitsAndBytesConfig, and a device map that puts
    each process's copy straight onto its own device (bitsandbytes quantizes while the weights load there;
    no full-precision copy of the model is ever built in CPU memory). `keep`: module names left in
    model.dtype (a VLM's projector, which model.train_projector trains in full: 4-bit weights cannot train)."""
    mode = model_cfg.quantization
    if not mode:
        return {}
    import torch
    from accelerate import PartialState
    from transformers import BitsAndBytesConfig

    compute = getattr(torch, model_cfg.dtype)
    # transformers matches a skip entry from the start of a module's name (or as a regex, or a suffix), so each
    # name becomes "at any depth". Setting the list replaces its default one (the LM head): the head is named too.
    skip = {"llm_int8_skip_modules": [rf"(?:.*\.)?{re.escape(name)}" for name in keep] + ["lm_head"]} if keep else {}
    if mode == "4bit":
        # QLoRA's recipe: NF4 storage, double quantization of the scales, matmuls in model.dtype (bf16 on a GPU).
        config = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute, **skip,
        )
    else:
        config = BitsAndBytesConfig(load_in_8bit=True, **skip)
    return {"quantization_config": config, "device_map": {"": PartialState().device}}


def prepare_quantized(model) -> None:
    """PEFT's preparation of a k-bit base for training (norms and other small weights upcast to float32,
    everything frozen). Run on every build and restore alike, so a reloaded run is the trained model."""
    from peft import prepare_model_for_kbit_training

    # Gradient checkpointing is train.gradient_checkpointing's business (the trainer turns it on).
    prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
