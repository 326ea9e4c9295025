"""`mmkit merge`: fold a LoRA adapter into its base and save the model without an adapter.

The merged folder holds the weights as the run's model spec saves a full fine-tune (a standard transformers
checkpoint where a transformers class holds the model; the encoder plus `pooled_head.safetensors` for a
mean-pooled classifier; `mm_model.safetensors` for image+text models), the tokenizer or processor,
labels.json, a config.yaml with `lora.enabled: false` (so it is also an mmkit run: `mmkit predict DIR`), and a
README.md whose code loads it. The command says which of these it wrote.
"""

from __future__ import annotations

import copy
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


def merge_run(run_or_repo: str, output: str | Path, revision: str | None = None, base: str | None = None, echo=print,
              trust_remote_code: bool = False) -> Path:
    from mmkit.hub.files import CARD_FILE
    from mmkit.hub.model_card import build_model_card, read_metrics
    from mmkit.runs.inference import load_trained
    from mmkit.runs.run_dir import CONFIG_FILE, atomic_write_json
    from mmkit.tasks import build_task

    out = Path(output).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--output {out} already exists and is not empty; choose a new folder")
    # A run trained on a 4-/8-bit base merges into the base in model.dtype: adding the LoRA deltas into
    # quantized weights would round them away, and the merged model is a full-precision checkpoint.
    trained = load_trained(run_or_repo, revision, base, trust_remote_code, unquantized=True)
    if not trained.run.has_adapter:
        raise UserError(f"{run_or_repo} is a full fine-tune (no adapter): its folder already loads with transformers; nothing to merge")
    merged = merge_adapter(trained.model)
    cfg = copy.deepcopy(trained.cfg)
    cfg.lora.enabled = False
    cfg.train.output_dir = None
    task = build_task(cfg, trained.task.spec.source)  # the same base, now described without an adapter
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        task.spec.save(merged, staging)
        trained.processor.save_pretrained(staging)
        (staging / CONFIG_FILE).write_text(cfg.to_yaml(), encoding="utf-8")
        if trained.labels is not None:
            atomic_write_json(staging / "labels.json", trained.labels)
        # The card says what was written and shows the code that loads it from this folder.
        card = build_model_card(str(out), task, trained.labels, read_metrics(trained.run.file("metrics.json")), adapter=False)
        (staging / CARD_FILE).write_text(card, encoding="utf-8")
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    echo(f"merged {run_or_repo} into {type(merged).__name__}; saved to {out}: {task.spec.merged_note()} (code in {out / CARD_FILE})")
    return out
