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


def cpu_model() -> str:
    """The CPU's model name, family/model numbers and the instruction sets the figures depend on (machines differ
    between runs). A virtual machine may name the CPU only "AMD EPYC": the family tells Zen 4 (25) from Zen 5 (26),
    and two "AMD EPYC" machines here measured bf16 matmul rates of ~390 and ~780 GFLOP/s."""
    import platform

    name, flags, ids = platform.processor() or platform.machine(), set(), {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "model name" and name in ("", platform.machine(), platform.processor()):
                name = value
            elif key in ("cpu family", "model") and key not in ids:
                ids[key] = value
            elif key == "flags":
                flags = set(value.split())
    except OSError:
        pass
    if len(ids) == 2:
        name += f" (family {ids['cpu family']}, model {ids['model']})"
    shown = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{name}, {os.cpu_count()} cores" + (f" ({', '.join(shown)})" if shown else "")


def matmul_gflops(tokens: int, hidden: int, ffn: int, dtype: str) -> float:
    """What this machine computes at one encoder layer's matmul shapes (q, k, v, o, up, down for `tokens` rows),
    in GFLOP/s: the roof the compute floor is taken at."""
    import time

    import torch

    dt = getattr(torch, dtype)
    x, h = torch.randn(tokens, hidden, dtype=dt), torch.randn(tokens, ffn, dtype=dt)
    square, up, down = (torch.randn(a, b, dtype=dt) for a, b in ((hidden, hidden), (hidden, ffn), (ffn, hidden)))

    def layer():
        for _ in range(4):
            x @ square
        x @ up
        h @ down

    for _ in range(10):
        layer()
    best = float("inf")
    for _ in range(5):  # the best of 5 rounds: the roof, not a moment when another process had the cores
        began = time.perf_counter()
        for _ in range(20):
            layer()
        best = min(best, (time.perf_counter() - began) / 20)
    return 2 * tokens * (4 * hidden * hidden + 2 * hidden * ffn) / best / 1e9


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


def compare(script: str, doc: str, data: Path, default_rows: int, output_name: str, sides: dict, options: dict | None = None):
    """Parse the shared flags and the job's own `options` ({"--flag": argparse kwargs}, passed on to every side);
    in a child (`--side`), run that side and exit; in the parent, run the chosen sides once per `--seeds` seed, each
    run in its own process, and return (args, {side: result}). With several seeds a side's result holds the mean of
    each number over the seeds, and `runs`, the result of every seed."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=default_rows, help=f"training rows (default {default_rows})")
    for flag, kwargs in (options or {}).items():
        parser.add_argument(flag, **kwargs)
    parser.add_argument("--sides", default=",".join(sides), help=f"which sides to run, comma-separated (default {','.join(sides)})")
    parser.add_argument(
        "--seeds", default="42",
        help="training seeds, comma-separated (default 42): every side runs once per seed. One run's accuracy is one draw: "
        "SST-2 test accuracy moved by up to 1.2 points between seeds of the same job",
    )
    parser.add_argument("--output", default=str(REPO / "runs" / "benchmarks" / output_name))
    parser.add_argument("--side", choices=sorted(sides), help=argparse.SUPPRESS)  # one side, in a child
    parser.add_argument("--seed", type=int, default=42, help=argparse.SUPPRESS)  # the child's seed
    args = parser.parse_args()
    if not data.is_dir():
        raise SystemExit(f"error: needs the data files in {data}")
    if args.side:
        with tempfile.TemporaryDirectory() as tmp:
            result = sides[args.side](args, Path(tmp))
        print("RESULT " + json.dumps(result))
        raise SystemExit(0)
    chosen = [side for side in args.sides.split(",") if side]
    unknown = sorted(set(chosen) - set(sides))
    if unknown:
        raise SystemExit(f"error: --sides: unknown side(s) {', '.join(unknown)}; choose from {', '.join(sides)}")
    try:
        seeds = [int(seed) for seed in args.seeds.split(",") if seed]
    except ValueError:
        raise SystemExit(f"error: --seeds: {args.seeds!r} is not a comma-separated list of whole numbers") from None
    passed = ["--rows", str(args.rows)]
    for flag in options or {}:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        passed += [flag, str(value)] if value is not None else []
    runs = {side: [] for side in chosen}
    for seed in seeds:  # seed by seed, so that an interrupted invocation has whole comparisons
        for side in chosen:
            runs[side].append({"seed": seed, **run_side(script, side, [*passed, "--seed", str(seed)])})
    return args, {side: mean_over_runs(results) for side, results in runs.items()}


def mean_over_runs(runs: list[dict]) -> dict:
    """One run as it is; several: the first run's fields with every number that differs between runs replaced by its
    mean (a setting such as the batch size stays as it was), plus `runs`."""
    if len(runs) == 1:
        return runs[0]
    numbers = [
        k
        for k, v in runs[0].items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "seed" and len({r[k] for r in runs}) > 1
    ]
    return {**runs[0], **{k: sum(r[k] for r in runs) / len(runs) for k in numbers}, "seed": None, "runs": runs}
