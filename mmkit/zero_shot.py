"""CLIP zero-shot classification: each row's image (+ text) against one prompt per label, no training.

The baseline a fine-tune should beat: `mmkit eval --zero-shot openai/clip-vit-base-patch32 --data test.jsonl
--labels negative,neutral,positive` writes the same metrics.json and plots as evaluating a trained run.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mmkit.errors import UserError

DEFAULT_PROMPT = "a photo that feels {label}"


class ZeroShotClip(nn.Module):
    """Logits = CLIP's scaled cosine between the row (image, or image and text averaged) and each label prompt."""

    def __init__(self, model, prompt_batch, use_text: bool):
        super().__init__()
        self.model = model
        self.use_text = use_text
        with torch.inference_mode():
            prompts = model.get_text_features(**prompt_batch).pooler_output
        self.register_buffer("prompts", nn.functional.normalize(prompts, dim=-1).clone())

    def forward(self, input_ids, attention_mask, pixel_values, labels=None, **_):
        from transformers.modeling_outputs import SequenceClassifierOutput

        query = nn.functional.normalize(self.model.get_image_features(pixel_values=pixel_values).pooler_output, dim=-1)
        if self.use_text:  # the row's text is evidence too: average the two unit vectors
            text = self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output
            query = nn.functional.normalize(query + nn.functional.normalize(text, dim=-1), dim=-1)
        return SequenceClassifierOutput(logits=self.model.logit_scale.exp() * query @ self.prompts.T)


def zero_shot_eval(
    model_id: str, data: str, labels: list[str] | None, prompt: str = DEFAULT_PROMPT, use_text: bool = True,
    split: str = "test", output: str | Path | None = None, batch_size: int = 32, overrides: dict | None = None,
):
    """Evaluate a CLIP checkpoint zero-shot on an image(+text) file; returns (task, result, facts, metrics path)."""
    from transformers import CLIPModel

    from mmkit.config import load_config
    from mmkit.models.loading import load_pretrained
    from mmkit.runs.inference import evaluate_on
    from mmkit.tasks import build_task

    if "{label}" not in prompt:
        raise UserError(f"--prompt {prompt!r} must contain {{label}}, where each label's name goes")
    settings = {"task": "mm_sentiment", "model.name_or_path": model_id, "data.labels": labels, "data.max_length": None}
    task = build_task(load_config(None, {**settings, **(overrides or {})}))
    if task.spec.family.name != "clip":
        raise UserError(f"{model_id}: zero-shot scoring needs a CLIP checkpoint (image and text in one embedding space)")
    processor = task.load_processor()

    def build_model(names: list[str]):
        clip = load_pretrained(CLIPModel, task.spec.source, task.cfg.model).eval()
        prompts = processor.tokenizer([prompt.format(label=name) for name in names], padding=True, return_tensors="pt")
        return ZeroShotClip(clip, dict(prompts), use_text)

    facts = {"zero_shot": True, "model": model_id, "prompt": prompt, "inputs": "image+text" if use_text else "image"}
    return (task, *evaluate_on(task, build_model, processor, labels, data, split, Path(output or "eval-zero-shot"), batch_size, facts))
