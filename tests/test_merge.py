"""merge_adapter: LoRA folded into the base gives the adapter's logits (1e-4), and the saved merged model
reloads with plain transformers Auto classes to the same logits. BERT and GPT-2 (Conv1D, fan_in_fan_out)
sentiment through mmkit's own model loading and LoRA; a tiny T5 seq2seq through PEFT directly."""

from __future__ import annotations

import pytest
import torch

from mmkit.config import load_config
from mmkit.errors import UserError
from mmkit.hub.merge import merge_adapter

LABELS = ["negative", "neutral", "positive"]
TEXTS = ["the film was really superb", "a dull and broken phone", "ok"]


def _randomize_lora(model, seed: int = 0) -> None:
    """LoRA B starts at zero (a no-op adapter) and a tiny random head gives logits ~0.05: give both values of
    order 1 so the merge has something to fold in and a 1e-4 tolerance is a real test."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name or ("modules_to_save" in name and name.endswith("weight")):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)


def _sentiment_peft(path):
    from mmkit.tasks import build_task

    task = build_task(load_config(None, {"task": "sentiment", "model.name_or_path": str(path), "lora.dropout": 0.0}))
    tokenizer = task.load_processor()
    model = task.spec.build(LABELS, tokenizer)
    _randomize_lora(model)
    return model.eval(), tokenizer


@pytest.mark.parametrize("backbone", ["tiny_bert", "tiny_gpt2"])
def test_merged_sentiment_model_equals_adapter(backbone, request, tmp_path):
    from transformers import AutoModelForSequenceClassification

    peft_model, tokenizer = _sentiment_peft(request.getfixturevalue(backbone))
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        adapter_logits = peft_model(**batch).logits
        with peft_model.disable_adapter():
            base_logits = peft_model(**batch).logits
    assert (adapter_logits - base_logits).abs().max() > 0.1  # the adapter really changes the outputs

    merged = merge_adapter(peft_model)
    assert not any("lora_" in name for name, _ in merged.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(merged(**batch).logits, adapter_logits, atol=1e-4, rtol=0)
    merged.save_pretrained(tmp_path, safe_serialization=True)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert reloaded.config.id2label == dict(enumerate(LABELS))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, adapter_logits, atol=1e-4, rtol=0)


def test_merged_seq2seq_model_equals_adapter(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSeq2SeqLM, T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    config = T5Config(
        vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, dropout_rate=0.0,
    )
    base = T5ForConditionalGeneration(config)
    peft_model = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=8, target_modules=["q", "v", "wo"], task_type="SEQ_2_SEQ_LM", lora_dropout=0.0)
    )
    _randomize_lora(peft_model, seed=1)
    peft_model.eval()
    input_ids = torch.randint(2, 64, (2, 7))
    decoder_input_ids = torch.randint(2, 64, (2, 5))
    with torch.no_grad():
        adapter_logits = peft_model(input_ids=input_ids, decoder_input_ids=decoder_input_ids).logits
        with peft_model.disable_adapter():
            base_logits = peft_model(input_ids=input_ids, decoder_input_ids=decoder_input_ids).logits
        expected = peft_model.generate(input_ids=input_ids, max_new_tokens=4, do_sample=False)
    assert (adapter_logits - base_logits).abs().max() > 0.1

    merged = merge_adapter(peft_model)
    merged.save_pretrained(tmp_path, safe_serialization=True)
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(
            reloaded(input_ids=input_ids, decoder_input_ids=decoder_input_ids).logits, adapter_logits, atol=1e-4, rtol=0
        )
        generated = reloaded.generate(input_ids, max_new_tokens=4, do_sample=False)
    assert torch.equal(generated, expected)


def test_merge_needs_an_adapter(tiny_bert):
    from transformers import AutoModel

    with pytest.raises(UserError, match="no LoRA adapter"):
        merge_adapter(AutoModel.from_pretrained(tiny_bert))
