"""Train-step time and peak memory of one VLM replica at batch 8 (one family per process: peak RSS is per process).

    HF_HUB_OFFLINE=1 .venv/bin/python tests/bench_vlm.py qwen2-vl     # or qwen2.5-vl, smolvlm

Trains 24 LoRA steps (+ the merger/connector) on the fusion rows with two image sizes, and prints seconds per
optimizer step, the process's peak resident memory and the image tokens per image the batches held.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main(family: str) -> None:
    import transformers
    from builders_multimodal import fusion_splits
    from PIL import Image
    from replicas import REPLICAS

    from mmkit.config import load_config
    from mmkit.training.finetune import finetune

    transformers.logging.set_verbosity_error()
    root = Path(tempfile.mkdtemp(prefix=f"bench-{family}-"))
    splits = fusion_splits(root / "data", n_train=192, n_eval=16)
    for split in splits.values():
        for i, row in enumerate(map(json.loads, split.read_text().splitlines())):
            if i % 3 == 0:
                path = split.parent / row["image"]
                Image.open(path).resize((56, 28)).save(path)
    base = REPLICAS[family].build(root / "base")
    overrides = {
        "task": "mm_sentiment", "model.name_or_path": str(base), "data.train": str(splits["train"]),
        "data.test": str(splits["test"]),  # no validation split: no evaluation inside the timed training
        "train.output_dir": str(root / "run"), "train.batch_size": 8, "train.max_steps": 24,
        "lora.r": 16, "model.train_projector": True,
    }
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
        metrics = finetune(load_config(None, overrides))
    tokens = re.search(r"image tokens per image: [^\n]*", printed.getvalue())
    print(
        f"{family}: {metrics['train_runtime_s'] / metrics['train_steps']:.3f} s/step at batch 8 "
        f"({metrics['train_steps']} steps), peak memory {metrics['peak_memory_mb']:.0f} MB, "
        f"{tokens.group(0) if tokens else 'no image-token note'}"
    )


if __name__ == "__main__":
    main(sys.argv[1])
