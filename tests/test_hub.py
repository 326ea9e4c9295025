"""Hub push / load / merge against a local in-memory Hub (tests/hub_server.py), with the real huggingface_hub client.

huggingface_hub reads HF_ENDPOINT at import, and HF_HUB_OFFLINE=1 (set for the test session) blocks localhost
too, so every command that talks to the Hub runs as a subprocess with its own environment.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from conftest import TOKEN, hub_env, run_cli, sentiment_overrides  # noqa: E402

from mmkit.config import set_dotted  # noqa: E402

AUTO_REPO = "tester/tiny-sentiment-auto"
EXPECTED_UPLOAD = {
    "README.md",
    "adapter_config.json",
    "adapter_model.safetensors",
    "config.yaml",
    "confusion_matrix.png",
    "labels.json",
    "loss_curve.png",
    "metrics.json",
    "tokenizer.json",
    "tokenizer_config.json",
}
TEXTS = ["the film was really superb", "a dull and broken phone", "my trip was quite grim and cold"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_bert, toy_data, hub, hub_home) -> Path:
    """A tiny-BERT sentiment run trained by `mmkit train` with train.push_to_hub set."""
    folder = tmp_path_factory.mktemp("hub-run")
    overrides = sentiment_overrides(tiny_bert, toy_data, folder / "run", **{"train.epochs": 3, "train.push_to_hub": AUTO_REPO})
    config = folder / "config.yaml"
    nested: dict = {}
    for key, value in overrides.items():
        set_dotted(nested, key, str(value) if isinstance(value, Path) else value)
    config.write_text(yaml.safe_dump(nested), encoding="utf-8")
    result = run_cli("train", str(config), env=hub_env(hub, hub_home))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"pushed 10 files to {hub.url}/{AUTO_REPO}" in result.stdout
    assert TOKEN not in result.stdout + result.stderr
    run = folder / "run"
    # A file a careless user might leave in the run dir: it must never go up.
    (run / ".env").write_text(f"HF_TOKEN={TOKEN}\n")
    return run


def _eval_metrics(folder: Path) -> dict:
    metrics = json.loads((folder / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if k not in ("eval_runtime_s", "data")}


def test_push_uploads_exactly_the_allow_list_and_loads_back(trained_run, hub, hub_home, toy_data, tmp_path):
    repo = "tester/tiny-sentiment"
    env = hub_env(hub, hub_home)
    dry = run_cli("push", str(trained_run), "--repo-id", repo, "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    listed = {line.split()[0] for line in dry.stdout.splitlines() if line.startswith("  ")}
    assert listed == EXPECTED_UPLOAD
    assert "checkpoints/" in dry.stdout and ".env" in dry.stdout  # reported as not pushed
    assert repo not in hub.repos  # a dry run sends nothing

    pushed = run_cli("push", str(trained_run), "--repo-id", repo, env=env)
    assert pushed.returncode == 0, pushed.stderr
    assert f"pushed {len(EXPECTED_UPLOAD)} files to {hub.url}/{repo}" in pushed.stdout
    files = hub.files(repo)
    assert set(files) - {".gitattributes"} == EXPECTED_UPLOAD
    assert set(hub.files(AUTO_REPO)) == set(files)  # the end-of-training push sent the same set
    for name, data in files.items():
        assert TOKEN.encode() not in data, name
    assert TOKEN not in dry.stdout + dry.stderr + pushed.stdout + pushed.stderr

    # config.yaml went up without local folders; the card carries Hub metadata and the metrics.
    cfg = yaml.safe_load(files["config.yaml"])
    assert cfg["train"]["output_dir"] is None and cfg["data"]["test"] == "test.jsonl"
    card = files["README.md"].decode()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["library_name"] == "peft" and meta["pipeline_tag"] == "text-classification"
    run_metrics = json.loads((trained_run / "metrics.json").read_text())
    card_metrics = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert card_metrics["accuracy"] == pytest.approx(run_metrics["accuracy"])
    assert f'PeftModel.from_pretrained(model, "{repo}")' in card

    # eval / predict straight from the repo id equal the run dir's (the run dir's computed in-process).
    from mmkit.runs.inference import evaluate_run, load_trained, predict

    data = str(toy_data["test"])
    trained = load_trained(str(trained_run))
    evaluate_run(trained, data, "test", tmp_path / "local")
    remote = run_cli("eval", repo, "--data", data, "--output", str(tmp_path / "remote"), env=env)
    assert remote.returncode == 0, remote.stderr
    assert _eval_metrics(tmp_path / "remote") == _eval_metrics(tmp_path / "local")
    b = run_cli("predict", repo, TEXTS[0], "--json", env=env)
    assert b.returncode == 0, b.stderr
    assert json.loads(b.stdout) == json.loads(json.dumps(predict(trained, {"text": TEXTS[0]})))


def test_second_push_updates_and_old_revision_stays_loadable(trained_run, hub, hub_home, tmp_path):
    import shutil

    repo = "tester/tiny-sentiment-v2"
    env = hub_env(hub, hub_home)
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    assert run_cli("push", str(run), "--repo-id", repo, env=env).returncode == 0
    first = hub.repos[repo].branches["main"]
    labels = json.loads((run / "labels.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["note"] = 1.0
    (run / "metrics.json").write_text(json.dumps(metrics))
    second = run_cli("push", str(run), "--repo-id", repo, "--commit-message", "new metrics", env=env)
    assert second.returncode == 0, second.stderr
    head = hub.repos[repo].branches["main"]
    assert head != first and hub.repos[repo].messages[head] == "new metrics"
    assert json.loads(hub.files(repo)["metrics.json"])["note"] == 1.0
    same = run_cli("push", str(run), "--repo-id", repo, env=env)
    assert same.returncode == 0 and "already up to date" in same.stdout and "pushed 10 files" not in same.stdout
    assert hub.repos[repo].branches["main"] == head
    assert "note" not in json.loads(hub.files(repo, first)["metrics.json"])
    # --revision: the first commit still predicts; a branch push lands on the branch only.
    old = run_cli("predict", repo, TEXTS[0], "--json", "--revision", first, env=env)
    assert old.returncode == 0, old.stderr
    assert json.loads(old.stdout)["label"] in labels
    metrics["note"] = 2.0
    (run / "metrics.json").write_text(json.dumps(metrics))
    branch = run_cli("push", str(run), "--repo-id", repo, "--revision", "exp", env=env)
    assert branch.returncode == 0, branch.stderr
    assert hub.repos[repo].branches["main"] == head
    assert json.loads(hub.files(repo, "exp")["metrics.json"])["note"] == 2.0
    missing = run_cli("predict", repo, TEXTS[0], "--revision", "no-such-branch", env=env)
    assert missing.returncode == 2 and "revision" in missing.stderr.lower()


def test_server_error_on_commit_is_one_line_and_claims_nothing(trained_run, hub, hub_home):
    hub.fail_commits = 500
    try:
        result = run_cli("push", str(trained_run), "--repo-id", "tester/broken", env=hub_env(hub, hub_home))
    finally:
        hub.fail_commits = None
    assert result.returncode == 2
    assert "pushed" not in result.stdout
    error_lines = result.stderr.strip().splitlines()
    assert error_lines[-1].startswith("error: push to tester/broken failed") and "500" in error_lines[-1]
    assert "Traceback" not in result.stderr and TOKEN not in result.stdout + result.stderr
    repo = hub.repos["tester/broken"]  # created, but no commit beyond the initial one
    assert set(repo.commits[repo.branches["main"]]) == {".gitattributes"}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    "case, expected",
    [
        ("no-token", "no Hugging Face token"),
        ("bad-repo", "invalid Hub repo id"),
        ("refused", "cannot connect to the Hub"),
        ("bad-token", "refused the token"),
    ],
)
def test_push_errors_are_one_line_exit_2(case, expected, trained_run, hub, hub_home):
    env = hub_env(hub, hub_home)
    repo = "tester/errors"
    if case == "no-token":
        env["HF_TOKEN"] = ""  # and HF_HOME has no token file
    elif case == "bad-repo":
        repo = "not a/repo/id"
    elif case == "refused":
        env["HF_ENDPOINT"] = f"http://127.0.0.1:{_closed_port()}"
    elif case == "bad-token":
        env["HF_TOKEN"] = "hf_" + "w" * 34
    result = run_cli("push", str(trained_run), "--repo-id", repo, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "pushed" not in result.stdout
    assert result.stderr.strip().splitlines()[-1].startswith("error: ") and expected in result.stderr
    for secret in (TOKEN, env["HF_TOKEN"]):
        if secret:
            assert secret not in result.stdout + result.stderr


def test_base_mismatch_and_local_revision_are_clear_errors(trained_run, tiny_gpt2, hub, hub_home):
    env = hub_env(hub, hub_home)
    result = run_cli("predict", str(trained_run), "good", "--base", str(tiny_gpt2), env=env)
    assert result.returncode == 2 and "does not match the adapter's base model" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("eval", str(trained_run), "--revision", "main", env=env)
    assert result.returncode == 2 and "--revision is for Hub repo ids" in result.stderr
    missing = run_cli("predict", "tester/no-such-repo", "good", env=env)
    assert missing.returncode == 2 and "repository not found" in missing.stderr


def test_merge_cli_from_repo_matches_adapter_logits(trained_run, hub, hub_home, tmp_path):
    """`mmkit merge REPO --output DIR`: plain transformers Auto classes load DIR and give the adapter's logits."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from mmkit.runs.inference import load_trained

    env = hub_env(hub, hub_home)
    out = tmp_path / "merged"
    result = run_cli("merge", AUTO_REPO, "--output", str(out), env=env)
    assert result.returncode == 0, result.stderr
    assert not (out / "adapter_config.json").exists() and (out / "model.safetensors").is_file()
    trained = load_trained(str(trained_run))
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.id2label == dict(enumerate(trained.labels))
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = trained.model(**batch).logits
        got = model(**batch).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    # The merged folder is itself a (full-model) run: mmkit predicts the same from it.
    from mmkit.runs.inference import predict

    again, ref = predict(load_trained(str(out)), {"text": TEXTS[0]}), predict(trained, {"text": TEXTS[0]})
    assert again["label"] == ref["label"]
    assert again["probabilities"] == pytest.approx(ref["probabilities"], abs=1e-4)
    # Not over an existing folder.
    result = run_cli("merge", str(trained_run), "--output", str(out), env=env)
    assert result.returncode == 2 and "not empty" in result.stderr


def _fake_full_run(folder: Path) -> Path:
    from mmkit.config import load_config

    cfg = load_config(None, {"model.name_or_path": "acme/bert-tiny", "lora.enabled": False, "data.train": "/home/me/secret/train.jsonl", "data.test": "acme/reviews:test", "train.output_dir": "/home/me/runs/x"})
    folder.mkdir()
    (folder / "config.yaml").write_text(cfg.to_yaml())
    for name in ("model.safetensors", "tokenizer.json", "labels.json", "train_log.jsonl", "notes.txt"):
        (folder / name).write_text("[]" if name == "labels.json" else "{}")
    from transformers import BertConfig

    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8).save_pretrained(folder)
    (folder / "checkpoints" / "step-1").mkdir(parents=True)
    (folder / "checkpoints" / "step-1" / "optimizer.bin").write_bytes(b"\0")
    return folder


def test_full_finetune_plan_clean_config_and_token_scan(tmp_path):
    """In-process: a full fine-tune's weights go up, logs and strays do not; config.yaml loses local folders;
    a token anywhere in what would go up stops the push before any upload."""
    from mmkit.errors import UserError
    from mmkit.hub.push import plan_push, stage

    run = _fake_full_run(tmp_path / "run")
    plan = plan_push(run)
    assert set(plan.files) == {"README.md", "config.yaml", "config.json", "model.safetensors", "tokenizer.json", "labels.json"}
    assert set(plan.left_out) == {"train_log.jsonl", "notes.txt", "checkpoints/step-1/optimizer.bin"}
    staging = tmp_path / "staging"
    staging.mkdir()
    stage(plan, "acme/full", staging, token=None)
    cfg = yaml.safe_load((staging / "config.yaml").read_text())
    assert cfg["data"]["train"] == "train.jsonl" and cfg["data"]["test"] == "acme/reviews:test"
    assert cfg["train"]["output_dir"] is None and "/home/me" not in (staging / "config.yaml").read_text()
    meta = yaml.safe_load((staging / "README.md").read_text().split("---")[1])
    assert meta["library_name"] == "transformers" and meta["datasets"] == ["acme/reviews"]
    assert meta["base_model"] == "acme/bert-tiny"

    (run / "tokenizer.json").write_text('{"leaked": "' + TOKEN + '"}')
    with pytest.raises(UserError, match="contains a Hugging Face token"):
        stage(plan, "acme/full", tmp_path / "staging2", token="hf_other")
