"""`mmkit merge`: fold a LoRA adapter into its base and save a standalone model plain transformers loads.

The merged folder holds the model (safetensors, config with id2label/label2id), the tokenizer or processor,
labels.json and a config.yaml with `lora.enabled: false`, so it is also an mmkit run (`mmkit predict DIR`).
The Auto class is the task's own (`task.load_model`), so every task merges the same way.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mmkit.errors import UserError


def merge_adapter(model):
    """`merge_and_unload` a PeftModel: LoRA deltas added into the base weights, head modules unwrapped."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        raise UserError("nothing to merge: the model has no LoRA adapter")
    return model.merge_and_unload()


def merge_run(run_or_repo: str, output: str | Path, revision: str | None = None, base: str | None = None, echo=print) -> Path:
    from mmkit.inference import load_trained
    from mmkit.run_dir import CONFIG_FILE, atomic_write_json

    out = Path(output).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--output {out} already exists and is not empty; choose a new folder")
    trained = load_trained(run_or_repo, revision, base)
    if not trained.run.has_adapter:
        raise UserError(f"{run_or_repo} is a full fine-tune (no adapter): its folder already loads with transformers; nothing to merge")
    merged = merge_adapter(trained.model)
    cfg = trained.cfg
    cfg.lora.enabled = False
    cfg.train.output_dir = None
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        merged.save_pretrained(staging, safe_serialization=True)
        trained.processor.save_pretrained(staging)
        (staging / CONFIG_FILE).write_text(cfg.to_yaml(), encoding="utf-8")
        if trained.labels is not None:
            atomic_write_json(staging / "labels.json", trained.labels)
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    echo(f"merged {run_or_repo} into {type(merged).__name__}; saved to {out} (loads with transformers Auto classes)")
    return out
