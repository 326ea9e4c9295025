"""Shared by the benchmark scripts: run each side in its own subprocess (so peak memory is its own), then
print a side-by-side table with the ratio mmkit / peer, and write the figures as JSON."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
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


def compare(script: str, doc: str, data: Path, default_rows: int, output_name: str, sides: dict):
    """Parse the shared flags; in a child (`--side`), run that side and exit; in the parent, run both sides
    in their own processes and return (args, {"mmkit": ..., "peer": ...})."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=default_rows, help=f"training rows (default {default_rows})")
    parser.add_argument("--output", default=str(REPO / "runs" / "benchmarks" / output_name))
    parser.add_argument("--side", choices=sorted(sides), help=argparse.SUPPRESS)  # one side, in a child
    args = parser.parse_args()
    if not data.is_dir():
        raise SystemExit(f"error: needs the data files in {data}")
    if args.side:
        with tempfile.TemporaryDirectory() as tmp:
            result = sides[args.side](args.rows, Path(tmp))
        print("RESULT " + json.dumps(result))
        raise SystemExit(0)
    return args, {side: run_side(script, side, ["--rows", str(args.rows)]) for side in ("mmkit", "peer")}
