"""Shared fixtures: the repository's committed tiny models and images, the `levit` CLI
built from the same tree, and the switch that turns skips into failures in CI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures"
GOLDEN_TINY = FIXTURES / "golden-tiny"
IMAGES = FIXTURES / "images"
TINY_MODELS = [
    GOLDEN_TINY / m["files"][layout]
    for m in json.loads((GOLDEN_TINY / "manifest.json").read_text())["models"]
    for layout in ("timm", "fb")
]


def require(what: str) -> None:
    """Skip for lack of `what` (torch, the CLI, ...), or fail when CI says it must run."""
    if os.environ.get("LEVIT_PY_REQUIRE_ALL"):
        pytest.fail(f"{what} is required here (LEVIT_PY_REQUIRE_ALL is set)")
    pytest.skip(f"{what} not available")


def cli_path() -> Path | None:
    """The `levit` binary: $LEVIT_CLI, else the workspace's release or debug build."""
    if os.environ.get("LEVIT_CLI"):
        return Path(os.environ["LEVIT_CLI"])
    for profile in ("release", "debug"):
        p = REPO / "target" / profile / "levit"
        if p.exists():
            return p
    found = shutil.which("levit")
    return Path(found) if found else None


@pytest.fixture(scope="session")
def levit_cli() -> Path:
    p = cli_path()
    if p is None or not p.exists():
        require("the levit CLI (cargo build --release -p levit-cli, or set LEVIT_CLI)")
    return p


def run_cli(cli: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([str(cli), *args], capture_output=True, text=True, env=full_env, check=False)


def cli_infer(cli: Path, model: Path, x: np.ndarray, tmp: Path, env: dict | None = None) -> np.ndarray:
    """`levit infer` on `x` ([N, 3, H, W] float32): the Rust engine's logits."""
    src, dst = tmp / "x.npy", tmp / "y.npy"
    np.save(src, np.ascontiguousarray(x, dtype=np.float32))
    r = run_cli(cli, "infer", "--model", str(model), "--input", str(src), "--output", str(dst), env=env)
    assert r.returncode == 0, r.stderr
    return np.load(dst)


def cli_classify(cli: Path, model: Path, paths: list, top: int = 5) -> list[dict]:
    """`levit classify --json` rows, in input order."""
    r = run_cli(cli, "classify", "--json", "--no-progress", "--threads", "1", "--top", str(top),
                "--model", str(model), *map(str, paths))
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def bits(a: np.ndarray) -> np.ndarray:
    """The bit patterns of a float32 array (equal bits, not merely equal values)."""
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    return GOLDEN_TINY / "tiny_hswish" / "model_timm.lvt"


@pytest.fixture(scope="session")
def batch4() -> np.ndarray:
    return np.load(GOLDEN_TINY / "inputs" / "batch4.npy")
