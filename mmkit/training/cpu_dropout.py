"""Dropout while training on a CPU, without torch's slow mask.

torch draws a CPU dropout mask with `bernoulli_`, which takes MKL's vectorised generator on Intel CPUs only; on
every other CPU (AMD EPYC, ARM) it is a serial loop of one mt19937 draw per element (the vendor check is in
aten/src/ATen/native/cpu/DistributionKernels.cpp). Measured on a 2-core AMD EPYC (Zen 5), torch 2.13: 5.5 ns per
element forward and backward, and 31% of a MiniLM LoRA step on SST-2 (88 ms with dropout, 61 ms without).

`fast_dropout` draws the same Bernoulli(1 - p) mask from the same generator (torch's default CPU generator, so
`torch.manual_seed`, checkpointed RNG states and exact resume work as before), cutting each 64-bit draw into
four 16-bit numbers: 1.3 ns per element on that machine, and the same masks on every CPU. p is taken to the
nearest 1/65536 (0.1 becomes 0.100006) and kept elements are scaled by the inverse of that.

`cpu_dropout(model)` puts it in place for a training run: every `nn.Dropout` of the model, and the attention
probabilities of models that attend through transformers' "sdpa" function (BERT, RoBERTa, GPT-2, T5 ...), which
SDPA would drop inside its kernel with the slow mask. That attention is SDPA's math kernel written out: scores and
softmax in fp32 as SDPA computes them on a CPU, with the keys padded to a multiple of 16, because torch's CPU
softmax runs scalar code over a last dimension that is not (0.51 ms at 14 keys, 0.05 ms at 16, for 32 x 12 rows).
Evaluation, GPUs and attention without dropout keep torch's own kernels.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

_SPAN = 1 << 16  # 16 random bits per mask element
SOFTMAX_WIDTH = 16  # AVX-512 holds 16 fp32 lanes; torch's CPU softmax is vectorised over whole multiples only


def fast_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout of `x` (on a CPU) with a mask from the default CPU generator."""
    dropped = round(p * _SPAN)
    n = x.numel()
    # random_(-2**63, None) is the full 64-bit range: all four 16-bit slices of a draw are uniform.
    bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), None).view(torch.int16)[:n].view(x.shape)
    # bool -> float conversion runs scalar code; through uint8 it is vectorised (0.68 vs 0.08 ns per element).
    keep = (bits >= dropped - _SPAN // 2).view(torch.uint8).to(x.dtype)
    return x * keep.mul_(_SPAN / (_SPAN - dropped))


class FastDropout(nn.Dropout):
    """`nn.Dropout` with the mask of `fast_dropout` while training on a CPU; torch's own everywhere else."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and 0 < self.p < 1 and x.device.type == "cpu" and x.is_floating_point() and x.numel():
            return fast_dropout(x, self.p)
        return super().forward(x)


def attention_with_dropout(query, key, value, attention_mask, dropout: float, scaling: float, is_causal: bool):
    """softmax(q k^T * scaling + mask) v with fast dropout on the probabilities, for (batch, heads, length, dim)
    inputs as SDPA takes them; the scores and softmax in fp32, the probabilities in v's dtype for the product
    with v (bf16 under autocast, as a flash kernel does)."""
    q_len, kv_len = query.shape[-2], key.shape[-2]
    pad = -kv_len % SOFTMAX_WIDTH
    allowed = attention_mask if attention_mask is not None and attention_mask.dtype == torch.bool else None
    if is_causal:
        allowed = torch.ones(q_len, kv_len, dtype=torch.bool, device=query.device).tril()
    with torch.autocast(query.device.type, enabled=False):
        if pad:  # zero keys and values, masked out below
            key, value = (nn.functional.pad(t, (0, 0, 0, pad)) for t in (key, value))
            allowed = nn.functional.pad(
                allowed if allowed is not None else torch.ones(1, 1, 1, kv_len, dtype=torch.bool, device=query.device),
                (0, pad),
                value=False,
            )
        scores = torch.matmul(query.float(), key.float().transpose(-1, -2)).mul_(scaling)
        if attention_mask is not None and attention_mask.dtype != torch.bool:  # an additive mask (or position bias)
            scores = scores + nn.functional.pad(attention_mask.float(), (0, pad))
        if allowed is not None:
            scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        probs = torch.softmax(scores, dim=-1).to(value.dtype)
        return torch.matmul(fast_dropout(probs, dropout), value)


def _sdpa_with_cpu_dropout(original):
    """transformers' "sdpa" attention function, computed by `attention_with_dropout` where it would drop attention
    probabilities on a CPU; every other call goes to `original` unchanged."""

    def attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, is_causal=None, **kwargs):
        if not dropout or query.device.type != "cpu" or kwargs.get("softcap") is not None or kwargs.get("output_attentions"):
            return original(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs)
        from transformers.integrations.sdpa_attention import create_position_bias_mask, repeat_kv

        groups = getattr(module, "num_key_value_groups", 1)
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
        q_len = query.shape[2]
        # As `sdpa_attention_forward` decides it: causal only without a mask, over the first q_len keys.
        is_causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
        is_causal = q_len > 1 and attention_mask is None and is_causal
        if is_causal and key.shape[2] > q_len:
            key, value = key[:, :, :q_len], value[:, :, :q_len]
        position_bias = kwargs.get("position_bias")
        if position_bias is not None:
            attention_mask = create_position_bias_mask(position_bias, attention_mask, is_causal, query, key)
            is_causal = False
        scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
        output = attention_with_dropout(query, key, value, attention_mask, dropout, scaling, is_causal)
        return output.transpose(1, 2).contiguous(), None

    return attention


@contextlib.contextmanager
def cpu_dropout(model: nn.Module, device: torch.device):
    """While training `model` on a CPU: its `nn.Dropout` modules, and the attention dropout of transformers'
    "sdpa" attention, use `fast_dropout`. Everything is put back on exit."""
    if device.type != "cpu":
        yield
        return
    from transformers import AttentionInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    swapped = [module for module in model.modules() if type(module) is nn.Dropout]
    original = ALL_ATTENTION_FUNCTIONS["sdpa"]
    for module in swapped:
        module.__class__ = FastDropout
    AttentionInterface.register("sdpa", _sdpa_with_cpu_dropout(original))
    try:
        yield
    finally:
        AttentionInterface.register("sdpa", original)
        for module in swapped:
            module.__class__ = nn.Dropout
