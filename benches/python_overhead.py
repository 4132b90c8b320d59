"""Python call overhead of `levit.Model` against the Rust engine (levit-bench), 1 thread.

    cargo build --release -p levit-bench
    pip install ./crates/levit-py
    python benches/python_overhead.py --model levit_128s.lvt

Runs `levit-bench --threads 1 --json` on the same file and times `model(x)` for one
[1, 3, 224, 224] float32 image (read in place) in this process, alternating the two
`--rounds` times; each side's figure is its lowest median over the rounds. The
overhead is (python - rust) / rust of the single-image latency; the target is <= 3 %.
It also times a 0-image call (the wrapper's checks and output array, no engine): a
floor of the overhead that the engine's run-to-run noise cannot hide.
Without --model it uses LeViT-128S from $LEVIT_GOLDEN_DIR (random trained-like weights:
the latency does not depend on the values). Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import levit

REPO = Path(__file__).resolve().parents[1]


def rust_median_ms(bench: Path, model: str, iters: int, warmup: int, isa: str | None) -> float:
    cmd = [str(bench), "--model", model, "--threads", "1", "--iters", str(iters), "--warmup", str(warmup),
           "--json", "--no-peak"] + (["--isa", isa] if isa else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(json.loads(out)["median_ms"])


def python_median_ms(model: levit.Model, x: np.ndarray, iters: int, warmup: int) -> float:
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter_ns()
        model(x)
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1e6


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="a .lvt file (default: LeViT-128S of $LEVIT_GOLDEN_DIR)")
    p.add_argument("--levit-bench", default=str(REPO / "target" / "release" / "levit-bench"))
    p.add_argument("--iters", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--isa", default=None)
    a = p.parse_args()
    model_path = a.model
    if model_path is None:
        golden = os.environ.get("LEVIT_GOLDEN_DIR")
        if not golden:
            p.error("give --model or set LEVIT_GOLDEN_DIR")
        model_path = str(Path(golden) / "levit_128s" / "model_timm.lvt")
    model = levit.Model(model_path, threads=1, isa=a.isa)
    x = np.random.default_rng(0).standard_normal((1, *model.input_shape)).astype(np.float32)
    model(x)
    assert model._last_input_address() == x.ctypes.data  # the in-place path is what is timed
    rust, py = [], []
    for _ in range(a.rounds):
        rust.append(rust_median_ms(Path(a.levit_bench), model_path, a.iters, a.warmup, a.isa))
        py.append(python_median_ms(model, x, a.iters, a.warmup))
    # The wrapper's own work without the engine: argument checks and the output array
    # (an empty batch); a lower bound of the overhead, immune to the engine's noise.
    empty = np.zeros((0, *model.input_shape), np.float32)
    fixed_us = python_median_ms(model, empty, 20 * a.iters, a.warmup) * 1000
    r, q = min(rust), min(py)
    overhead = (q - r) / r * 100
    print(f"model    {model.info['variant']} ({model_path}), isa {model.info['isa']}, 1 thread")
    print(f"rust     levit-bench median  {r:.4f} ms   (rounds: {', '.join(f'{v:.4f}' for v in rust)})")
    print(f"python   model(x) median     {q:.4f} ms   (rounds: {', '.join(f'{v:.4f}' for v in py)})")
    print(f"overhead {q - r:+.4f} ms = {overhead:+.2f} % of the single-image latency (target <= 3 %)")
    print(f"wrapper  {fixed_us:.2f} us per call without the engine (0-image batch) = "
          f"{fixed_us / 10 / r:.3f} % of the latency")
    return 0 if overhead <= 3.0 else 1


if __name__ == "__main__":
    sys.exit(main())
