"""Dropout on a CPU without torch's serial mask (mmkit/training/cpu_dropout.py): the masks are Bernoulli(1 - p),
scaled as inverted dropout, reproducible from the seed; the attention it computes is SDPA's; inside a model it
replaces every torch mask and leaves the model as it was."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from mmkit.training.cpu_dropout import FastDropout, attention_with_dropout, cpu_dropout, fast_dropout

CPU = torch.device("cpu")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_fast_dropout_keeps_each_element_with_probability_one_minus_p(p, dtype):
    torch.manual_seed(0)
    n = 1_000_003  # not a multiple of four: the last 64-bit draw is only partly used
    y = fast_dropout(torch.ones(n, dtype=dtype), p)
    dropped = round(p * 65536) / 65536
    scale = torch.tensor(1 / (1 - dropped), dtype=dtype).item()  # as rounded in the tensor's dtype
    kept = y != 0
    assert set(torch.unique(y).tolist()) == {0.0, scale}
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(kept.float().mean().item() - (1 - p)) < 5 * sigma
    # The four 16-bit slices of one 64-bit draw are independent: neighbours are both dropped with probability p^2.
    pairs = (~kept[:-1] & ~kept[1:]).float().mean().item()
    assert abs(pairs - p * p) < 5 * math.sqrt(p * p * (1 - p * p) / n)


def test_fast_dropout_is_unbiased_and_its_gradient_is_the_mask():
    torch.manual_seed(1)
    x = torch.randn(400, 300, requires_grad=True)
    y = fast_dropout(x, 0.5)
    y.backward(torch.ones_like(y))
    kept = y.detach() != 0
    assert torch.equal(x.grad, kept * 2.0)  # d(x * mask / (1 - p))/dx
    assert torch.equal(y.detach()[kept], x.detach()[kept] * 2.0)
    assert torch.allclose(fast_dropout(torch.ones(2_000_000), 0.2).mean(), torch.tensor(1.0), atol=2e-3)


def test_fast_dropout_masks_follow_the_seed_and_differ_between_calls():
    torch.manual_seed(7)
    a, b = fast_dropout(torch.ones(10_000), 0.3), fast_dropout(torch.ones(10_000), 0.3)
    torch.manual_seed(7)
    assert torch.equal(fast_dropout(torch.ones(10_000), 0.3), a)
    assert not torch.equal(a, b)


def test_fast_dropout_module_is_torch_dropout_outside_cpu_training():
    layer = FastDropout(0.5)
    x = torch.randn(64, 64)
    assert torch.equal(layer.eval()(x), x)
    assert torch.equal(FastDropout(0.0).train()(x), x)
    torch.manual_seed(3)
    expected = fast_dropout(x, 0.5)
    torch.manual_seed(3)
    assert torch.equal(layer.train()(x), expected)


def _sdpa(q, k, v, mask, causal):
    return nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)


@pytest.mark.parametrize("kv_len", [14, 16, 33])
@pytest.mark.parametrize("mask_kind", ["padding", "causal", "additive", "none", "cross"])
def test_attention_without_dropping_is_sdpa(kv_len, mask_kind):
    """Scores and softmax in fp32 over keys padded to a multiple of 16: the same outputs and gradients as SDPA."""
    torch.manual_seed(0)
    batch, heads, dim = 3, 2, 8
    q_len = 5 if mask_kind == "cross" else kv_len
    q, k, v = (torch.randn(batch, heads, n, dim, dtype=torch.float64, requires_grad=True) for n in (q_len, kv_len, kv_len))
    lengths = torch.tensor([kv_len, kv_len - 3, 2])
    padding = (torch.arange(kv_len)[None, :] < lengths[:, None])[:, None, None, :]  # (batch, 1, 1, kv)
    mask = {
        "padding": padding.expand(batch, 1, q_len, kv_len),
        "cross": padding,
        "additive": torch.randn(batch, 1, q_len, kv_len, dtype=torch.float64),
        "causal": None,
        "none": None,
    }[mask_kind]
    causal = mask_kind == "causal"
    expected = _sdpa(q, k, v, mask, causal)
    grads = torch.autograd.grad(expected.sum(), (q, k, v))
    got = attention_with_dropout(q.float(), k.float(), v.float(), mask, 0.0, dim**-0.5, causal)
    got_grads = torch.autograd.grad(got.sum(), (q, k, v))
    assert got.dtype == torch.float32
    assert torch.allclose(got.double(), expected, atol=1e-5)
    for g, e in zip(got_grads, grads):
        assert torch.allclose(g, e, atol=1e-4)


def test_attention_drops_probabilities_and_never_attends_a_masked_key():
    """With uniform attention and one-hot values, each output entry is one key's probability: 0 for masked keys
    even after dropout, else 0 (dropped) or 1/n_allowed/(1 - p)."""
    torch.manual_seed(0)
    batch, heads, n = 64, 4, 20
    q = torch.zeros(batch, heads, n, 8)
    k = torch.zeros(batch, heads, n, 8)
    v = torch.eye(n).expand(batch, heads, n, n)
    allowed = 12
    mask = (torch.arange(n) < allowed).expand(batch, 1, n, n)
    out = attention_with_dropout(q, k, v, mask, 0.25, 1.0, False)
    assert torch.all(out[..., allowed:] == 0)
    visible = out[..., :allowed]
    scale = 1 / allowed / (1 - round(0.25 * 65536) / 65536)
    assert torch.allclose(visible[visible != 0], torch.tensor(scale))
    assert abs((visible != 0).float().mean().item() - 0.75) < 0.01


class _OpNames(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func.__name__)
        return func(*args, **(kwargs or {}))


def _tiny_models():
    from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    bert = BertForSequenceClassification(
        BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=2)
    )
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=32, n_layer=2, n_head=2, n_positions=64))
    t5 = T5ForConditionalGeneration(
        T5Config(vocab_size=50, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2, decoder_start_token_id=0)
    )
    return {"bert": bert, "gpt2": gpt2, "t5": t5}


def _inputs(name: str) -> dict:
    ids = torch.randint(1, 50, (4, 13), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    mask[3, 4:] = 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    if name == "t5":
        inputs["decoder_input_ids"] = ids[:, :7]
    return inputs


@pytest.mark.parametrize("name", ["bert", "gpt2", "t5"])
def test_a_model_under_cpu_dropout_draws_no_torch_mask_and_is_put_back(name):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    model = _tiny_models()[name].train()
    sdpa = ALL_ATTENTION_FUNCTIONS["sdpa"]

    def ops():
        with _OpNames() as seen:
            model(**_inputs(name)).logits.sum().backward()
        return seen.names

    assert "bernoulli_.float" in ops()  # torch's own dropout, the slow mask on a non-Intel CPU
    with cpu_dropout(model, CPU):
        assert all(type(m) is FastDropout for m in model.modules() if isinstance(m, nn.Dropout))
        used = ops()
    assert not any(op.startswith("bernoulli") for op in used) and "random_.from" in used
    assert all(type(m) is nn.Dropout for m in model.modules() if isinstance(m, nn.Dropout))
    assert ALL_ATTENTION_FUNCTIONS["sdpa"] is sdpa
    with pytest.raises(RuntimeError), cpu_dropout(model, CPU):
        raise RuntimeError("a failing step")
    assert ALL_ATTENTION_FUNCTIONS["sdpa"] is sdpa and all(type(m) is nn.Dropout for m in model.modules() if isinstance(m, nn.Dropout))


@pytest.mark.parametrize("name", ["bert", "gpt2", "t5"])
def test_a_model_under_cpu_dropout_computes_what_it_computes_without(name):
    """Dropout rates too small to drop anything: the training forward under cpu_dropout (its attention with padding
    and causal masks, T5's position bias and cross-attention) gives the evaluation forward's logits."""
    model = _tiny_models()[name]
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 1e-9
        elif isinstance(getattr(module, "dropout", None), float):  # T5's attention keeps its rate as a float
            module.dropout = 1e-9
    inputs = _inputs(name)
    expected = model.eval()(**inputs).logits
    with cpu_dropout(model.train(), CPU):
        got = model(**inputs).logits
    if name == "gpt2":  # compare the real tokens: a padded position's output is never used
        real = inputs["attention_mask"].bool()
        got, expected = got[real], expected[real]
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
