"""What FSDP and DeepSpeed need from the training loop, kept in one place.

Under DDP every process holds the whole model, so the main process can read the weights and save them. Under
DeepSpeed ZeRO-3 and FSDP each process holds a shard: reading the weights is a collective call that every
process must make (`accelerator.get_state_dict`), and only then may the main process write them. Under DDP the
same call returns the unwrapped model's state dict, so one code path serves all of them (and is tested on CPU).
"""

from __future__ import annotations

from typing import Any

from mmkit.errors import UserError


def deepspeed_requested() -> bool:
    """`accelerate launch --use_deepspeed` (or a DEEPSPEED config file) asked for DeepSpeed."""
    from accelerate.utils import parse_flag_from_env

    return parse_flag_from_env("ACCELERATE_USE_DEEPSPEED")


def is_deepspeed(acc) -> bool:
    from accelerate.utils import DistributedType

    return acc.distributed_type == DistributedType.DEEPSPEED


def zero_stage(acc) -> int | None:
    return acc.state.deepspeed_plugin.zero_stage if is_deepspeed(acc) else None


def is_sharded(acc) -> bool:
    """Parameters are split across processes: no single process can read the whole model by itself."""
    from accelerate.utils import DistributedType

    return acc.distributed_type == DistributedType.FSDP or zero_stage(acc) == 3


def configure_deepspeed(acc, batch_size: int, max_grad_norm: float) -> None:
    """What DeepSpeed takes from its own config rather than from the training loop, filled from mmkit's.

    - `train_micro_batch_size_per_gpu`: accelerate reads it from the DataLoader's `batch_size`, which is None with
      mmkit's batch sampler (prepare raises): set it from `train.batch_size` before anything is prepared.
    - `gradient_clipping`: DeepSpeed clips inside its step and `accelerator.clip_grad_norm_` does nothing, while
      "auto" means 1.0: set it from `train.max_grad_norm` (0: off).
    A DeepSpeed config file that fixes other numbers would train a different run than the mmkit config says."""
    if not is_deepspeed(acc):
        return
    config = acc.state.deepspeed_plugin.deepspeed_config
    for key, value, setting in (
        ("train_micro_batch_size_per_gpu", batch_size, "train.batch_size"),
        ("gradient_clipping", max_grad_norm, "train.max_grad_norm"),
    ):
        configured = config.get(key, "auto")
        if configured not in ("auto", value):
            raise UserError(
                f"the DeepSpeed config sets {key}={configured} but {setting} is {value}: set it to \"auto\" in the "
                f"DeepSpeed config (mmkit fills it from {setting}), or make them equal"
            )
        config[key] = value
    # train_batch_size = micro batch x accumulation x processes; accelerate fills it in when it is "auto".
    if config.get("train_batch_size") not in (None, "auto"):
        config["train_batch_size"] = "auto"


def gathered_state_dict(acc, model) -> dict[str, Any]:
    """The full state dict of a prepared model; call on EVERY process. Under FSDP / ZeRO-3 only the main
    process gets the tensors (the others an empty dict); under DDP or one process every process does."""
    if zero_stage(acc) == 3 and not model.zero_gather_16bit_weights_on_model_save():
        # accelerate would raise a ValueError naming a DeepSpeed option; say which config key fixes it.
        raise UserError(
            "DeepSpeed ZeRO-3 cannot gather the weights to save them: set zero3_save_16bit_model: true in the "
            "accelerate config (deepspeed_config section), as recipes/accelerate/deepspeed_zero3.yaml does"
        )
    return acc.get_state_dict(model)


def gathered_trainable_state(acc, model) -> dict[str, Any]:
    """The trainable weights (LoRA + head, or everything) as full tensors on the CPU; call on EVERY process.
    The main process gets them all (checked), the others may get an empty dict."""
    names = trainable_names(acc.unwrap_model(model))
    state = gathered_state_dict(acc, model)
    if not acc.is_main_process:
        return {}
    missing = sorted(names - set(state))
    if missing:  # a silent gap would save a run that reloads with random weights in those places
        raise RuntimeError(f"the gathered state dict lacks {len(missing)} trainable weights, e.g. {missing[:3]}")
    return {name: state[name].detach().contiguous().cpu() for name in sorted(names)}


def trainable_names(model) -> set[str]:
    return {name for name, param in model.named_parameters() if param.requires_grad}


def generation_kwargs(acc) -> dict[str, Any]:
    """ZeRO-3 and FSDP gather each layer's weights from all processes during the forward pass: every process
    must keep running forward passes until the longest generation in any process is done (`synced_gpus`),
    or the others wait forever. transformers turns it on by itself only when it knows of ZeRO-3
    (zero3_init_flag), so say it."""
    return {"synced_gpus": True} if is_sharded(acc) and acc.num_processes > 1 else {}


def load_trainable_state(acc, model, state: dict[str, Any]) -> None:
    """Put full trainable tensors (e.g. the best checkpoint's) back into a prepared model; call on EVERY process.
    Each process writes the part it holds: ZeRO-3 gathers the parameters, lets the main process write them and
    re-partitions; FSDP shards the full tensors by itself; otherwise the tensors are copied in place."""
    from mmkit.models.lora import load_trainable_state_dict

    unwrapped = acc.unwrap_model(model)
    if zero_stage(acc) == 3:
        import deepspeed
        import torch

        params = [p for _, p in unwrapped.named_parameters() if p.requires_grad]
        with deepspeed.zero.GatheredParameters(params, modifier_rank=0), torch.no_grad():
            if acc.is_main_process:
                load_trainable_state_dict(unwrapped, state)
    elif is_sharded(acc):  # FSDP 1 or 2: the distributed-checkpoint API shards full tensors itself
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        expected = trainable_names(unwrapped)
        if set(state) != expected:
            load_trainable_state_dict(unwrapped, state)  # raises the one-line mismatch error
        set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, strict=False))
    else:
        load_trainable_state_dict(unwrapped, state)


def write_full_weights(model, state_dict: dict[str, Any], path) -> None:
    """`safetensors.torch.save_model` for a gathered state dict: tied weights written once (the names
    `load_model` expects), from the gathered tensors rather than this process's shard."""
    from safetensors.torch import _remove_duplicate_names, save_file

    state = dict(state_dict)
    # Ties are found on the gathered tensors: under ZeRO-3 the model's own parameters are empty partitions.
    for _kept, dropped in _remove_duplicate_names(state).items():
        for name in dropped:
            state.pop(name)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata={"format": "pt"})


# DeepSpeed's own classes in its checkpoint files: it reads them with torch.load(weights_only=False), which would run
# any code a pickle in a foreign checkpoint carries. mmkit reads each file first with the restricted unpickler,
# allowing only tensors, plain containers and these (module, name) pairs.
DEEPSPEED_CHECKPOINT_GLOBALS = (
    ("deepspeed.runtime.fp16.loss_scaler", "LossScaler"),
    ("deepspeed.runtime.zero.config", "ZeroStageEnum"),
    ("deepspeed.utils.tensor_fragment", "fragment_address"),
)


def check_deepspeed_checkpoint(path) -> None:
    """Refuse a DeepSpeed checkpoint (a `pytorch_model/` folder of .pt files) holding anything but plain tensors and
    DeepSpeed's own state classes, before DeepSpeed unpickles it without restriction."""
    import importlib
    import pickle
    from pathlib import Path

    import torch

    files = sorted((Path(path) / "pytorch_model").glob("*.pt"))
    if not files:
        return
    allowed = []
    for module, name in DEEPSPEED_CHECKPOINT_GLOBALS:
        try:
            allowed.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):  # without deepspeed (or in another version) nothing of it is allowed
            pass
    for file in files:
        try:
            with torch.serialization.safe_globals(allowed):
                torch.load(file, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
            first = next((line.strip() for line in str(err).splitlines() if "GLOBAL" in line), " ".join(str(err).split()))
            raise UserError(
                f"train.resume: {file} holds more than tensors and DeepSpeed's own state ({first[:160]}); "
                "DeepSpeed would unpickle it and run what it carries: use a checkpoint mmkit wrote"
            ) from None
