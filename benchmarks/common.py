"""Shared by the benchmark scripts: run each side in its own subprocess (so peak memory is its own), then
print a side-by-side table with the ratio mmkit / peer, and write the figures as JSON."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_side(script: str, side: str, args: list[str]) -> dict:
    """Run `script --side SIDE ARGS` in a fresh process; it prints one `RESULT {json}` line."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, script, "--side", side, *args], env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"the {side} side failed")
    return json.loads(lines[-1][len("RESULT "):])


def report(title: str, results: dict, rows: list[tuple[str, str, str]], output: str | Path, peer: str = "HF Trainer") -> None:
    m, t = results["mmkit"], results["peer"]
    print(f"\n{title}")
    print(f"{'':42} {'mmkit':>10} {peer:>12} {'mmkit/peer':>10}")
    for label, key, fmt in rows:
        ratio = m[key] / t[key] if t.get(key) else float("nan")
        print(f"{label:42} {fmt.format(m[key]):>10} {fmt.format(t[key]):>12} {ratio:10.2f}")
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(results, indent=2))
    print(f"written to {output}")
