"""Loading checkpoints safely: safetensors only, remote code only when the config asks, one-line errors."""

from __future__ import annotations

import warnings
from typing import Any

from mmkit.config import ModelConfig
from mmkit.errors import UserError

# PEFT 0.21 still calls this transformers 5 deprecation on every get_peft_model; it is not the user's to fix.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def quiet_transformers() -> None:
    """No LOAD REPORT tables (the head is new, on purpose) and no per-file progress bars: mmkit's banner says
    what was loaded."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def pretrained_kwargs(model_cfg: ModelConfig, with_dtype: bool = True, unquantized: tuple[str, ...] = ()) -> dict[str, Any]:
    """Arguments every `from_pretrained` call gets: remote code only when asked, the configured revision;
    `unquantized`: modules a 4-/8-bit load leaves in model.dtype."""
    kwargs: dict[str, Any] = {"trust_remote_code": model_cfg.trust_remote_code}
    if with_dtype:
        import torch

        from mmkit.models.quantization import quantization_kwargs

        kwargs["dtype"] = getattr(torch, model_cfg.dtype)
        kwargs.update(quantization_kwargs(model_cfg, unquantized))  # model.quantization: 4-bit / 8-bit base, loaded on its device
    if model_cfg.revision:
        kwargs["revision"] = model_cfg.revision
    return kwargs


def load_pretrained(
    auto_class, source: str, model_cfg: ModelConfig, what: str = "model", loading_info: bool = False,
    unquantized: tuple[str, ...] = (), **kwargs,
):
    """`auto_class.from_pretrained` with safetensors only and a one-line error for a bad checkpoint.

    `loading_info=True` returns (model, the set of parameter names that were newly initialised)."""
    from safetensors import SafetensorError

    quiet_transformers()
    warn_if_loaded_per_process()
    try:
        result = auto_class.from_pretrained(
            source, use_safetensors=True, output_loading_info=loading_info, **pretrained_kwargs(model_cfg, unquantized=unquantized), **kwargs
        )
    except SafetensorError as err:
        raise UserError(f"the {what} at '{source}' has a weights file that is not readable safetensors ({err}): truncated or corrupt") from None
    except (OSError, ValueError, KeyError) as err:
        raise UserError(loading_error(source, what, err)) from None
    if not loading_info:
        return result
    model, info = result
    return model, set(info["missing_keys"]) | {key[0] for key in info["mismatched_keys"]}


def warn_if_loaded_per_process() -> None:
    """Large checkpoints load once: under ZeRO-3 transformers builds the model inside `deepspeed.zero.Init`
    (each process keeps its partition), under FSDP with fsdp_cpu_ram_efficient_loading only local rank 0 reads
    the weights (the others build on the meta device and get them by broadcast). Both switch on by themselves,
    but only once the Accelerator exists (its DeepSpeed config, the process group): loaded earlier, every
    process holds a full copy in CPU memory (a 7B model in bf16: 14 GB each)."""
    import os

    def flag(name: str) -> bool:
        return os.environ.get(name, "false").lower() in ("1", "true", "yes")

    zero3 = flag("ACCELERATE_USE_DEEPSPEED") and os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3"
    fsdp = flag("ACCELERATE_USE_FSDP") and flag("FSDP_CPU_RAM_EFFICIENT_LOADING")
    if not (zero3 or fsdp):
        return
    from transformers.integrations import is_deepspeed_zero3_enabled, is_fsdp_enabled

    if (zero3 and not is_deepspeed_zero3_enabled()) or (fsdp and not is_fsdp_enabled()):
        warnings.warn(
            "a checkpoint is loaded before the Accelerator exists: every process loads a full copy (create the "
            "Accelerator first, as `mmkit train` does)",
            stacklevel=3,
        )


def load_tokenizer(source: str, model_cfg: ModelConfig, **extra):
    from transformers import AutoTokenizer

    quiet_transformers()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **pretrained_kwargs(model_cfg, with_dtype=False), **extra)
    except ImportError as err:  # e.g. MarianTokenizer without sentencepiece
        raise UserError(f"the tokenizer of '{source}' needs a package that is not installed: {' '.join(str(err).split())[:200]}") from None
    except (OSError, ValueError, KeyError) as err:
        raise UserError(loading_error(source, "tokenizer", err)) from None
    ensure_pad_token(tokenizer)
    return tokenizer


def load_config_of(source: str, model_cfg: ModelConfig):
    """The transformers config of a checkpoint (config.json only, no weights)."""
    from transformers import AutoConfig

    quiet_transformers()
    try:
        return AutoConfig.from_pretrained(source, **pretrained_kwargs(model_cfg, with_dtype=False))
    except (OSError, ValueError, KeyError) as err:
        raise UserError(loading_error(source, "model config", err)) from None


def loading_error(source: str, what: str, err: Exception) -> str:
    text = " ".join(str(err).split())
    if "safetensors" in text.lower():
        return (
            f"{source}: no safetensors weights; mmkit loads only .safetensors (pickled .bin files can run code). "
            "Convert the checkpoint or pick one that ships safetensors"
        )
    if "trust_remote_code" in text:
        return (
            f"{source}: this checkpoint needs its own code (auto_map); if you trust it, set model.trust_remote_code=true "
            "for training, or pass --trust-remote-code to mmkit eval/predict/merge (a run folder cannot switch it on)"
        )
    return f"could not load the {what} from '{source}': {text[:300]}"


def ensure_pad_token(tokenizer) -> None:
    """Decoder-only tokenizers (GPT-2, Llama) often lack a pad token: reuse EOS, which the mask hides."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
