"""An image+text classifier: a family's feature encoder, then a head the config shapes (hidden size, dropout)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

# A fully fine-tuned image+text run stores every weight here (the encoder is not one transformers model).
FULL_WEIGHTS_FILE = "mm_model.safetensors"
# PEFT's modules_to_save matches name suffixes: the head's name must not end any other module's name.
HEAD_NAME = "mm_head"


class FusionHead(nn.Module):
    """LayerNorm (fused features come at very different scales) -> dropout -> MLP -> logits."""

    def __init__(self, in_dim: int, num_labels: int, hidden: int = 256, dropout: float = 0.1):
        super().__init__()
        layers: list[nn.Module] = [nn.LayerNorm(in_dim), nn.Dropout(dropout)]
        if hidden > 0:
            layers += [nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, num_labels)]
        else:
            layers.append(nn.Linear(in_dim, num_labels))
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class MultimodalClassifier(nn.Module):
    base_model_prefix = "encoder"  # what is pretrained; the head beside it is new (transformers/PEFT read this)

    def __init__(self, encoder, num_labels: int, hidden: int, dropout: float):
        from transformers import PretrainedConfig

        super().__init__()
        self.encoder = encoder
        setattr(self, HEAD_NAME, FusionHead(encoder.feature_dim, num_labels, hidden, dropout))
        self.config = PretrainedConfig()  # PEFT reads model.config; the adapter records the base id in it
        self.config.model_type = f"mmkit-{encoder.family}"

    def forward(self, labels=None, **batch):
        from transformers.modeling_outputs import SequenceClassifierOutput

        features = self.encoder(**batch)
        logits = getattr(self, HEAD_NAME)(features.float())
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def activation_checkpointing_enable(self, activation_checkpointing_kwargs=None) -> None:
        """Checkpoint every transformers model inside the encoder (the head is too small to matter)."""
        from transformers import PreTrainedModel

        for module in self.encoder.children():
            if isinstance(module, PreTrainedModel) and module.supports_gradient_checkpointing:
                module.activation_checkpointing_enable(activation_checkpointing_kwargs)

    @property
    def device(self):
        return next(self.parameters()).device

    # lora.enabled=false: the run stores the whole model in one file, read back onto a freshly built base.
    def save_pretrained(self, folder, state_dict=None, **_kwargs) -> None:
        from safetensors.torch import save_model

        if state_dict is not None:  # gathered from FSDP / ZeRO-3 shards: write those, not this process's shard
            from mmkit.training.distributed import write_full_weights

            write_full_weights(self, state_dict, Path(folder) / FULL_WEIGHTS_FILE)
            return
        save_model(self, str(Path(folder) / FULL_WEIGHTS_FILE))

    def load_full_weights(self, folder) -> None:
        from safetensors.torch import load_model

        load_model(self, str(Path(folder) / FULL_WEIGHTS_FILE))
