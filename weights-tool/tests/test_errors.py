"""User-facing errors: one line prefix, no traceback, the problem named."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import save_timm
from levit_weights.cli import main
from levit_weights.errors import LevitWeightsError


def run_cli(capsys, *argv):
    rc = main(list(argv))
    err = capsys.readouterr().err
    return rc, err


@pytest.fixture
def tiny_sd(tiny_models):
    return {k: v.clone() for k, v in tiny_models["tiny_hswish"].state_dict().items()}


def test_missing_and_unexpected_keys(tiny_sd, tmp_path, capsys):
    del tiny_sd["stages.1.blocks.1.mlp.ln2.bn.running_var"]
    tiny_sd["stages.1.blocks.1.mlp.extra.weight"] = torch.zeros(3)
    tiny_sd["stages.0.blocks.0.attn.attention_bias_idxs"] = torch.zeros(196, 196, dtype=torch.long)
    from safetensors.torch import save_file

    save_file(tiny_sd, str(tmp_path / "c.safetensors"))
    rc, err = run_cli(capsys, "convert", str(tmp_path / "c.safetensors"), "-o", str(tmp_path / "m.lvt"))
    assert rc == 1
    assert err.startswith("levit-weights: error: ")
    assert "missing keys (timm names) (1):\n  stages.1.blocks.1.mlp.ln2.bn.running_var" in err
    assert "unexpected keys (1):\n  stages.1.blocks.1.mlp.extra.weight" in err
    assert "attention_bias_idxs" not in err  # ignorable
    assert not (tmp_path / "m.lvt").exists()


def test_fb_unexpected_key_named_in_fb_terms(tiny_models, tmp_path, capsys):
    from levit_weights.config import known_arches
    from levit_weights.layouts import timm_to_fb

    sd = timm_to_fb(tiny_models["tiny_hswish"].state_dict(), known_arches()["tiny_hswish"].config())
    sd["blocks.4.m.qkv.c.weight"] = sd["blocks.4.m.qkv.c.weight"][:, :-1].clone()
    sd["blocks.0.m.surprise"] = torch.zeros(1)
    torch.save({"model": sd, "epoch": 3}, tmp_path / "fb.pth")
    rc, err = run_cli(capsys, "convert", str(tmp_path / "fb.pth"), "-o", str(tmp_path / "m.lvt"))
    assert rc == 1
    assert "blocks.0.m.surprise" in err
    assert ("blocks.4.m.qkv.c.weight (timm: stages.1.blocks.0.attn.qkv.linear.weight): "
            "checkpoint [96, 47], expected [96, 48]") in err


def test_unreadable_files(tmp_path, capsys):
    rc, err = run_cli(capsys, "convert", str(tmp_path / "nope.pth"), "-o", str(tmp_path / "m.lvt"))
    assert rc == 1 and "cannot read checkpoint" in err and "no such file" in err
    (tmp_path / "junk.pth").write_bytes(b"\x00garbage" * 10)
    rc, err = run_cli(capsys, "convert", str(tmp_path / "junk.pth"), "-o", str(tmp_path / "m.lvt"))
    assert rc == 1 and "cannot read checkpoint" in err
    (tmp_path / "bad.safetensors").write_bytes(b"\x10" + b"\x00" * 7 + b"{oops")
    rc, err = run_cli(capsys, "convert", str(tmp_path / "bad.safetensors"), "-o", str(tmp_path / "m.lvt"))
    assert rc == 1 and "cannot read checkpoint" in err and "safetensors" in err


def test_not_levit(tmp_path, capsys):
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "x.pth")
    rc, err = run_cli(capsys, "convert", str(tmp_path / "x.pth"), "-o", str(tmp_path / "m.lvt"))
    assert rc == 1 and "not a LeViT checkpoint" in err


def test_no_traceback_in_subprocess(tmp_path):
    p = subprocess.run([sys.executable, "-m", "levit_weights", "convert", str(tmp_path / "none.pth"),
                        "-o", str(tmp_path / "m.lvt")], capture_output=True, text=True)
    assert p.returncode == 1
    assert p.stderr.startswith("levit-weights: error: cannot read checkpoint")
    assert "Traceback" not in p.stderr


def test_variant_mismatch_exit_code(tiny_models, tmp_path, capsys):
    ck = save_timm(tiny_models["tiny_hswish"], tmp_path / "c.safetensors")
    rc, err = run_cli(capsys, "convert", ck, "-o", str(tmp_path / "m.lvt"), "--variant", "tiny_silu")
    assert rc == 1 and "--variant tiny_silu" in err and "shape mismatches" in err
    assert "looks like tiny_hswish" in err


# ---- img_size: what timm builds but the engine cannot run (issue 11, point 10) --------

def _tiny_at(img_size, seed=7):
    from timm.models import levit as tl

    from levit_weights.config import TINY_ARCHES

    torch.manual_seed(seed)
    return tl.LevitDistilled(**TINY_ARCHES["tiny_hswish"].config(img_size=img_size).timm_kwargs()).eval()


@pytest.mark.parametrize("img_size", [8, 15])
def test_img_size_below_16_is_refused(img_size, tmp_path, capsys):
    """timm builds the model (empty bias tables, a 0x0 grid) but cannot run it."""
    m = _tiny_at(img_size)
    with pytest.raises(RuntimeError):
        with torch.no_grad():
            m(torch.zeros(1, 3, img_size, img_size))
    ck = save_timm(m, tmp_path / "c.safetensors")
    rc, err = run_cli(capsys, "convert", ck, "-o", str(tmp_path / "m.lvt"))
    assert rc == 1
    assert err.startswith("levit-weights: error: unsupported config: img_size: 0 is below 16: "
                          "the token grid (img_size // 16) is empty, and timm cannot run such a "
                          "model either (read from the 0x0 token grid")
    assert "Traceback" not in err
    assert not (tmp_path / "m.lvt").exists()


@pytest.mark.parametrize("img_size,runs_at", [(17, 16), (40, 32), (100, 96), (225, 224)])
def test_img_size_not_a_multiple_of_16_converts_as_the_size_timm_runs(img_size, runs_at, tmp_path):
    """timm's bias tables cover an img_size // 16 grid: it runs only 16 * (img_size // 16)
    inputs, and the checkpoint is that model's. The converter writes that size."""
    from levit_weights.convert import convert_checkpoint
    from levit_weights.lvt import read_lvt

    m = _tiny_at(img_size)
    with pytest.raises(RuntimeError):
        with torch.no_grad():
            m(torch.zeros(1, 3, img_size, img_size))
    with torch.no_grad():
        m(torch.zeros(1, 3, runs_at, runs_at))
    ck = save_timm(m, tmp_path / "c.safetensors")
    convert_checkpoint(ck, str(tmp_path / "m.lvt"))
    f = read_lvt(str(tmp_path / "m.lvt"))
    assert f.config.img_size == runs_at
    ref = _tiny_at(runs_at)
    ref.load_state_dict(m.state_dict())
    convert_checkpoint(save_timm(ref, tmp_path / "r.safetensors"), str(tmp_path / "r.lvt"))
    assert read_lvt(str(tmp_path / "r.lvt")).data_bytes() == f.data_bytes()


def test_img_size_above_the_engine_limit_is_refused(tiny_sd, tmp_path, capsys):
    from safetensors.torch import save_file

    # A 129x129 token grid: img_size 2064 (building it in timm would gather GBs of indices).
    for k in list(tiny_sd):
        if k.startswith("stages.0.") and k.endswith("attention_biases"):
            tiny_sd[k] = torch.zeros(tiny_sd[k].shape[0], 129 * 129)
    save_file(tiny_sd, str(tmp_path / "c.safetensors"))
    rc, err = run_cli(capsys, "convert", str(tmp_path / "c.safetensors"), "-o", str(tmp_path / "m.lvt"))
    assert rc == 1
    assert "unsupported config: img_size: 2064 is above levit's limit of 2048" in err


@pytest.mark.parametrize("img_size,reason", [
    (0, "0 is below 16"),
    (40, "40 is not a multiple of 16: timm runs such a model only on 32x32 inputs"),
    (4096, "4096 is above levit's limit of 2048"),
])
def test_lvt_with_an_unrunnable_img_size_is_refused(img_size, reason, tiny_models, tmp_path):
    """read_lvt refuses the img_sizes the engine's Config::dims refuses, same words."""
    import json as _json

    from levit_weights.convert import convert_checkpoint
    from levit_weights.lvt import crc32_hex, read_lvt

    ck = save_timm(tiny_models["tiny_hswish"], tmp_path / "c.safetensors")
    convert_checkpoint(ck, str(tmp_path / "m.lvt"))
    buf = bytearray((tmp_path / "m.lvt").read_bytes())
    n = int.from_bytes(buf[:8], "little")
    header = _json.loads(buf[8:8 + n])
    cfg = _json.loads(header["__metadata__"]["config"])
    cfg["img_size"] = img_size
    s = _json.dumps(cfg, separators=(",", ":"))
    header["__metadata__"]["config"] = s
    header["__metadata__"]["config_crc32"] = crc32_hex(s.encode())
    new = _json.dumps(header, separators=(",", ":")).encode()
    new += b" " * (-(8 + len(new)) % 8)
    if len(new) > n:
        pytest.skip("header grew")
    new += b" " * (n - len(new))
    (tmp_path / "x.lvt").write_bytes(n.to_bytes(8, "little") + new + bytes(buf[8 + n:]))
    with pytest.raises(LevitWeightsError, match="unsupported config: img_size: " + reason):
        read_lvt(str(tmp_path / "x.lvt"))
