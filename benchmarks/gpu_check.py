"""One GPU check, a few minutes on one GPU, one table: speed, memory and MFU of mmkit's LoRA training step, the
same job through the plain transformers Trainer + PEFT, FSDP / DeepSpeed correctness in one process, and two
large vision-language replicas.

    python benchmarks/gpu_check.py                    # on a GPU machine (bf16)
    python benchmarks/gpu_check.py --tiny             # CPU, tiny shapes, seconds: what the test suite runs
    python benchmarks/gpu_check.py --tiny --sharded   # also launch the DeepSpeed checks on CPU (about a minute each)

Needs torch, transformers, peft and accelerate only (no `datasets`: GPU machines lent to this project lack it);
DeepSpeed rows run where `deepspeed` imports, FSDP rows on a GPU. Every model is built from its config with
random weights (real shapes, so speed and memory are those of the real checkpoint); batches are random token
ids of a fixed shape, so every step does the same work. Rows:

- text LoRA step, mmkit loop: MiniLM-L6 (the default model, batch 32 x 64 tokens) and a
  BERT-base replica: LoRA r=8 on query,value + a new head, AdamW, through Accelerate exactly as
  `mmkit.training.trainer.Trainer.train` steps (accumulate, backward, clip, step, zero_grad).
- the same job with `transformers.Trainer` + PEFT.
- sharded, 1 process: DDP (reference), FSDP, DeepSpeed ZeRO-2, ZeRO-3 with the shipped recipes/accelerate
  configs: train, gather the weights (mmkit.training.distributed, the code the runs use), save the adapter,
  reload it on a fresh base: the logits must equal the reference run's.
- VLM replicas: LLaVA-1.5-7B and Qwen2.5-VL-3B shapes, bf16, gradient checkpointing, batch 8, LoRA on the
  language model's q_proj,v_proj.

MFU = model FLOPs per step / (step time x the GPU's peak dense bf16 FLOP/s). Model FLOPs count the matrix
multiplies: 2 per weight per token forward, as much again backward for the activation gradients, and once more
for the weight gradients of trainable matrices only (LoRA: the frozen base needs none), plus attention scores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # mmkit.training.distributed: the gathering code the sharded rows check

# Dense bf16 tensor-core peaks (no sparsity), FLOP/s, from the vendors' data sheets; --peak-tflops overrides.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12, "4090": 165e12}

WARMUP = 3  # untimed steps before each row's timed ones (1 in --tiny mode)

TEXT_SHAPES = {  # name: BertConfig fields (MiniLM-L6 = sentence-transformers/all-MiniLM-L6-v2)
    "MiniLM-L6": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
    "BERT-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
}


# --- measuring ------------------------------------------------------------------------------------------------
def device_info(tiny: bool):
    import torch

    if torch.cuda.is_available() and not tiny:
        name = torch.cuda.get_device_name()
        peak = next((flops for key, flops in PEAK_BF16.items() if key in name), None)
        return "cuda", name, peak
    return "cpu", "CPU", None


def peak_memory_gb(device: str) -> float:
    import resource

    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # whole process, KiB on Linux


def reset_memory(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def matmul_flops(model, tokens: int, layers: int, hidden: int, seq: int) -> float:
    """Training FLOPs of one step (see the module docstring): embeddings are lookups, not counted."""
    import torch

    forward = frozen = trainable = 0.0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            size = module.weight.numel()
            forward += size
            if module.weight.requires_grad:
                trainable += size
            else:
                frozen += size
    attention = 2 * 2 * layers * seq * hidden  # QK^T and AV, per token, forward
    return tokens * (2 * forward * 2 + 2 * trainable + attention * 2)


def timed_steps(step, steps: int, warmup: int, device: str) -> float:
    """Median seconds per step after warm-up (the median: a shared machine has slow outliers)."""
    for _ in range(warmup):
        step()
    sync(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


# --- text rows -----------------------------------------------------------------------------------------------
def bert_replica(shape: str, num_labels: int = 2, seed: int = 0):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, max_position_embeddings=512, **TEXT_SHAPES[shape], num_labels=num_labels)
    return BertForSequenceClassification(config)


def with_lora(model):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["query", "value"], task_type="SEQ_CLS"))


def random_batch(batch: int, seq: int, vocab: int, device: str, seed: int = 0) -> dict:
    import torch

    g = torch.Generator().manual_seed(seed)
    return {
        "input_ids": torch.randint(1000, vocab, (batch, seq), generator=g).to(device),
        "attention_mask": torch.ones(batch, seq, dtype=torch.long, device=device),
        "labels": torch.randint(0, 2, (batch,), generator=g).to(device),
    }


def text_mmkit_loop(shape: str, batch: int, seq: int, steps: int, device: str, precision: str) -> dict:
    import torch
    from accelerate import Accelerator

    reset_memory(device)
    acc = Accelerator(mixed_precision=precision, cpu=device == "cpu")
    model = with_lora(bert_replica(shape))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model, optimizer = acc.prepare(model, optimizer)
    data = random_batch(batch, seq, 30522, acc.device)
    model.train()

    def step():  # the body of mmkit.training.trainer.Trainer.train, one optimizer step
        with acc.accumulate(model):
            loss = model(**data).loss
            acc.backward(loss)
            if acc.sync_gradients:
                acc.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    seconds = timed_steps(step, steps, WARMUP, device)
    cfg = TEXT_SHAPES[shape]
    flops = matmul_flops(acc.unwrap_model(model), batch * seq, cfg["num_hidden_layers"], cfg["hidden_size"], seq)
    return {"step_s": seconds, "samples_s": batch / seconds, "memory_gb": peak_memory_gb(device), "flops": flops}


def text_hf_trainer(shape: str, batch: int, seq: int, steps: int, device: str, precision: str, workdir: Path) -> dict:
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    reset_memory(device)
    model = with_lora(bert_replica(shape))
    one = random_batch(batch, seq, 30522, "cpu")
    rows = [{k: v[i] for k, v in one.items()} for i in range(batch)]

    class Rows(torch.utils.data.Dataset):  # the same rows again and again: every step does the same work
        def __len__(self):
            return batch * (steps + WARMUP + 1)

        def __getitem__(self, i):
            return rows[i % batch]

    times: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            sync(device)
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            sync(device)
            times.append(time.perf_counter() - self.start)

    args = TrainingArguments(
        output_dir=str(workdir / "hf-trainer"), per_device_train_batch_size=batch, max_steps=steps + WARMUP,
        learning_rate=1e-4, bf16=precision == "bf16", report_to=[], save_strategy="no", logging_strategy="no",
        use_cpu=device == "cpu", dataloader_num_workers=0, disable_tqdm=True, max_grad_norm=1.0,
    )
    Trainer(model=model, args=args, train_dataset=Rows(), callbacks=[StepClock()]).train()
    timed = times[WARMUP:]  # the same warm-up as the mmkit row: CUDA context, cuBLAS, optimizer state
    seconds = sorted(timed)[len(timed) // 2]
    cfg = TEXT_SHAPES[shape]
    flops = matmul_flops(model, batch * seq, cfg["num_hidden_layers"], cfg["hidden_size"], seq)
    return {"step_s": seconds, "samples_s": batch / seconds, "memory_gb": peak_memory_gb(device), "flops": flops}


# --- sharded rows: one process under each accelerate config ------------------------------------------------------
LAUNCH_VARS = {"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}
SHARDED_MODES = {  # mode: accelerate launch arguments (after --num_processes 1)
    "DDP": [],
    "FSDP": ["--config_file", str(REPO / "recipes/accelerate/fsdp.yaml")],
    "ZeRO-2": ["--config_file", str(REPO / "recipes/accelerate/deepspeed_zero2.yaml")],
    "ZeRO-3": ["--config_file", str(REPO / "recipes/accelerate/deepspeed_zero3.yaml")],
}


def sharded_worker(base: Path, out: Path, steps: int, batch: int, seq: int, precision: str) -> None:
    """Train LoRA a few steps, gather the weights (every process), save the adapter (main process). Runs under
    `accelerate launch`, or in this process for the tiny test."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import AutoModelForSequenceClassification

    from mmkit.training import distributed

    deepspeed = distributed.deepspeed_requested()
    has_gpu = torch.cuda.is_available()
    acc = Accelerator(mixed_precision=precision, cpu=not has_gpu and not deepspeed)
    distributed.configure_deepspeed(acc, batch, 1.0)
    set_seed(0)
    model = with_lora(AutoModelForSequenceClassification.from_pretrained(base))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    data = random_batch(batch, seq, 30522, "cpu", seed=1)
    loader = torch.utils.data.DataLoader([{k: v[i] for k, v in data.items()} for i in range(batch)] * steps, batch_size=batch)
    model, optimizer, loader = acc.prepare(model, optimizer, loader)
    model.train()
    for batch_ in loader:
        loss = model(**batch_).loss
        acc.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    state = distributed.gathered_state_dict(acc, model)  # every process
    if acc.is_main_process:
        acc.unwrap_model(model).save_pretrained(out / "adapter", state_dict=state, safe_serialization=True)
        (out / "result.json").write_text(json.dumps({"type": str(acc.distributed_type), "loss": loss.item()}))
    acc.wait_for_everyone()
    acc.end_training()


def reload_logits(base: Path, adapter: Path, seq: int):
    """Logits of a fixed batch from the saved adapter on a fresh base, in this (undistributed) process as a user
    would load it, and how far they are from the untrained base's."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    probe = random_batch(8, seq, 30522, "cpu", seed=2)
    inputs = {"input_ids": probe["input_ids"], "attention_mask": probe["attention_mask"]}
    with torch.no_grad():
        before = AutoModelForSequenceClassification.from_pretrained(base).eval()(**inputs).logits
        fresh = PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(base), adapter).eval()
        logits = fresh(**inputs).logits
    # A save that lost the weights would leave the reloaded logits where the untrained ones are.
    return logits, (logits - before).abs().max().item()


def sharded_rows(base: Path, workdir: Path, device: str, steps: int, batch: int, seq: int, precision: str, launch: bool) -> list[list[str]]:
    import importlib.util

    results, rows = {}, []
    for mode, extra in SHARDED_MODES.items():
        out = workdir / mode
        out.mkdir(parents=True, exist_ok=True)
        why = None
        if mode == "FSDP" and device != "cuda":
            why = "needs a GPU (accelerate falls back to DDP on CPU processes)"
        elif mode.startswith("ZeRO") and importlib.util.find_spec("deepspeed") is None:
            why = "deepspeed is not installed"
        elif mode != "DDP" and not launch:
            why = "not launched (--sharded launches it)"
        if why:
            rows.append([f"{mode}, 1 process", "-", "-", "-", "-", "skipped: " + why])
            continue
        started = time.perf_counter()
        if launch:
            command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
                       "--mixed_precision", precision, "--dynamo_backend", "no", *extra, __file__, "--worker",
                       str(base), str(out), str(steps), str(batch), str(seq), precision]
            # Not this process's own settings: accelerate's state here (the in-process rows) left its rank and
            # CPU flag in the environment, and cpu=True would turn DeepSpeed into DDP.
            env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "FSDP_")) and k not in LAUNCH_VARS}
            env["PYTHONPATH"] = str(REPO)
            proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
            if proc.returncode != 0:
                errors = [line for line in proc.stderr.splitlines() if "Error" in line and "ChildFailedError" not in line]
                rows.append([f"{mode}, 1 process", "-", "-", "-", "-", "FAILED: " + (errors or ["see its stderr"])[-1].strip()[:120]])
                continue
        else:
            sharded_worker(base, out, steps, batch, seq, precision)
        seconds = time.perf_counter() - started
        results[mode] = {**json.loads((out / "result.json").read_text())}
        results[mode]["logits"], moved = reload_logits(base, out / "adapter", seq)
        reference = results.get("DDP")
        # bf16 steps differ in rounding between the engines; a save that lost the weights would not move the logits.
        tolerance = 0.05 if precision == "bf16" else 1e-4
        check = f"reference; training moved reloaded logits by {moved:.2e}" + ("" if moved > 10 * tolerance else " (TOO LITTLE)")
        if mode != "DDP" and reference:
            diff = (results[mode]["logits"] - reference["logits"]).abs().max().item()
            check = f"reload logits vs DDP: max diff {diff:.2e} ({'ok' if diff <= tolerance and moved > 10 * tolerance else 'MISMATCH'})"
        rows.append([f"{mode}, 1 process", "-", "-", "-", "-", f"{results[mode]['type'].split('.')[-1]}, {seconds:.0f} s incl. launch; {check}"])
    return rows


# --- VLM replicas ---------------------------------------------------------------------------------------------------
def vlm_replica(kind: str, tiny: bool):
    """(model, config) with random weights: real sizes, or tiny ones (same code) for the CPU test."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    if kind == "LLaVA-1.5-7B":
        text = LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                           num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096)
        vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                                  image_size=336, patch_size=14, projection_dim=768)
        if tiny:
            text = LlamaConfig(vocab_size=2000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024)
            vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                      image_size=56, patch_size=14, projection_dim=32)
        config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=1999 if tiny else 32000, vision_feature_layer=-2,
                             vision_feature_select_strategy="default")
        return LlavaForConditionalGeneration(config), config

    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    text = dict(vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                num_key_value_heads=2, max_position_embeddings=32768, rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]})
    vision = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31])
    if tiny:
        text.update(vocab_size=2000, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                    rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]})
        vision.update(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, fullatt_block_indexes=[1])
    special = (1990, 1991, 1992) if tiny else (151655, 151656, 151652)  # image, video, vision start
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=special[0], video_token_id=special[1],
                              vision_start_token_id=special[2])
    return Qwen2_5_VLForConditionalGeneration(config), config


def vlm_inputs(kind: str, config, batch: int, text_tokens: int, device: str, tiny: bool) -> dict:
    import torch

    g = torch.Generator().manual_seed(0)
    if kind == "LLaVA-1.5-7B":
        vision = config.vision_config
        image_tokens = (vision.image_size // vision.patch_size) ** 2  # 576 at 336 px
        text = torch.randint(10, config.text_config.vocab_size - 100, (batch, text_tokens), generator=g)
        ids = torch.cat([torch.full((batch, image_tokens), config.image_token_index), text], dim=1)
        return {
            "input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device), "labels": ids.clone().to(device),
            "pixel_values": torch.randn(batch, 3, vision.image_size, vision.image_size, generator=g).to(device),
        }
    # Qwen2.5-VL: a 448 x 448 image (tiny: 56 x 56) = (h/14) x (w/14) patches, merged 2x2 into image tokens.
    side = 4 if tiny else 32  # patches per side
    patches_per_image = side * side
    image_tokens = patches_per_image // 4
    text = torch.randint(10, config.text_config.vocab_size - 100, (batch, text_tokens), generator=g)
    ids = torch.cat([torch.full((batch, 1), config.vision_start_token_id), torch.full((batch, image_tokens), config.image_token_id), text], dim=1)
    channels = 3 * config.vision_config.temporal_patch_size * config.vision_config.patch_size**2  # 1176
    return {
        "input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device), "labels": ids.clone().to(device),
        "pixel_values": torch.randn(batch * patches_per_image, channels, generator=g).to(device),
        "image_grid_thw": torch.tensor([[1, side, side]] * batch).to(device),
        "mm_token_type_ids": (ids == config.image_token_id).long().to(device),
    }


def vlm_row(kind: str, device: str, tiny: bool, batch: int, steps: int) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model

    reset_memory(device)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        torch.set_default_dtype(dtype)
        try:
            model, config = vlm_replica(kind, tiny)
        finally:
            torch.set_default_dtype(torch.float32)
    # transformers 5.24 renamed it; the GPU machine's 5.17 may have the old name only.
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable({"use_reentrant": False})
    model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=r".*language_model.*\.(q_proj|v_proj)$"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    inputs = vlm_inputs(kind, config, batch, 16 if tiny else 64, device, tiny)
    import inspect

    if "mm_token_type_ids" not in inspect.signature(model.get_base_model().forward).parameters:
        inputs.pop("mm_token_type_ids", None)  # older transformers (the GPU machine's 5.17) do not take it
    model.train()

    def step():
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds = timed_steps(step, steps, 1, device)
    params = sum(p.numel() for p in model.parameters())
    return {"step_s": seconds, "samples_s": batch / seconds, "memory_gb": peak_memory_gb(device), "params": params,
            "tokens": inputs["input_ids"].shape[1]}


# --- the table ------------------------------------------------------------------------------------------------------
def mfu(flops: float, seconds: float, peak: float | None) -> str:
    return f"{100 * flops / seconds / peak:.1f}%" if peak else "-"


def main(argv: list[str] | None = None) -> list[list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="CPU, tiny shapes, a few steps (the test suite runs this)")
    parser.add_argument("--sharded", action="store_true", help="with --tiny: also launch the DeepSpeed rows on CPU")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per row (default 20, tiny 2)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak, if not in the built-in list")
    parser.add_argument("--skip-vlm", action="store_true", help="leave out the 7B / 3B replicas")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    global WARMUP
    WARMUP = 1 if args.tiny else 3

    device, name, peak = device_info(args.tiny)
    if args.peak_tflops:
        peak = args.peak_tflops * 1e12
    precision = "bf16" if device == "cuda" else "no"
    steps = args.steps or (2 if args.tiny else 20)
    batch, seq = (4, 16) if args.tiny else (32, 64)
    shapes = ["tiny"] if args.tiny else ["MiniLM-L6", "BERT-base"]
    rows: list[list[str]] = []
    header = ["row", "step s", "samples/s", "peak mem GB", "MFU", "note"]

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for shape in shapes:
            for label, run in (("mmkit loop", text_mmkit_loop), ("HF Trainer+PEFT", text_hf_trainer)):
                extra = (workdir,) if run is text_hf_trainer else ()
                r = run(shape, batch, seq, steps, device, precision, *extra)
                rows.append([f"{shape} LoRA, {label}", f"{r['step_s']:.4f}", f"{r['samples_s']:.1f}", f"{r['memory_gb']:.2f}",
                             mfu(r["flops"], r["step_s"], peak), f"batch {batch} x {seq} tokens, {precision}"])
        base = workdir / "base"
        bert_replica(shapes[0]).save_pretrained(base)
        rows += sharded_rows(base, workdir / "sharded", device, 3, 8, seq, precision, launch=device == "cuda" or args.sharded)
        if not args.skip_vlm:
            for kind in ("LLaVA-1.5-7B", "Qwen2.5-VL-3B"):
                try:
                    r = vlm_row(kind, device, args.tiny, 2 if args.tiny else 8, 1 if args.tiny else 3)
                except Exception as err:  # noqa: BLE001 - one row failing (e.g. out of memory) must not hide the others
                    rows.append([f"{kind} replica", "-", "-", "-", "-", f"FAILED: {type(err).__name__}: {str(err)[:90]}"])
                    continue
                size = "tiny" if args.tiny else f"{r['params'] / 1e9:.2f} B params"
                rows.append([f"{kind} replica", f"{r['step_s']:.3f}", f"{r['samples_s']:.2f}", f"{r['memory_gb']:.2f}", "-",
                             f"{size}, batch {2 if args.tiny else 8} x {r['tokens']} tokens, grad ckpt, LoRA q,v; 4-bit: not in this script"])

    import torch

    print(f"device: {name} | torch {torch.__version__} | peak bf16 {peak / 1e12:.0f} TFLOP/s" if peak else f"device: {name} | torch {torch.__version__} | MFU needs --peak-tflops")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print(" | ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    if args.json:
        args.json.write_text(json.dumps({"device": name, "header": header, "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        base, out, steps, batch, seq, precision = sys.argv[2:8]
        sharded_worker(Path(base), Path(out), int(steps), int(batch), int(seq), precision)
    else:
        main()
