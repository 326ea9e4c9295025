"""FSDP and DeepSpeed, as far as a CPU machine can check them.

Accelerate runs neither FSDP nor DeepSpeed on CPU processes with `cpu=True` (it falls back to DDP). DeepSpeed,
though, brings its own CPU backend: without `cpu=True`, `accelerate launch --use_deepspeed` really trains
under ZeRO-2 / ZeRO-3 on a CPU (slow tests below). FSDP needs a GPU: what is checked here is what mmkit hands
it (the config files as `accelerate launch` reads them, the plugin they make) and the code paths shared with DDP.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import REPO, sentiment_overrides
from safetensors.torch import load_file

from mmkit.errors import UserError
from mmkit.training import distributed

CONFIGS = REPO / "recipes" / "accelerate"


def launch_env(config_file: Path) -> dict[str, str]:
    """The environment `accelerate launch --config_file FILE` gives its processes (accelerate's own code)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    args = launch_command_parser().parse_args(["--config_file", str(config_file), "train.py"])
    args, defaults, _ = _validate_launch_command(args)
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config) if defaults else ""
        return prepare_deepspeed_cmd_env(args)[1]
    return prepare_multi_gpu_env(args)


def _plugin_env(monkeypatch, config_file: Path) -> None:
    for key, value in launch_env(config_file).items():
        if key.startswith(("ACCELERATE_", "FSDP_")):
            monkeypatch.setenv(key, value)


@pytest.mark.parametrize("name, stage", [("deepspeed_zero2.yaml", 2), ("deepspeed_zero3.yaml", 3)])
def test_deepspeed_configs_make_the_plugin_mmkit_needs(monkeypatch, name, stage):
    from accelerate.utils import DeepSpeedPlugin

    _plugin_env(monkeypatch, CONFIGS / name)
    plugin = DeepSpeedPlugin()
    config = plugin.deepspeed_config
    assert config["zero_optimization"]["stage"] == stage
    # mmkit fills these from its own config; a number here would override train.batch_size silently.
    assert config["train_micro_batch_size_per_gpu"] == "auto" and config["gradient_accumulation_steps"] == "auto"
    hf_file = os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE", "none")
    assert hf_file == "none" or Path(hf_file).is_file(), "a DeepSpeed config file the yaml names must exist"
    if stage == 3:
        # accelerator.get_state_dict refuses to gather ZeRO-3 weights without it: the run could not be saved.
        assert config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
        assert plugin.zero3_init_flag, "ZeRO-3 must build the model partitioned (zero.Init), not once per process"


def test_fsdp_config_makes_the_plugin_mmkit_needs(monkeypatch):
    from accelerate.utils import FullyShardedDataParallelPlugin

    _plugin_env(monkeypatch, CONFIGS / "fsdp.yaml")
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2
    assert plugin.cpu_ram_efficient_loading, "only rank 0 should read the checkpoint"
    # transformers reads the loading switch from the environment, not from the plugin.
    assert os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] == "true" and os.environ["ACCELERATE_USE_FSDP"] == "true"
    assert str(plugin.state_dict_type).endswith("FULL_STATE_DICT")
    assert plugin.use_orig_params is not False  # LoRA: frozen and trainable weights share wrapped modules


def _deepspeed_acc(micro_batch="auto", stage=2, train_batch="auto"):
    """The parts of an Accelerator that mmkit's DeepSpeed code reads, around accelerate's real plugin."""
    from accelerate.utils import DeepSpeedPlugin, DistributedType

    plugin = DeepSpeedPlugin(zero_stage=stage)
    plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = micro_batch
    plugin.deepspeed_config["train_batch_size"] = train_batch
    return SimpleNamespace(distributed_type=DistributedType.DEEPSPEED, state=SimpleNamespace(deepspeed_plugin=plugin), num_processes=2)


def test_deepspeed_takes_micro_batch_and_clipping_from_the_mmkit_config():
    acc = _deepspeed_acc()
    distributed.configure_deepspeed(acc, 12, 0.5)
    plugin = acc.state.deepspeed_plugin
    # What Accelerator._prepare_deepspeed checks before it would ask the (batch-sampler) DataLoader for a size.
    assert not plugin.is_auto("train_micro_batch_size_per_gpu")
    assert plugin.get_value("train_micro_batch_size_per_gpu") == 12
    assert plugin.get_value("gradient_clipping") == 0.5  # "auto" would be 1.0: train.max_grad_norm ignored

    same = _deepspeed_acc(micro_batch=12, train_batch=96)
    distributed.configure_deepspeed(same, 12, 1.0)
    assert same.state.deepspeed_plugin.deepspeed_config["train_batch_size"] == "auto"  # recomputed by accelerate

    with pytest.raises(UserError, match="train_micro_batch_size_per_gpu=4 but train.batch_size is 12"):
        distributed.configure_deepspeed(_deepspeed_acc(micro_batch=4), 12, 1.0)
    ddp = SimpleNamespace(distributed_type="MULTI_GPU")
    distributed.configure_deepspeed(ddp, 12, 1.0)  # nothing to do without DeepSpeed


def test_generation_syncs_processes_only_when_weights_are_sharded():
    from accelerate.utils import DistributedType

    assert distributed.generation_kwargs(_deepspeed_acc(stage=3)) == {"synced_gpus": True}
    assert distributed.generation_kwargs(_deepspeed_acc(stage=2)) == {}
    fsdp = SimpleNamespace(distributed_type=DistributedType.FSDP, num_processes=4)
    assert distributed.generation_kwargs(fsdp) == {"synced_gpus": True}
    assert distributed.generation_kwargs(SimpleNamespace(distributed_type=DistributedType.FSDP, num_processes=1)) == {}
    ddp = SimpleNamespace(distributed_type=DistributedType.MULTI_GPU, num_processes=4)
    assert distributed.generation_kwargs(ddp) == {}


def test_gathered_trainable_state_is_the_trainable_weights(tiny_bert):
    """One process: the gathering call (the one FSDP / ZeRO-3 need) returns exactly the trainable weights."""
    from accelerate import Accelerator
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["query", "value"], task_type="SEQ_CLS"))
    acc = Accelerator(cpu=True)
    prepared = acc.prepare(model)
    state = distributed.gathered_trainable_state(acc, prepared)
    expected = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert set(state) == set(expected) and any("lora_A" in n for n in state) and any("classifier" in n for n in state)
    assert all(torch.equal(state[n], expected[n].detach()) for n in expected)
    # Writing it back goes through the same path the best-checkpoint reload takes.
    with torch.no_grad():
        for p in expected.values():
            p.zero_()
    distributed.load_trainable_state(acc, prepared, state)
    assert all(torch.equal(state[n], expected[n].detach()) for n in expected)


def test_a_sharded_checkpoint_resumed_without_sharding_is_one_clear_line(tmp_path):
    """A checkpoint FSDP / DeepSpeed wrote holds their shard layout, not trainable.safetensors: resuming it under
    DDP is refused with what to do, and under FSDP / DeepSpeed (no models left for the hook) the hook stays out."""
    from mmkit.training.trainer import Trainer

    trainer = Trainer.__new__(Trainer)  # the hook needs nothing from the instance before it checks the folder
    (tmp_path / "pytorch_model").mkdir()
    with pytest.raises(UserError, match="FSDP or DeepSpeed.*same `accelerate launch --config_file`"):
        trainer._load_trainable_hook([torch.nn.Linear(2, 2)], str(tmp_path))
    trainer._load_trainable_hook([], str(tmp_path))  # accelerate loaded its own layout: nothing to add


def test_loading_before_the_accelerator_under_zero3_is_flagged(monkeypatch, tiny_bert):
    """ZeRO-3 and FSDP load a checkpoint once only when the Accelerator already exists: loading earlier warns."""
    from transformers import AutoModel

    from mmkit.config import ModelConfig
    from mmkit.models.loading import load_pretrained

    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    with pytest.warns(UserWarning, match="every process loads a full copy"):
        load_pretrained(AutoModel, str(tiny_bert), ModelConfig())
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")  # ZeRO-2 keeps whole weights anyway
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        load_pretrained(AutoModel, str(tiny_bert), ModelConfig())


# --- DeepSpeed for real, on CPU -----------------------------------------------------------------------------------
ACCELERATE = str(Path(sys.executable).parent / "accelerate")


def _deepspeed_launch(stage: int, out: Path, overrides: dict, port: int) -> subprocess.CompletedProcess:
    out.mkdir(parents=True, exist_ok=True)
    command = [
        ACCELERATE, "launch", "--num_processes", "1", "--num_machines", "1", "--dynamo_backend", "no",
        "--mixed_precision", "no", "--main_process_port", str(port), "--config_file", str(CONFIGS / f"deepspeed_zero{stage}.yaml"),
        str(REPO / "tests" / "ddp_worker.py"), str(out), json.dumps(overrides),
    ]
    env = {k: v for k, v in os.environ.items() if k != "ACCELERATE_USE_CPU"}  # cpu=True would turn DeepSpeed into DDP
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "DeepSpeed" in proc.stderr + proc.stdout or (out / "processes.txt").is_file()
    return proc


def _adapter_values(run: Path) -> dict[str, torch.Tensor]:
    """The saved adapter's tensors under the names the live model gives them (PEFT drops `.default`)."""
    return {k: v for k, v in load_file(str(run / "adapter_model.safetensors")).items()}


def _same_tensors(saved: dict, live: dict) -> None:
    def plain(name: str) -> str:
        return name.replace(".default", "").replace(".modules_to_save", "")

    live = {plain(k): v for k, v in live.items()}
    assert set(map(plain, saved)) == set(live)
    for key, value in saved.items():
        torch.testing.assert_close(value.float(), live[plain(key)].float(), atol=1e-6, rtol=1e-5, msg=key)


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_on_cpu_trains_saves_and_resumes_like_one_process(stage, tiny_bert, toy_data, tmp_path):
    """The shipped ZeRO-2 / ZeRO-3 config, one CPU process: the run trains like a plain single-process run, its
    saved adapter holds the trained weights (gathered, not a rank's empty partition), and a resume from the
    DeepSpeed checkpoint layout ends where the uninterrupted run did."""
    pytest.importorskip("deepspeed", reason="pip install -e '.[deepspeed]' to run DeepSpeed on CPU")
    from mmkit.config import load_config
    from mmkit.training.finetune import finetune

    common = {"train.batch_size": 16, "train.epochs": 2, "train.save_every": 20, "train.keep_checkpoints": 3,
              "train.group_by_length": False, "lora.dropout": 0.0, "train.learning_rate": 1e-2}
    ds = tmp_path / "ds"
    _deepspeed_launch(stage, ds, sentiment_overrides(tiny_bert, toy_data, ds / "run", **common), 29531 + stage)
    assert (ds / "processes.txt").read_text() == "1"
    assert (ds / "loaded_partitioned.txt").read_text() == ("1" if stage == 3 else "0")
    trained = load_file(str(ds / "gathered.safetensors"))  # gathered when training ended, before the best is put back

    single = finetune(load_config(None, sentiment_overrides(tiny_bert, toy_data, tmp_path / "one", **common)))
    best = load_file(str(ds / "run" / "checkpoints" / "best" / "trainable.safetensors"))
    reference = load_file(str(tmp_path / "one" / "checkpoints" / "best" / "trainable.safetensors"))
    assert set(best) == set(reference)
    for key in reference:
        torch.testing.assert_close(best[key], reference[key], atol=2e-4, rtol=1e-3, msg=key)
    _same_tensors(_adapter_values(ds / "run"), best)  # the best weights were put back, then gathered and saved
    ds_metrics = json.loads((ds / "run" / "metrics.json").read_text())
    assert ds_metrics["best_step"] == single["best_step"]
    assert ds_metrics["accuracy"] == pytest.approx(single["accuracy"], abs=0.02)

    # The checkpoints are DeepSpeed's layout (model + optimizer shards), not mmkit's single file.
    checkpoints = sorted(p for p in (ds / "run" / "checkpoints").glob("step-*"))
    assert checkpoints and all((p / "pytorch_model").is_dir() and not (p / "trainable.safetensors").exists() for p in checkpoints)
    # Resume from the middle: drop the last checkpoint and the finished model, continue, end at the same weights.
    resumed = tmp_path / "resumed"
    shutil.copytree(ds / "run", resumed / "run")
    for late in checkpoints[1:]:
        shutil.rmtree(resumed / "run" / "checkpoints" / late.name)
    _deepspeed_launch(stage, resumed, sentiment_overrides(tiny_bert, toy_data, resumed / "run", **common, **{"train.resume": True}), 29541 + stage)
    again = load_file(str(resumed / "gathered.safetensors"))
    for key in trained:
        torch.testing.assert_close(again[key], trained[key], atol=1e-5, rtol=1e-4, msg=key)


class _Payload:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, proof: Path):
        self.proof = proof

    def __reduce__(self):
        return (os.system, (f"touch {self.proof}",))


def test_a_pickle_payload_in_a_deepspeed_checkpoint_runs_nothing(tmp_path):
    """DeepSpeed reads its .pt files with weights_only=False; mmkit reads them first with the restricted unpickler."""
    import pickle

    from mmkit.training.distributed import check_deepspeed_checkpoint

    checkpoint = tmp_path / "step-0000020"
    (checkpoint / "pytorch_model").mkdir(parents=True)
    torch.save({"module": {"w": torch.ones(2)}, "ds_version": "0.19"}, checkpoint / "pytorch_model" / "mp_rank_00_model_states.pt")
    check_deepspeed_checkpoint(checkpoint)  # tensors and plain containers pass
    proof = tmp_path / "pwned"
    evil = checkpoint / "pytorch_model" / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    evil.write_bytes(pickle.dumps(_Payload(proof)))
    with pytest.raises(UserError, match="zero_pp_rank_0_mp_rank_00_optim_states.pt holds more than tensors"):
        check_deepspeed_checkpoint(checkpoint)
    assert not proof.exists(), "a pickle in a DeepSpeed checkpoint ran code"
