"""Logits from Python equal the Rust engine's (`levit infer`) bit for bit, on every SIMD
path and thread count, and PyTorch's within the golden tolerance: the committed tiny
models always, the full-size dumps when LEVIT_GOLDEN_DIR is set."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import levit
from conftest import GOLDEN_TINY, TINY_MODELS, bits, cli_infer, require


def torch_tolerance_ok(engine: np.ndarray, torch: np.ndarray, rel: float) -> tuple[bool, float]:
    err = float(np.max(np.abs(engine.astype(np.float64) - torch)))
    return err <= rel * max(1.0, float(np.max(np.abs(torch)))), err


def cases(golden: Path):
    manifest = json.loads((golden / "manifest.json").read_text())
    rel = manifest["tolerance"]["rel"]
    for m in manifest["models"]:
        for case in m["cases"]:
            yield m, case, rel, manifest["inputs"][case["input"]]


def check_against_torch(golden: Path, layouts=("timm", "fb")) -> list[str]:
    report = []
    for m, case, rel, input_file in cases(golden):
        x = np.load(golden / input_file)
        torch = np.load(golden / case["logits"])
        for layout in layouts:
            model = levit.Model(golden / m["files"][layout])
            y = model(x)
            assert y.shape == torch.reshape(y.shape).shape
            assert np.all(np.isfinite(y))
            if "logits" in case["compare"]:
                ok, err = torch_tolerance_ok(y, torch.reshape(y.shape), rel)
                assert ok, f"{m['name']}/{layout}/{case['input']}: max |levit - torch| = {err}"
                t = torch.reshape(y.shape)
                for row, trow in zip(y, t):
                    assert list(np.argsort(-row, kind="stable")[:5]) == list(np.argsort(-trow, kind="stable")[:5])
                report.append(f"{m['name']}/{layout}/{case['input']}: {err:.3g}")
    return report


def test_tiny_models_match_pytorch():
    assert check_against_torch(GOLDEN_TINY)


@pytest.mark.parametrize("model_path", TINY_MODELS, ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_tiny_models_equal_rust_engine_bitwise(model_path, levit_cli, tmp_path):
    model = levit.Model(model_path)
    for name in ("randn", "smooth", "large", "batch4"):
        x = np.load(GOLDEN_TINY / "inputs" / f"{name}.npy")
        ours = model(x)
        rust = cli_infer(levit_cli, model_path, x.reshape(-1, *model.input_shape), tmp_path)
        assert ours.dtype == np.float32 and ours.shape == rust.shape
        assert np.array_equal(bits(ours), bits(rust)), f"{name}: differs from levit infer"


@pytest.mark.parametrize("isa", levit.SUPPORTED_ISAS)
def test_every_simd_path_equals_the_cli_on_it(isa, tiny_model, batch4, levit_cli, tmp_path):
    model = levit.Model(tiny_model, isa=isa)
    assert model.info["isa"] == isa
    rust = cli_infer(levit_cli, tiny_model, batch4, tmp_path, env={"LEVIT_ISA": isa})
    assert np.array_equal(bits(model(batch4)), bits(rust))


def test_thread_counts_and_load_modes_are_bitwise_identical(tiny_model, batch4):
    ref = levit.Model(tiny_model)(batch4)
    for kwargs in ({"threads": 2}, {"threads": 3}, {"mmap": False}, {"verify": True}):
        assert np.array_equal(bits(levit.Model(tiny_model, **kwargs)(batch4)), bits(ref)), kwargs


def test_one_image_equals_its_row_of_a_batch(tiny_model, batch4):
    model = levit.Model(tiny_model)
    batch = model(batch4)
    for i in range(len(batch4)):
        assert np.array_equal(bits(model(batch4[i])[0]), bits(batch[i]))


def test_full_size_dumps_match_pytorch_and_the_rust_engine(levit_cli, tmp_path):
    golden = os.environ.get("LEVIT_GOLDEN_DIR")
    if not golden:
        require("the full-size golden dumps (LEVIT_GOLDEN_DIR)")
    golden = Path(golden)
    report = check_against_torch(golden, layouts=("timm",))
    print("\n".join(report))
    # Bitwise against the CLI: one input per variant (the CLI reloads each time).
    manifest = json.loads((golden / "manifest.json").read_text())
    x = np.load(golden / manifest["inputs"]["batch4"])
    for m in manifest["models"]:
        path = golden / m["files"]["timm"]
        assert np.array_equal(bits(levit.Model(path)(x)), bits(cli_infer(levit_cli, path, x, tmp_path))), m["name"]
