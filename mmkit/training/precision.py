"""Which mixed precision a run computes in: `train.mixed_precision=auto` picks bf16 where the hardware has bf16
units, and full fp32 where bf16 would be emulated (slower than fp32).

Under bf16 autocast the matmuls run in bf16 while the weights (LoRA, the head, the optimizer's state) stay
fp32: on SST-2 with MiniLM on a 2-core AVX-512 BF16 CPU (benchmarks/sentiment_sst2.py), a LoRA epoch over 20k
rows trained in 119 s at accuracy 0.871; on 2k rows fp32 took 1.6x as long (18.9 s against 11.6 s).
"""

from __future__ import annotations


def native_bf16() -> str | None:
    """What computes bf16 natively here (for the banner), or None: a CUDA GPU with bf16, or a CPU with
    AVX-512 BF16 or AMX. Detected, never assumed: an AVX2 CPU would emulate bf16 and run slower than fp32."""
    import torch

    if torch.cuda.is_available():
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return f"bf16 on {torch.cuda.get_device_name()}"
        return None
    if hasattr(torch, "xpu") and torch.xpu.is_available():
        return None  # XPU users pick their precision themselves
    capabilities = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    for flag, name in (("amx_bf16", "AMX BF16"), ("avx512_bf16", "AVX-512 BF16")):
        if capabilities.get(flag):
            return f"{name} on this CPU"
    return None


def resolve_mixed_precision(setting: str, family=None) -> tuple[str, str]:
    """(what Accelerate gets: no | bf16 | fp16, why) for the config's train.mixed_precision and the model's
    family (`mmkit.models.families.Family`; an explicit bf16/fp16 on a family that breaks in it is refused when
    the model spec is built)."""
    if setting != "auto":
        return setting, f"train.mixed_precision={setting}"
    if family is not None and family.breaks_in_half_precision:
        return "no", f"auto: {family.name} models fail under bf16 autocast"
    reason = native_bf16()
    if reason:
        return "bf16", f"auto: {reason}"
    return "no", "auto: no native bf16 here"


def attention_kernels(accelerator):
    """The scaled-dot-product attention kernels to run under. On a CPU in bf16, the plain (math) kernel: with the
    fused flash kernel a MiniLM LoRA step (batch 32) took 2x as long at 14 tokens and 1.4x at 64 (its backward),
    and evaluation was no faster. In fp32 flash was the faster one at 64 tokens, so fp32 keeps PyTorch's choice.
    (Attention that drops probabilities while training on a CPU is computed by `mmkit.training.cpu_dropout`.)"""
    import contextlib

    if accelerator.device.type != "cpu" or accelerator.mixed_precision != "bf16":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])
