"""BLIP ITM at full size (the architecture of Salesforce/blip-itm-base-coco, random weights: nothing is
downloaded) loaded through mmkit in bfloat16, 4-bit and 8-bit: memory of the loaded model, and LoRA train
steps at batch 8 with 384-pixel images (step time, peak memory). Each mode runs in its own process.

    python benchmarks/qlora_check.py                    # all modes, 5 train steps each (a CUDA GPU: minutes)
    python benchmarks/qlora_check.py --steps 0          # model memory only (runs on a CPU too)
    python benchmarks/qlora_check.py --modes bf16,4bit --batch 8 --steps 5

Peak memory is torch.cuda.max_memory_allocated on a GPU and the process's max RSS on a CPU (which also
counts Python, torch and the unquantized weights bitsandbytes reads before packing them). Needs
bitsandbytes for 4bit/8bit: pip install -e ".[quantization]".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the BLIP tokenizer builder
from common import REPO, peak_rss_mb  # noqa: E402

MODES = {"bf16": None, "4bit": "4bit", "8bit": "8bit"}


def build_checkpoint(folder: Path) -> Path:
    """BlipConfig's defaults are blip-itm-base-coco's architecture (ViT-B/16 at 384 px, BERT-base text encoder
    with cross-attention, vocab 30524); the processor resizes to 384 like the real one."""
    import torch
    from builders_blip import blip_tokenizer
    from transformers import BlipConfig, BlipForImageTextRetrieval, BlipImageProcessor, BlipProcessor

    config = BlipConfig()
    config.architectures = ["BlipForImageTextRetrieval"]
    torch.manual_seed(0)
    BlipForImageTextRetrieval(config).save_pretrained(folder)
    BlipProcessor(image_processor=BlipImageProcessor(), tokenizer=blip_tokenizer()).save_pretrained(folder)
    return folder


def run_mode(mode: str, checkpoint: str, batch: int, steps: int) -> dict:
    import torch
    from PIL import Image

    from mmkit.config import load_config
    from mmkit.tasks import build_task

    cuda = torch.cuda.is_available()
    cfg = load_config(None, {
        "task": "mm_sentiment", "model.name_or_path": checkpoint, "model.dtype": "bfloat16",
        "model.quantization": MODES[mode], "lora.r": 8, "lora.towers": ["text"],
    })
    task = build_task(cfg)
    processor = task.load_processor()
    started = time.perf_counter()
    model = task.spec.build(["negative", "neutral", "positive"], processor)
    load_s = time.perf_counter() - started
    device = torch.device("cuda" if cuda else "cpu")
    model.to(device)  # a quantized base is already there (device_map); this moves the head
    weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    result = {"mode": mode, "device": device.type, "load_s": round(load_s, 1), "model_mb": round(weights / 2**20)}
    if steps:
        images = [Image.new("RGB", (640, 480), (40 * i % 255, 90, 160)) for i in range(batch)]
        texts = ["what a day at the beach with friends"] * batch
        inputs = task.encoder_class.preprocess(processor, images, texts, cfg.model)
        inputs = {k: v.to(device) for k, v in inputs.items()}
        labels = torch.arange(batch, device=device) % 3
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        times = []
        model.train()
        for _ in range(steps + 1):  # the first step (kernel selection, allocations) is not timed
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = model(labels=labels, **inputs).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        result["step_s"] = round(statistics.median(times[1:]), 3)
        result["loss"] = round(float(loss), 4)
    result["peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mb())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default="bf16,4bit,8bit")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--output", default=str(REPO / "runs" / "benchmarks" / "qlora_check.json"))
    parser.add_argument("--one", nargs=2, metavar=("MODE", "CHECKPOINT"), help=argparse.SUPPRESS)  # a child
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_mode(args.one[0], args.one[1], args.batch, args.steps)))
        return
    modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise SystemExit(f"error: --modes {unknown}: choose from {', '.join(MODES)}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = str(build_checkpoint(Path(tmp) / "blip-itm-base"))
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        for mode in modes:
            command = [sys.executable, __file__, "--one", mode, checkpoint, "--batch", str(args.batch), "--steps", str(args.steps)]
            proc = subprocess.run(command, env=env, capture_output=True, text=True)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            if proc.returncode or not lines:
                sys.stderr.write(proc.stderr[-3000:])
                results.append({"mode": mode, "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]})
            else:
                results.append(json.loads(lines[-1][len("RESULT "):]))
            print(json.dumps(results[-1]), flush=True)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2))
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
