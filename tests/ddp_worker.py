"""Run by tests/test_distributed.py and tests/test_sharded.py under `accelerate launch`: one fine-tune, then every
rank writes the trainable weights it ended training with (rank<N>.safetensors; not under FSDP / ZeRO-3, where a
rank holds a shard) so the test can compare the ranks, rank 0 the weights gathered through the call the run's own
saving uses (gathered.safetensors), and rank 0 notes whether the base model came
out of loading already partitioned (DeepSpeed ZeRO-3 builds it inside zero.Init: loaded once, not per process)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from safetensors.torch import save_file

from mmkit.config import load_config
from mmkit.models.spec import ModelSpec
from mmkit.training import distributed
from mmkit.training.finetune import finetune
from mmkit.training.trainer import Trainer

out = Path(sys.argv[1])
overrides = json.loads(sys.argv[2])
train, build = Trainer.train, ModelSpec.build


def train_then_dump(self):
    train(self)
    state = distributed.gathered_trainable_state(self.acc, self.model)
    if self.acc.is_main_process:
        save_file(state, str(out / "gathered.safetensors"))
        (out / "processes.txt").write_text(str(self.acc.num_processes))
    if not distributed.is_sharded(self.acc):  # every DDP rank holds the whole model: compare them
        from mmkit.models.lora import trainable_state_dict

        own = trainable_state_dict(self.acc.unwrap_model(self.model))
        save_file({k: v.contiguous().cpu() for k, v in own.items()}, str(out / f"rank{self.acc.process_index}.safetensors"))


def build_and_note(self, labels, processor):
    model = build(self, labels, processor)
    # The checkpoint's (frozen) weights; LoRA adds its own after loading, DeepSpeed partitions those at prepare.
    frozen = [p for p in model.parameters() if not p.requires_grad]
    partitioned = bool(frozen) and all(hasattr(p, "ds_id") for p in frozen)
    (out / "loaded_partitioned.txt").write_text(str(int(partitioned)))
    return model


Trainer.train = train_then_dump
ModelSpec.build = build_and_note
finetune(load_config(None, overrides))
