"""Sentence pooling for classification heads.

Most checkpoints classify from their own head (BERT: the [CLS] pooler; GPT-2: the last real token). Sentence-
embedding checkpoints (sentence-transformers, e.g. all-MiniLM-L6-v2) were trained to be read by the *mean*
of their token states; their [CLS] state and pooler were never trained for that. For them, `model.pooling:
auto` classifies from the masked mean of the last hidden states, as they were trained to be used. No
transformers class does that, so this module is the head (and the model card shows its few lines).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

HEAD_FILE = "pooled_head.safetensors"  # the head of a fully fine-tuned mean-pooling model, beside the encoder


def is_sentence_embedding(source: str) -> bool:
    """Whether the checkpoint folder ships a sentence-transformers mean-pooling config."""
    pooling_config = Path(source) / "1_Pooling" / "config.json"
    if not pooling_config.is_file():
        return False
    try:
        return bool(json.loads(pooling_config.read_text()).get("pooling_mode_mean_tokens"))
    except (OSError, ValueError):
        return False


class MeanPooledClassifier(nn.Module):
    """Encoder -> masked mean of the last hidden states -> dropout -> linear classifier."""

    base_model_prefix = "encoder"  # what is pretrained; everything else is the head

    def __init__(self, encoder, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(encoder.config.hidden_size, num_labels)

    def forward(self, input_ids=None, attention_mask=None, labels=None, token_type_ids=None, **_ignored):
        from transformers.modeling_outputs import SequenceClassifierOutput

        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        logits = self.classifier(self.dropout(pooled))
        loss = nn.functional.cross_entropy(logits.float(), labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def activation_checkpointing_enable(self, activation_checkpointing_kwargs=None) -> None:
        self.encoder.activation_checkpointing_enable(activation_checkpointing_kwargs)

    # A fully fine-tuned run saves the encoder as a normal checkpoint plus the head beside it.
    def save_pretrained(self, folder, state_dict=None, **kwargs) -> None:
        from safetensors.torch import save_file

        head = self.classifier.state_dict()
        if state_dict is not None:  # gathered from FSDP / ZeRO-3 shards: the encoder's part and the head's
            kwargs["state_dict"] = {k.removeprefix("encoder."): v for k, v in state_dict.items() if k.startswith("encoder.")}
            head = {k.removeprefix("classifier."): v for k, v in state_dict.items() if k.startswith("classifier.")}
        self.encoder.save_pretrained(folder, **kwargs)
        save_file({k: v.contiguous() for k, v in head.items()}, str(Path(folder) / HEAD_FILE))

    def load_head(self, folder) -> None:
        from safetensors.torch import load_file

        self.classifier.load_state_dict(load_file(str(Path(folder) / HEAD_FILE)))

    @property
    def device(self):
        return next(self.parameters()).device
