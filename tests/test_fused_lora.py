"""LoRA's update summed inside addmm while training on a CPU, and merged into a temporary weight while evaluating
(mmkit/training/fused_lora.py): the same logits and gradients as PEFT's forward, in fp32 and under bf16 autocast,
for BERT's Linear and GPT-2's Conv1D bases; weights unchanged and PEFT's module back on exit; left alone where it
does not apply (DoRA, merged adapters, FSDP/DeepSpeed, GPUs)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from accelerate.utils import DistributedType

from mmkit.training.fused_lora import FusedLoraLinear, fused_lora

CPU_ONE_PROCESS = SimpleNamespace(device=torch.device("cpu"), distributed_type=DistributedType.NO)


def lora_model(path, *, targets, fan_in_fan_out=False, use_dora=False, dropout=0.0):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForTokenClassification

    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_pretrained(path, num_labels=5)
    config = LoraConfig(
        r=4, lora_alpha=8, lora_dropout=dropout, target_modules=targets, fan_in_fan_out=fan_in_fan_out,
        use_dora=use_dora, modules_to_save=["classifier"],
    )
    model = get_peft_model(model, config)
    with torch.no_grad():  # B starts at zero: give the update a value, or there is nothing to compare
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    return model


def logits_and_grads(model, batch, autocast: bool):
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits = model(**batch).logits
    (logits.float().square().mean()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return logits.detach().float(), grads


def batch_for(model, rows: int = 3):
    torch.manual_seed(1)
    ids = torch.randint(5, model.config.vocab_size, (rows, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0  # padding, as batches have
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_fused_lora_gives_peft_logits_and_gradients(tiny_bert, tiny_gpt2, family, autocast):
    if family == "bert":
        model = lora_model(tiny_bert, targets=["query", "key", "value", "dense"])
    else:  # Conv1D bases, weights stored transposed
        model = lora_model(tiny_gpt2, targets=["c_attn", "c_proj", "c_fc"], fan_in_fan_out=True)
    model.train()
    batch = batch_for(model)
    torch.manual_seed(2)
    want_logits, want_grads = logits_and_grads(model, batch, autocast)
    from peft.tuners.lora.layer import Linear

    adapted = [m for m in model.modules() if type(m) is Linear]
    with fused_lora(model, CPU_ONE_PROCESS):
        assert adapted and all(type(m) is FusedLoraLinear for m in adapted)  # every adapted layer
        torch.manual_seed(2)  # the same dropout masks
        logits, grads = logits_and_grads(model, batch, autocast)
    assert not any(type(m) is FusedLoraLinear for m in model.modules())  # PEFT's module again
    tol = dict(rtol=2e-2, atol=2e-2) if autocast else dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits, want_logits, **tol)
    assert grads.keys() == want_grads.keys() and any("lora_A" in n for n in grads)
    for name in grads:  # bf16: the fused sum rounds once where PEFT rounds the product, the scaled and the sum
        error = (grads[name] - want_grads[name]).norm() / want_grads[name].norm()
        assert error <= (5e-2 if autocast else 1e-5), (name, error.item())


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_fused_lora_evaluates_through_a_merged_weight_that_it_never_keeps(tiny_bert, tiny_gpt2, family, monkeypatch):
    if family == "bert":
        model = lora_model(tiny_bert, targets=["query", "key", "value", "dense"])
    else:
        model = lora_model(tiny_gpt2, targets=["c_attn", "c_proj", "c_fc"], fan_in_fan_out=True)
    model.eval()
    many, two = batch_for(model, rows=8), {k: v[:1, :2] for k, v in batch_for(model).items()}
    with torch.inference_mode():
        want_many, want_two = model(**many).logits, model(**two).logits
    weights = {name: value.clone() for name, value in model.state_dict().items()}
    merges = []
    merge = FusedLoraLinear.get_delta_weight
    counted = lambda self, adapter: merges.append(self) or merge(self, adapter)  # noqa: E731
    monkeypatch.setattr(FusedLoraLinear, "get_delta_weight", counted)
    with torch.inference_mode(), fused_lora(model, CPU_ONE_PROCESS):
        layers = [m for m in model.modules() if type(m) is FusedLoraLinear]
        got_many = model(**many).logits  # 88 tokens: every layer is cheaper through the merged weight
        assert len(merges) == len(layers) > 0
        got_two = model(**two).logits  # 2 tokens: cheaper through LoRA's two small matmuls
        assert len(merges) == len(layers)
    torch.testing.assert_close(got_many, want_many, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_two, want_two, rtol=1e-5, atol=1e-6)
    state = model.state_dict()  # the merged weight was a temporary: every weight as it was, bit for bit
    assert state.keys() == weights.keys() and all(torch.equal(state[name], weights[name]) for name in weights)


def test_fused_lora_trains_with_lora_dropout(tiny_bert):
    # The dropout on LoRA's input is PEFT's module, called as PEFT calls it: the same masks from the same seed.
    model = lora_model(tiny_bert, targets=["query", "value"], dropout=0.3)
    model.train()
    batch = batch_for(model)
    torch.manual_seed(3)
    want, _ = logits_and_grads(model, batch, False)
    with fused_lora(model, CPU_ONE_PROCESS):
        torch.manual_seed(3)
        got, _ = logits_and_grads(model, batch, False)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_fused_lora_leaves_alone_what_it_does_not_fuse(tiny_bert):
    dora = lora_model(tiny_bert, targets=["query", "value"], use_dora=True)
    with fused_lora(dora, CPU_ONE_PROCESS):
        assert not any(type(m) is FusedLoraLinear for m in dora.modules())
    plain = lora_model(tiny_bert, targets=["query", "value"])
    for device, kind in (("cpu", DistributedType.FSDP), ("cpu", DistributedType.DEEPSPEED), ("cuda", DistributedType.NO)):
        with fused_lora(plain, SimpleNamespace(device=torch.device(device), distributed_type=kind)):
            assert not any(type(m) is FusedLoraLinear for m in plain.modules()), (device, kind)
    # A merged adapter (the weights already hold the update) goes through PEFT's forward: added once, not twice.
    plain.eval()
    batch = batch_for(plain)
    with torch.no_grad():
        want = plain(**batch).logits
        with fused_lora(plain, CPU_ONE_PROCESS):
            plain.merge_adapter()
            got = plain(**batch).logits
            plain.unmerge_adapter()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
