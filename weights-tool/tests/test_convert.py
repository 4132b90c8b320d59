"""convert: file format promises, layout equivalence, and agreement with timm's math."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from safetensors import safe_open

from conftest import save_fb, save_timm
from levit_weights.cli import main
from levit_weights.config import known_arches
from levit_weights.lvt import crc32_hex, read_lvt
from levit_weights.pack import unpack_panels
from lvt_reference import forward


def convert(ckpt, out, *extra):
    assert main(["convert", str(ckpt), "-o", str(out), "-q", *extra]) == 0
    return read_lvt(str(out))


def test_roundtrip_format(tiny_models, tmp_path):
    """safe_open reads it; header padding, 64-byte alignment, CRCs, metadata per the doc."""
    m = tiny_models["tiny_silu"]
    f = convert(save_timm(m, tmp_path / "c.safetensors"), tmp_path / "m.lvt")
    raw = (tmp_path / "m.lvt").read_bytes()
    (hlen,) = struct.unpack("<Q", raw[:8])
    assert (8 + hlen) % 64 == 0
    header = json.loads(raw[8:8 + hlen])
    assert raw[8:8 + hlen].rstrip(b" ") == raw[8:8 + hlen].rstrip()  # padded with spaces only
    meta = header.pop("__metadata__")
    assert meta["format"] == "levit-rs" and meta["format_version"] == "1"
    assert meta["config_crc32"] == crc32_hex(meta["config"].encode())
    sums = json.loads(meta["checksums"])
    end = 0
    with safe_open(str(tmp_path / "m.lvt"), "np") as st:
        assert set(st.keys()) == set(header)
        for name, info in header.items():
            b, e = info["data_offsets"]
            assert (8 + hlen + b) % 64 == 0, name
            assert sums[name] == crc32_hex(raw[8 + hlen + b: 8 + hlen + e])
            assert st.get_tensor(name).tobytes() == raw[8 + hlen + b: 8 + hlen + e]
            end = max(end, e)
    assert 8 + hlen + end == len(raw)
    cfg = json.loads(meta["config"])
    assert cfg["variant"] == "tiny_silu" and cfg["act"] == "silu" and cfg["distilled"] is False
    assert cfg["attn_ratio"] == [2.0, 1.5, 2.5] and cfg["num_classes"] == 17
    assert f.config.variant == "tiny_silu"


@pytest.mark.parametrize("name", ["tiny_hswish", "tiny_silu"])
def test_fb_and_timm_layouts_identical(tiny_models, tmp_path, name):
    m = tiny_models[name]
    cfg = known_arches()[name].config()
    a = convert(save_timm(m, tmp_path / "t.safetensors"), tmp_path / "t.lvt")
    b = convert(save_fb(m, cfg, tmp_path / "f.pth"), tmp_path / "f.lvt")
    assert a.data_bytes() == b.data_bytes()
    assert a.metadata["config"] == b.metadata["config"]
    assert a.metadata["checksums"] == b.metadata["checksums"]
    # a plain .bin / wrapped state_dict is read too
    torch.save({"state_dict": m.state_dict()}, tmp_path / "w.bin")
    assert convert(tmp_path / "w.bin", tmp_path / "w.lvt").data_bytes() == a.data_bytes()


def test_conv_layout(tiny_models, tmp_path):
    """levit_conv_* stores 1x1 projections as [o,i,1,1]; same bytes after squeezing."""
    from timm.models.levit import LevitDistilled

    m = tiny_models["tiny_hswish"]
    conv = LevitDistilled(use_conv=True, **known_arches()["tiny_hswish"].config().timm_kwargs())
    sd = {k: (v[..., None, None] if conv.state_dict()[k].ndim == 4 and v.ndim == 2 else v)
          for k, v in m.state_dict().items()}
    conv.load_state_dict(sd)
    n4 = sum(1 for k, v in conv.state_dict().items() if v.ndim == 4 and not k.startswith("stem"))
    assert n4 > 0
    a = convert(save_timm(m, tmp_path / "lin.safetensors"), tmp_path / "lin.lvt")
    b = convert(save_timm(conv, tmp_path / "conv.safetensors"), tmp_path / "conv.lvt")
    assert a.data_bytes() == b.data_bytes()
    assert "squeezed" in b.metadata["source"]


def test_folding_matches_timm_fuse(tiny_models, tmp_path):
    """Every folded weight equals timm's own fuse() (independent BN folding code)."""
    from timm.models.levit import ConvNorm, LinearNorm

    m = tiny_models["tiny_hswish"]
    f = convert(save_timm(m, tmp_path / "c.safetensors"), tmp_path / "m.lvt")
    name_map = {"attn_downsample.": "attn.", "q.ln": "q", "proj.ln": "proj", "mlp.ln1": "mlp.fc1",
                "mlp.ln2": "mlp.fc2"}
    checked = 0
    for mod_name, mod in m.named_modules():
        if not isinstance(mod, (ConvNorm, LinearNorm)):
            continue
        fused = mod.fuse()
        w = fused.weight.detach().double().numpy()
        if mod_name.startswith("stem."):
            lvt = f"stem.{int(mod_name[len('stem.conv'):]) - 1}"
            w = w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
        else:
            lvt = mod_name
            for a, b in name_map.items():
                lvt = lvt.replace(a, b)
        n = w.shape[0]
        got = unpack_panels(f.tensors[f"{lvt}.weight"], n)
        np.testing.assert_allclose(got, w, rtol=2e-6, atol=1e-7, err_msg=lvt)
        np.testing.assert_allclose(f.tensors[f"{lvt}.bias"][:n], fused.bias.detach().numpy(),
                                   rtol=2e-6, atol=1e-6, err_msg=lvt)
        packed = f.tensors[f"{lvt}.weight"]
        assert not packed.transpose(0, 2, 1).reshape(-1, packed.shape[1])[n:].any(), "panel padding"
        assert not f.tensors[f"{lvt}.bias"][n:].any(), "bias padding"
        checked += 1
    assert checked == len([k for k in f.tensors if k.endswith(".weight")]) - 1  # all but head
    hw = (m.head.fuse().weight + m.head_dist.fuse().weight).detach().double().numpy() / 2
    np.testing.assert_allclose(unpack_panels(f.tensors["head.weight"], 10), hw, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["tiny_hswish", "tiny_silu"])
def test_lvt_forward_matches_timm(tiny_models, tmp_path, name):
    """A NumPy forward that only reads the .lvt reproduces timm's logits and stage outputs."""
    from levit_weights.dump import StageTaps
    from levit_weights.inputs import make_inputs

    m = tiny_models[name]
    f = convert(save_timm(m, tmp_path / "c.safetensors"), tmp_path / "m.lvt")
    x = make_inputs(0)["batch4"]
    taps = StageTaps(m)
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).double().numpy()
    taps.close()
    logits, ours = forward(f, x)
    scale = max(1.0, np.abs(ref).max())
    assert np.abs(logits - ref).max() <= 1e-4 * scale
    for k, v in ours.items():
        assert np.abs(v - taps.out[k]).max() <= 1e-4 * max(1.0, np.abs(v).max()), k
    assert (np.argsort(-logits, 1)[:, :5] == np.argsort(-ref, 1)[:, :5]).all()


def test_half_precision_checkpoint(tiny_models, tmp_path):
    """f16 checkpoints are upcast before folding; same result as folding the f16 values in f32."""
    import copy

    m = tiny_models["tiny_silu"]
    h = copy.deepcopy(m).half()
    f16 = convert(save_timm(h, tmp_path / "h.safetensors"), tmp_path / "h.lvt")
    f32 = convert(save_timm(h.float(), tmp_path / "f.safetensors"), tmp_path / "f.lvt")
    assert f16.data_bytes() == f32.data_bytes()


def test_inspect(tiny_models, tmp_path, capsys):
    convert(save_timm(tiny_models["tiny_hswish"], tmp_path / "c.safetensors"), tmp_path / "m.lvt")
    assert main(["inspect", str(tmp_path / "m.lvt")]) == 0
    out = capsys.readouterr().out
    assert "all CRCs and alignment OK" in out and "head.weight" in out
    raw = bytearray((tmp_path / "m.lvt").read_bytes())
    raw[-1] ^= 0xFF
    (tmp_path / "bad.lvt").write_bytes(bytes(raw))
    assert main(["inspect", str(tmp_path / "bad.lvt")]) == 1
    assert "CRC-32" in capsys.readouterr().err


@pytest.mark.parametrize("R,stride", [(14, 1), (7, 1), (4, 1), (14, 2), (7, 2), (9, 2)])
def test_fb_bias_idxs_equal_formula(R, stride):
    """FB's first-seen dictionary order equals |dy|*R+|dx| (why the converter can ignore them)."""
    from levit_weights.layouts import fb_attention_bias_idxs

    Rq = (R - 1) // stride + 1
    qy, qx = np.divmod(np.arange(Rq * Rq), Rq)
    ky, kx = np.divmod(np.arange(R * R), R)
    want = np.abs(qy[:, None] * stride - ky) * R + np.abs(qx[:, None] * stride - kx)
    assert (fb_attention_bias_idxs(R, stride) == want).all()
