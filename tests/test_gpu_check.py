"""benchmarks/gpu_check.py, the script a lent GPU machine runs, in its CPU tiny mode: every row must still run
(so the script cannot rot between the rare sessions that have a GPU)."""

from __future__ import annotations

import importlib.util
import json

import pytest
from conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def _run(tmp_path, *extra: str) -> dict:
    """The script's own entry point, in this process (torch and transformers are imported already)."""
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "rows.json"
    module.main(["--tiny", "--steps", "1", "--json", str(out), *extra])
    return json.loads(out.read_text())


def test_tiny_mode_runs_every_row(tmp_path):
    table = _run(tmp_path)
    rows = {row[0]: row for row in table["rows"]}
    for name in ("tiny LoRA, mmkit loop", "tiny LoRA, HF Trainer+PEFT", "LLaVA-1.5-7B replica", "Qwen2.5-VL-3B replica"):
        step_s = float(rows[name][1])
        assert step_s > 0 and float(rows[name][2]) > 0, name
    assert not [row for row in table["rows"] if "FAILED" in row[-1]]
    assert "reference" in rows["DDP, 1 process"][-1]  # the sharded rows' reference ran, in this process
    assert rows["FSDP, 1 process"][-1].startswith("skipped: needs a GPU")


@pytest.mark.slow
def test_tiny_mode_launches_deepspeed_on_cpu(tmp_path):
    if importlib.util.find_spec("deepspeed") is None:
        pytest.skip("deepspeed is not installed (pip install -e '.[deepspeed]')")
    table = _run(tmp_path, "--sharded", "--skip-vlm")
    rows = {row[0]: row for row in table["rows"]}
    for mode in ("ZeRO-2", "ZeRO-3"):
        note = rows[f"{mode}, 1 process"][-1]
        assert note.startswith("DEEPSPEED") and "(ok)" in note, note
