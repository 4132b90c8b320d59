"""`levit.convert` from a timm module, a state dict and a checkpoint path makes the
same model as `levit-weights convert`, and gives the converter's errors unchanged."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import levit
from conftest import bits, require


@pytest.fixture(scope="module")
def timm_tiny():
    try:
        import timm  # noqa: F401
        import torch
        import levit_weights  # noqa: F401
    except ImportError:
        require("torch, timm and levit_weights (pip install ./weights-tool)")
    from timm.models.levit import Levit

    torch.manual_seed(0)
    m = Levit(img_size=224, num_classes=10, embed_dim=(32, 48, 64), key_dim=8,
              num_heads=(2, 3, 4), depth=(1, 1, 1), attn_ratio=2.0, mlp_ratio=2.0)
    # Non-trivial BatchNorm statistics, so that folding them is tested.
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
    return m.eval()


def weights_tool_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "levit_weights", *args], capture_output=True, text=True)


def test_convert_matches_levit_weights_convert(timm_tiny, tmp_path):
    import torch

    ckpt = tmp_path / "tiny.pth"
    torch.save(timm_tiny.state_dict(), ckpt)
    r = weights_tool_cli("convert", str(ckpt), "-o", str(tmp_path / "cli.lvt"))
    assert r.returncode == 0, r.stderr
    summary = levit.convert(timm_tiny, tmp_path / "module.lvt")
    assert summary["classes"] == 10
    levit.convert(timm_tiny.state_dict(), tmp_path / "state.lvt")
    levit.convert(ckpt, tmp_path / "path.lvt")

    x = np.random.default_rng(1).standard_normal((2, 3, 224, 224)).astype(np.float32)
    ref = levit.Model(tmp_path / "cli.lvt")(x)
    for name in ("module", "state", "path"):
        assert np.array_equal(bits(levit.Model(tmp_path / f"{name}.lvt")(x)), bits(ref)), name
    with torch.no_grad():
        torch_logits = timm_tiny(torch.from_numpy(x)).numpy()
    err = float(np.max(np.abs(ref - torch_logits)))
    assert err <= 1e-4 * max(1.0, float(np.max(np.abs(torch_logits)))), err


def test_converter_errors_come_through_unchanged(timm_tiny, tmp_path):
    from levit_weights.errors import LevitWeightsError

    missing = str(tmp_path / "missing.pth")
    r = weights_tool_cli("convert", missing, "-o", str(tmp_path / "x.lvt"))
    assert r.returncode != 0
    with pytest.raises(LevitWeightsError) as e:
        levit.convert(missing, tmp_path / "x.lvt")
    assert str(e.value) in r.stderr
    with pytest.raises(TypeError, match="state dict"):
        levit.convert(42, tmp_path / "x.lvt")


def test_torch_is_not_imported_by_levit():
    code = "import sys, levit, numpy; levit.IMAGENET_CLASSES; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert out.stdout.strip() == "False", out.stderr
