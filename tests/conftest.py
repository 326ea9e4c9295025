from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Tests never reach the network: every checkpoint and dataset is built here or read from ../shared.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

sys.path.insert(0, str(Path(__file__).parent))
import builders  # noqa: E402


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return builders.build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> Path:
    return builders.build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> dict[str, Path]:
    return builders.toy_sentiment_splits(tmp_path_factory.mktemp("toy-sentiment"))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared datasets at {SHARED_DATA} (present in CI and on the team's machines)")
    return SHARED_DATA


def sentiment_overrides(model: Path, data: dict[str, Path], output: Path, **extra) -> dict:
    """Config overrides for a fast sentiment run on a tiny model."""
    overrides = {
        "task": "sentiment",
        "model.name_or_path": str(model),
        "data.train": str(data["train"]),
        "data.validation": str(data["validation"]),
        "data.test": str(data["test"]),
        "train.output_dir": str(output),
        "train.batch_size": 16,
        "train.epochs": 4,
        "train.learning_rate": 5e-3,
        "train.log_every": 5,
        "lora.r": 8,
    }
    overrides.update(extra)
    return overrides


def run_cli(*args: str, cwd: Path = REPO, env: dict | None = None, module: str = "mmkit") -> subprocess.CompletedProcess:
    """Run `python -m mmkit ARGS` (or a script) the way a user would; capture the output."""
    command = [sys.executable, "-m", module, *args] if module else [sys.executable, *args]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600)


# --- a local Hub (tests/hub_server.py) for push / load-from-repo tests --------------------------------------

TOKEN = "hf_mmkitTestToken0123456789abcdefghijklmnop"


@pytest.fixture(scope="module")
def hub():
    from hub_server import HubServer

    server = HubServer(TOKEN).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hub_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hf-home")  # empty HF cache + no token file


def hub_env(hub, home: Path, token: str | None = TOKEN, endpoint: str | None = None) -> dict:
    return {
        "HF_ENDPOINT": endpoint or hub.url,
        "HF_TOKEN": token or "",
        "HF_HOME": str(home),
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }


