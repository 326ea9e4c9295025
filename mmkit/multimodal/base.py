"""What a multimodal backbone family is, for image(+text) classification: inputs in, one pooled vector out.

The `mm_sentiment` task owns the head, the data and the metrics; a family only knows how to load its
checkpoint, how to turn (images, texts) into model inputs, which LoRA targets to hit, and how to pool. One
family = one module in `mmkit/multimodal/` registered in `FAMILIES` (mmkit/multimodal/__init__.py).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class FeatureEncoder(nn.Module):
    """A pretrained (or tiny test) backbone that maps one batch to pooled features of size `feature_dim`.

    Subclasses keep the wrapped transformers model(s) as attributes (e.g. `self.model`, or `self.text` and
    `self.vision`), so PEFT sees the usual module names underneath and the head can live beside them.
    """

    family: str = ""
    feature_dim: int

    # --- loading ----------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, model_cfg, source: str | None = None) -> "FeatureEncoder":
        """Load the backbone weights named by the config (or by `source`, a run dir or Hub repo)."""
        raise NotImplementedError

    def load_processor(self, model_cfg, source: str | None = None):
        """The processor(s) that turn raw images and texts into this family's inputs."""
        raise NotImplementedError

    def save_processor(self, processor, folder) -> None:
        """Save the processor(s) into a run dir so `load_processor(cfg, source=run_dir)` reloads them."""
        processor.save_pretrained(folder)

    # --- inputs -----------------------------------------------------------------------------------------
    def preprocess(self, processor, images: list, texts: list[str] | None) -> dict[str, torch.Tensor]:
        """A batch of model inputs for decoded RGB PIL images and texts (None: image-only).

        Raises mmkit.errors.UserError when the inputs cannot be built correctly (e.g. image placeholder
        tokens missing or not matching the image features): a model must never silently ignore the image.
        """
        raise NotImplementedError

    # --- LoRA ---------------------------------------------------------------------------------------------
    def lora_targets(self, towers: list[str]) -> str | list[str]:
        """Target modules for LoRA on the named parts (e.g. ["text", "vision"], ["qformer", "language"]).

        Prefer a regex anchored on the part's module path, so LoRA cannot reach a part it was not aimed at.
        """
        raise NotImplementedError

    def extra_trainable_modules(self, model_cfg) -> list[str]:
        """Module names (besides the head) trained in full and saved with the adapter, e.g. a projector."""
        return []

    # --- forward ------------------------------------------------------------------------------------------
    def forward(self, **batch: Any) -> torch.Tensor:
        """Pooled features, shape (batch, feature_dim)."""
        raise NotImplementedError
