"""User-facing errors: one line prefix, no traceback, the problem named."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import save_timm
from levit_weights.cli import main


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
