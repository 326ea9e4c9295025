"""What an image+text backbone family is: inputs in, one pooled feature vector out.

The `mm_sentiment` task owns the head, the data and the metrics; a family only knows how to load its
checkpoint, how to turn (images, texts) into model inputs, which LoRA targets to hit, and how to pool. One
family = one module in `mmkit/multimodal/` registered in `FAMILIES` (mmkit/multimodal/__init__.py).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mmkit.errors import UserError
from mmkit.models.families import regex_under  # noqa: F401 - the families build their LoRA regexes with it


class FeatureEncoder(nn.Module):
    """A pretrained (or tiny test) backbone that maps one batch to pooled features of size `feature_dim`.

    Subclasses keep the wrapped transformers model(s) as attributes (`self.model`, or `self.text` and
    `self.vision`), so PEFT sees the usual module names underneath and the head can live beside them.
    `load_processor` and `preprocess` are classmethods: the collator calls them in DataLoader workers, which
    must not receive a copy of the model.
    """

    family: str = ""
    towers: tuple[str, ...] = ()  # the parts `lora.towers` may name
    default_towers: tuple[str, ...] = ()
    # model.quantization allowed: shown to train and reload on a 4-bit base (tests/test_blip.py, tests/test_vlm.py)
    supports_quantization: bool = False
    feature_dim: int

    # --- loading ----------------------------------------------------------------------------------------
    @classmethod
    def load(cls, model_cfg, source: str) -> "FeatureEncoder":
        """Load the backbone weights of the checkpoint at `source` (a Hub id or a folder)."""
        raise NotImplementedError

    @classmethod
    def load_processor(cls, model_cfg, source: str, run=None):
        """The processor that turns raw images and texts into this family's inputs (it has `save_pretrained`):
        the checkpoint's at `source`, or the one a finished run saved in the folder `run`."""
        from mmkit.models.multimodal import load_auto_processor

        return load_auto_processor(str(run or source), model_cfg)

    @classmethod
    def check_towers(cls, towers: list[str] | None) -> list[str]:
        """The parts LoRA adapts (lora.towers, or the family's default); an unknown part is a UserError."""
        chosen = list(towers) if towers else list(cls.default_towers)
        unknown = [t for t in chosen if t not in cls.towers]
        if unknown:
            raise UserError(
                f"lora.towers {unknown} are not parts of a {cls.family} model; choose from: {', '.join(cls.towers)}"
            )
        return chosen

    @classmethod
    def text_tokenizer(cls, processor):
        return processor.tokenizer

    @classmethod
    def max_text_tokens(cls, processor, model_cfg) -> int:
        """How many tokens of a row's text the model reads (the rest would be cut off)."""
        limit = getattr(cls.text_tokenizer(processor), "model_max_length", 512) or 512
        return min(int(limit), 512)

    # --- inputs -----------------------------------------------------------------------------------------
    @classmethod
    def preprocess(cls, processor, images: list, texts: list[str], model_cfg) -> dict[str, torch.Tensor]:
        """A batch of model inputs for decoded RGB PIL images and their texts.

        Raises UserError when the inputs cannot be built correctly (e.g. image placeholder tokens missing or
        not matching the image features): a model must never silently ignore the image.
        """
        raise NotImplementedError

    @classmethod
    def image_notes(cls, processor, images: list) -> list[str]:
        """Banner notes on how the training images (references: paths or Hub records) become tokens."""
        return []

    @classmethod
    def training_note(cls, towers: list[str], model_cfg, lora_enabled: bool) -> str | None:
        """A banner note saying which parts train and which stay frozen (None: the LoRA line says it all)."""
        return None

    # --- LoRA ---------------------------------------------------------------------------------------------
    def lora_regex(self, towers: list[str]) -> str:
        """One regex (matched against full module names under the classifier, `encoder.` first) for the
        attention projections of the named towers only."""
        raise NotImplementedError

    def extra_trainable_modules(self, model_cfg) -> list[str]:
        """Module names (besides the head) trained in full and saved with the adapter, e.g. a projector."""
        return []

    # --- forward ------------------------------------------------------------------------------------------
    def forward(self, **batch: Any) -> torch.Tensor:
        """Pooled features, shape (batch, feature_dim)."""
        raise NotImplementedError


def last_token_states(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The hidden state of each row's last real token (right padding): what a decoder has read it all into."""
    last = attention_mask.long().cumsum(-1).argmax(-1)  # index of the last 1 in each row
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def check_placeholders(input_ids: torch.Tensor, image_token_id: int, per_image: int, family: str) -> None:
    """Every row must carry exactly the image tokens its image features replace; otherwise the model would
    run and silently ignore the image (BLIP-2) or fail deep inside (LLaVA)."""
    counts = (input_ids == image_token_id).sum(-1)
    bad = (counts != per_image).nonzero().flatten().tolist()
    if bad:
        raise UserError(
            f"{family}: a row has {int(counts[bad[0]])} image placeholder tokens where the image gives {per_image} "
            "features; the processor must expand the image token (check num_query_tokens / patch_size in the "
            "processor config and that the prompt keeps the image token)"
        )
