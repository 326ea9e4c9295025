"""Issue 15's table: each unsafe or bad-input case through the real CLI (`python -m mmkit ...`, a fresh process):
exit code, the first error line, and whether the folder it concerns is exactly as before (sha256 of every file).

    python benchmarks/safety_cases.py      # about 6 minutes on a 2-core CPU; prints a markdown table
"""
import hashlib, json, os, pickle, random, shutil, subprocess, sys, tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
import builders, builders_multimodal  # noqa: E402

tmp = Path(tempfile.mkdtemp(prefix="m15-"))
env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
PY = sys.executable


def mmkit(*args, cwd=tmp):
    p = subprocess.run([PY, "-m", "mmkit", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True)
    err = [l for l in p.stderr.splitlines() if l.strip()]
    errors = [l for l in err if l.startswith("error:")]
    line = errors[0] if errors else (err[-1] if err else "")
    return p.returncode, line, "Traceback" in p.stderr, p.stdout


def snap(folder: Path):
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def disk(before, after):
    if before is None and after is None:
        return "nothing (folder absent)"
    if before == after:
        return f"unchanged ({len(after)} files)"
    if before is None:
        return f"created ({len(after)} files)"
    return f"CHANGED ({len(before)} -> {len(after)} files)"


bert = builders.build_tiny_bert(tmp / "tiny-bert")
data = builders.toy_sentiment_splits(tmp / "data")
base = ["task=sentiment", f"model.name_or_path={bert}", f"data.train={data['train']}", f"data.validation={data['validation']}",
        f"data.test={data['test']}", "train.batch_size=16", "train.epochs=1", "train.max_steps=12", "train.save_every=6",
        "lora.r=8", "train.log_every=5"]
cfgfile = tmp / "c.yaml"
cfgfile.write_text("task: sentiment\n")


def train(out, *extra):
    return mmkit("train", cfgfile, *base, f"train.output_dir={out}", *extra)


ref = tmp / "ref"
code = train(ref)[0]
assert code == 0, code
rows = []


def case(name, folder, fn):
    before = snap(folder)
    code, line, tb, _ = fn()
    rows.append((name, code, line.replace("|", "\\|")[:230] + ("..." if len(line) > 230 else ""), "yes" if tb else "no", disk(before, snap(folder))))


# data loss
proj = tmp / "thesis"
(proj / "src").mkdir(parents=True)
(proj / "config.yaml").write_text("title: my thesis\n")
(proj / "thesis.tex").write_text("\\documentclass{article}\n")
(proj / "src" / "main.py").write_text("print(1)\n")
case("train.overwrite=true on a project folder (config.yaml, src/, thesis.tex)", proj, lambda: train(proj, "train.overwrite=true"))

for key, value in [("train.learning_rate", "0.1"), ("train.batch_size", "8"), ("lora.r", "16"), ("data.train", str(data["validation"]))]:
    copy = tmp / f"resume-{key}"
    shutil.copytree(ref, copy)
    case(f"train.resume=true with {key} changed", copy, lambda c=copy, k=key, v=value: train(c, "train.resume=true", f"{k}={v}"))
copy = tmp / "resume-grow"
shutil.copytree(ref, copy)
case("train.resume=true with train.max_steps grown 12 -> 18 (allowed)", copy, lambda: train(copy, "train.resume=true", "train.max_steps=18"))
case("train.resume=true on a folder with no run", proj, lambda: train(proj, "train.resume=true"))


# untrusted input
class Payload:
    def __init__(self, proof): self.proof = proof
    def __reduce__(self): return (os.system, (f"touch {self.proof}",))


for name in ["custom_checkpoint_0.pkl", "optimizer.bin", "random_states_0.pkl"]:
    copy = tmp / f"pickle-{name}"
    shutil.copytree(ref, copy)
    # a killed run: only the step-6 checkpoint, no final model, so resume reads the checkpoint
    ck = sorted((copy / "checkpoints").glob("step-*"))[0]
    proof = tmp / f"pwned-{name}"
    (ck / name).write_bytes(pickle.dumps(Payload(proof)))
    for extra in sorted((copy / "checkpoints").glob("step-*"))[1:]:
        shutil.rmtree(extra)
    case(f"pickle payload as checkpoint {name}, train.resume=true", copy, lambda c=copy: train(c, "train.resume=true"))
    rows[-1] = rows[-1][:4] + (rows[-1][4] + ("; PAYLOAD RAN" if proof.exists() else "; payload did not run"),)

import yaml  # noqa: E402
evil = tmp / "evil-run"
shutil.copytree(ref, evil)
proof = tmp / "pwned-remote"
cfg = yaml.safe_load((evil / "config.yaml").read_text())
cfg["model"]["trust_remote_code"] = True
cfg["model"]["name_or_path"] = str(evil / "base")
(evil / "config.yaml").write_text(yaml.safe_dump(cfg))
(evil / "base").mkdir()
(evil / "base" / "config.json").write_text(json.dumps({"model_type": "evil", "auto_map": {"AutoConfig": "evil.EvilConfig"}}))
(evil / "base" / "evil.py").write_text(f"import pathlib\npathlib.Path({str(proof)!r}).touch()\n")
case("mmkit predict on a run whose config.yaml says trust_remote_code: true + auto_map", evil, lambda: mmkit("predict", evil, "a good film"))
rows[-1] = rows[-1][:4] + (rows[-1][4] + ("; CODE RAN" if proof.exists() else "; its code did not run"),)

(tmp / "runs").mkdir()
env_online = dict(env, HF_HUB_OFFLINE="0")
def missing():
    p = subprocess.run([PY, "-m", "mmkit", "predict", "runs/sentiment-minilm-demo", "a good film"], cwd=tmp, env=env_online, capture_output=True, text=True)
    errs = [l for l in p.stderr.splitlines() if l.startswith("error:")]
    return p.returncode, errs[0] if errs else p.stderr[-200:], "Traceback" in p.stderr, p.stdout
case("mmkit predict runs/sentiment-minilm-demo (no such local folder; Hub lookups on)", tmp / "runs", missing)

# validate early
lat = tmp / "latin1.jsonl"
lines = [json.dumps(r) for r in builders.toy_sentiment_rows(20, 0)]
lines[2] = '{"text": "un film tr\u00e8s dr\u00f4le", "label": "positive"}'
lat.write_bytes("\n".join(lines).encode("latin-1") + b"\n")
out = tmp / "out-latin1"
case("data.train = a Latin-1 (non-UTF-8) JSONL", out, lambda: train(out, f"data.train={lat}"))
for name, dmg in [("truncated", lambda b: b[: len(b) // 2]), ("garbage", lambda b: b"\x00" * 64)]:
    copy = tmp / f"corrupt-{name}"
    shutil.copytree(ref, copy)
    w = copy / "adapter_model.safetensors"
    w.write_bytes(dmg(w.read_bytes()))
    case(f"mmkit predict on a run with a {name} adapter_model.safetensors", copy, lambda c=copy: mmkit("predict", c, "a good film"))
for kv in ["train.learning_rate=-1", "train.batch_size=0", "train.log_every=0", "train.max_grad_norm=-3", "data.max_length=100000", "data.labels=[neg,pos"]:
    out = tmp / f"out-{kv.split('=')[0]}"
    case(f"`{kv}`", out, lambda o=out, kv=kv: train(o, kv))
afile = tmp / "notes.txt"
afile.write_text("my notes\n")
case("mmkit eval RUN --output pointing at a file", tmp / "ref", lambda: mmkit("eval", ref, "--data", data["test"], "--output", afile))
rows[-1] = rows[-1][:4] + (rows[-1][4] + ("; notes.txt intact" if afile.read_text() == "my notes\n" else "; notes.txt CHANGED"),)

# truncated JPEG
vit = builders_multimodal.build_tiny_vit(tmp / "tiny-vit")
from builders_multimodal import COLOURS, square_image  # noqa: E402
rng = random.Random(0)
for split, n in [("imgtrain", 8), ("imgvalid", 4)]:
    for colour in COLOURS:
        (tmp / split / colour).mkdir(parents=True)
        for i in range(n):
            square_image(colour, rng).resize((96, 96)).save(tmp / split / colour / f"{i}.jpg", quality=90)
broken = tmp / "imgtrain" / "red" / "3.jpg"
broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
out = tmp / "out-jpeg"
img = ["task=image_classification", f"model.name_or_path={vit}", f"data.train={tmp/'imgtrain'}", f"data.validation={tmp/'imgvalid'}",
       f"data.test={tmp/'imgvalid'}", f"train.output_dir={out}", "train.batch_size=4", "train.max_steps=3"]
case("image_classification with a truncated JPEG in train", out, lambda: mmkit("train", cfgfile, *img))

# full fine-tune without pooled_head
st = tmp / "st-bert"
shutil.copytree(bert, st)
(st / "1_Pooling").mkdir()
(st / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
full = tmp / "full"
base_full = [a for a in base if not a.startswith("model.name_or_path")] + [f"model.name_or_path={st}", "lora.enabled=false"]
assert mmkit("train", cfgfile, *base_full, f"train.output_dir={full}")[0] == 0
(full / "pooled_head.safetensors").unlink()
case("mmkit predict on a full fine-tune run missing pooled_head.safetensors", full, lambda: mmkit("predict", full, "a good film"))
case("mmkit predict RUN '   ' (blank text)", ref, lambda: mmkit("predict", ref, "   "))
long = " ".join(["good film"] * 400)
def longtext():
    c, l, tb, out_ = mmkit("predict", ref, long)
    return c, l, tb, out_
case("mmkit predict RUN <800-word text> (longer than data.max_length)", ref, longtext)

print(f"# measured {__import__('datetime').datetime.utcnow():%Y-%m-%d %H:%M} UTC, CPU: {[l for l in open('/proc/cpuinfo') if 'model name' in l][0].split(':')[1].strip()}")
print("| case | exit | message (first error line, else last stderr line) | traceback | what is left on disk |")
print("| --- | --- | --- | --- | --- |")
for r in rows:
    print("| " + " | ".join(map(str, r)) + " |")
