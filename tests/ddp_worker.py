"""Run by tests/test_distributed.py under `accelerate launch`: one fine-tune, then every rank writes the
trainable weights it ended training with (rank<N>.safetensors) so the test can compare the ranks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from safetensors.torch import save_file

from mmkit.config import load_config
from mmkit.training.finetune import finetune
from mmkit.models.lora import trainable_state_dict
from mmkit.training.trainer import Trainer

out = Path(sys.argv[1])
overrides = json.loads(sys.argv[2])
train = Trainer.train


def train_then_dump(self):
    train(self)
    state = trainable_state_dict(self.acc.unwrap_model(self.model))
    save_file({k: v.contiguous().cpu() for k, v in state.items()}, str(out / f"rank{self.acc.process_index}.safetensors"))
    if self.acc.is_main_process:
        (out / "processes.txt").write_text(str(self.acc.num_processes))


Trainer.train = train_then_dump
finetune(load_config(None, overrides))
