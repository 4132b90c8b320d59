"""bf16 precision: rounding, the packed layout, convert --precision bf16, recast, and
f32 output unchanged (format version 1, byte for byte)."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
import torch

from conftest import rewrite_lvt, save_timm
from levit_weights.cli import main
from levit_weights.lvt import crc32_hex, expected_table, read_lvt, write_lvt
from levit_weights.pack import (bf16_bits, bf16_packed_shape, bf16_to_f32, pack_panels, pack_panels_bf16,
                                repack_panels_bf16, unpack_panels, unpack_panels_bf16)
from lvt_reference import forward

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "golden-tiny")


def convert(ckpt, out, *extra):
    assert main(["convert", str(ckpt), "-o", str(out), "-q", *extra]) == 0
    return read_lvt(str(out))


def torch_bf16_bits(x: np.ndarray) -> np.ndarray:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(torch.bfloat16) \
        .view(torch.int16).numpy().view(np.uint16)


def test_rounding_is_nearest_even_like_torch():
    rng = np.random.default_rng(1)
    x = np.concatenate([
        rng.standard_normal(10000).astype(np.float32) * 10.0 ** rng.integers(-30, 30, 10000),
        # exact ties (low half 0x8000) with even and odd kept halves, both signs
        (np.arange(0x3F80, 0x3F90, dtype=np.uint32) << 16 | 0x8000).view(np.float32),
        (np.arange(0xBF80, 0xBF90, dtype=np.uint32) << 16 | 0x8000).view(np.float32),
        # just below and above ties, subnormals, zeros, extremes, infinities
        np.array([0x3F807FFF, 0x3F808001, 0x00000001, 0x00008000, 0x0001FFFF, 0x80000000, 0,
                  0x7F7FFFFF, 0xFF7FFFFF, 0x7F800000, 0xFF800000, 0x7F7F7FFF],
                 dtype=np.uint32).view(np.float32),
    ])
    np.testing.assert_array_equal(bf16_bits(x), torch_bf16_bits(x))
    assert bf16_bits(np.float32([1.0]))[0] == 0x3F80
    assert bf16_bits((np.uint32([0x3F808000])).view(np.float32))[0] == 0x3F80  # tie -> even
    assert bf16_bits((np.uint32([0x3F818000])).view(np.float32))[0] == 0x3F82  # tie -> even
    assert bf16_bits(np.float32([np.finfo(np.float32).max]))[0] == 0x7F80  # overflows to inf
    # NaN stays NaN (quiet), whatever its payload and sign
    nans = np.uint32([0x7FC00000, 0x7F800001, 0xFFFFFFFF, 0x7FA00000]).view(np.float32)
    got = bf16_bits(nans)
    assert np.isnan(bf16_to_f32(got)).all() and ((got & 0x7FC0) == 0x7FC0).all()
    # exact round trip of every bf16 that is not NaN
    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    finite = every[~np.isnan(bf16_to_f32(every))]
    np.testing.assert_array_equal(bf16_bits(bf16_to_f32(finite)), finite)


def scratch_pack(w: np.ndarray) -> np.ndarray:
    """docs/weight-format.md, element by element: B = W^T [K,N];
    packed[p][kp][j][t] = bf16(B[2*kp+t][p*16+j]), 0 past K or N; [ceil(N/16), KP/2, 16, 2]."""
    n, k = w.shape
    kp_total = -(-k // 32) * 32
    panels = -(-n // 16)
    b = w.astype(np.float32).T
    out = np.zeros((panels, kp_total // 2, 16, 2), dtype=np.uint16)
    for p in range(panels):
        for kp in range(kp_total // 2):
            for j in range(16):
                for t in range(2):
                    kk, col = 2 * kp + t, p * 16 + j
                    if kk < k and col < n:
                        out[p, kp, j, t] = torch_bf16_bits(b[kk:kk + 1, col])[0]
    return out


@pytest.mark.parametrize("n,k", [(16, 32), (37, 45), (1, 1), (16, 27), (48, 64), (10, 33), (33, 96)])
def test_layout_matches_a_from_scratch_packing(n, k):
    rng = np.random.default_rng(n * 1000 + k)
    w = rng.standard_normal((n, k))  # f64: rounded to f32, then to bf16
    got = pack_panels_bf16(w)
    assert got.dtype == np.dtype("<u2") and got.flags.c_contiguous
    assert got.shape == bf16_packed_shape(k, n) == (-(-n // 16), -(-k // 32) * 16, 16, 2)
    np.testing.assert_array_equal(got, scratch_pack(w))
    assert got.nbytes % 64 == 0 and got[0, 0].nbytes == 64  # a row of 16 pairs is 64 bytes
    # from the f32 panels (what convert does) gives the same bits; unpacking inverts it
    np.testing.assert_array_equal(repack_panels_bf16(pack_panels(w)), got)
    back = unpack_panels_bf16(got, n, k)
    np.testing.assert_array_equal(back, bf16_to_f32(bf16_bits(w.astype(np.float32))))
    assert np.abs(back - w).max() <= 2.0 ** -8 * np.abs(w).max()


def test_bf16_convert_round_trip(tiny_models, tmp_path):
    m = tiny_models["tiny_silu"]
    ck = save_timm(m, tmp_path / "c.safetensors")
    f32 = convert(ck, tmp_path / "f.lvt")
    bf = convert(ck, tmp_path / "b.lvt", "--precision", "bf16")
    assert (f32.format_version, f32.precision) == ("1", "f32")
    assert (bf.format_version, bf.precision) == ("2", "bf16")
    assert list(bf.tensors) == list(f32.tensors)  # same names, same order
    table = expected_table(bf.config, "bf16")
    n_weights = 0
    for name, t in bf.tensors.items():
        dtype, shape = table[name]
        assert t.shape == shape, name
        if name.endswith(".weight"):
            n_weights += 1
            assert dtype == "BF16" and t.dtype == np.dtype("<u2"), name
            # the bf16 rounding of the f32 file's weights, in the bf16 layout
            np.testing.assert_array_equal(t, repack_panels_bf16(f32.tensors[name]), err_msg=name)
            n = t.shape[0] * 16
            np.testing.assert_array_equal(
                unpack_panels_bf16(t, n, f32.tensors[name].shape[1]),
                bf16_to_f32(bf16_bits(unpack_panels(f32.tensors[name], n))), err_msg=name)
        else:
            assert dtype == "F32" and t.dtype == np.dtype("<f4"), name
            assert t.tobytes() == f32.tensors[name].tobytes(), name  # biases, bias tables
    assert n_weights == 4 + 1 + sum(4 * d for d in bf.config.depth) + 5 * (bf.config.num_stages - 1)
    # header, alignment and CRCs, read independently of read_lvt
    raw = (tmp_path / "b.lvt").read_bytes()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen])
    meta = header.pop("__metadata__")
    assert meta["format_version"] == "2" and meta["config"] == f32.metadata["config"]
    sums = json.loads(meta["checksums"])
    for name, info in header.items():
        b, e = info["data_offsets"]
        assert info["dtype"] == ("BF16" if name.endswith(".weight") else "F32"), name
        assert (8 + hlen + b) % 64 == 0 and (e - b) % 64 == 0, name
        assert e - b == (2 if info["dtype"] == "BF16" else 4) * int(np.prod(info["shape"])), name
        assert sums[name] == crc32_hex(raw[8 + hlen + b: 8 + hlen + e]), name
    # safetensors (through torch, numpy has no bfloat16) sees the same values
    from safetensors import safe_open
    with safe_open(str(tmp_path / "b.lvt"), "pt") as st:
        w = st.get_tensor("head.weight")
        assert w.dtype == torch.bfloat16
        assert w.view(torch.int16).numpy().view(np.uint16).tobytes() == bf.tensors["head.weight"].tobytes()
    assert (tmp_path / "b.lvt").stat().st_size < 0.7 * (tmp_path / "f.lvt").stat().st_size


@pytest.mark.parametrize("name", ["tiny_hswish", "tiny_silu"])
def test_bf16_file_is_the_bf16_rounded_model(tiny_models, tmp_path, name):
    """The reference forward (decoding the layout from the doc) on the bf16 file equals
    the forward on the f32 file of the same rounded weights, and stays near timm."""
    m = tiny_models[name]
    ck = save_timm(m, tmp_path / "c.safetensors")
    bf = convert(ck, tmp_path / "b.lvt", "--precision", "bf16")
    assert main(["recast", str(tmp_path / "b.lvt"), "-o", str(tmp_path / "r.lvt"), "--precision", "f32"]) == 0
    rounded = read_lvt(str(tmp_path / "r.lvt"))
    assert rounded.precision == "f32" and rounded.format_version == "1"
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    lb, tb = forward(bf, x)
    lr, tr = forward(rounded, x)
    np.testing.assert_allclose(lb, lr, rtol=1e-12, atol=1e-12)
    for k in tb:
        np.testing.assert_allclose(tb[k], tr[k], rtol=1e-12, atol=1e-12, err_msg=k)
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).double().numpy()
    err = np.abs(lb - ref).max() / max(1.0, np.abs(ref).max())
    assert 1e-6 < err < 0.05, err  # bf16 weights: visibly rounded, still the same model


def test_recast_f32_to_bf16_equals_convert(tiny_models, tmp_path):
    ck = save_timm(tiny_models["tiny_hswish"], tmp_path / "c.safetensors")
    convert(ck, tmp_path / "f.lvt")
    bf = convert(ck, tmp_path / "b.lvt", "--precision", "bf16")
    assert main(["recast", str(tmp_path / "f.lvt"), "-o", str(tmp_path / "r.lvt"), "--precision", "bf16"]) == 0
    r = read_lvt(str(tmp_path / "r.lvt"))
    assert r.data_bytes() == bf.data_bytes() and r.metadata["checksums"] == bf.metadata["checksums"]
    assert "recast f32 -> bf16" in r.metadata["source"]
    # recasting to the same precision changes nothing
    assert main(["recast", str(tmp_path / "f.lvt"), "-o", str(tmp_path / "s.lvt"), "--precision", "f32"]) == 0
    assert (tmp_path / "s.lvt").read_bytes() == (tmp_path / "f.lvt").read_bytes()


def test_f32_output_is_unchanged(tiny_models, tmp_path):
    """--precision f32 is the default, writes version 1 and the bytes this tool always wrote."""
    ck = save_timm(tiny_models["tiny_hswish"], tmp_path / "c.safetensors")
    a = convert(ck, tmp_path / "a.lvt")
    convert(ck, tmp_path / "b.lvt", "--precision", "f32")
    assert (tmp_path / "a.lvt").read_bytes() == (tmp_path / "b.lvt").read_bytes()
    assert a.format_version == "1" and set(a.dtypes().values()) == {"F32"}
    # The committed fixtures were written before format version 2: rewriting their
    # tensors with today's writer reproduces them byte for byte.
    for model in ("tiny_hswish", "tiny_silu"):
        path = os.path.join(FIXTURES, model, "model_timm.lvt")
        f = read_lvt(path)
        write_lvt(str(tmp_path / "w.lvt"), f.tensors, f.config, f.metadata["source"])
        assert (tmp_path / "w.lvt").read_bytes() == open(path, "rb").read(), model


def test_inspect_shows_dtypes(tiny_models, tmp_path, capsys):
    ck = save_timm(tiny_models["tiny_hswish"], tmp_path / "c.safetensors")
    convert(ck, tmp_path / "b.lvt", "--precision", "bf16")
    assert main(["inspect", str(tmp_path / "b.lvt")]) == 0
    out = capsys.readouterr().out
    assert "v2" in out and "precision: bf16 (31 BF16, 37 F32)" in out
    assert [ln.split()[1] for ln in out.splitlines() if ln.strip().startswith("head.")] == ["BF16", "F32"]


def _rewrite(src, dst, edit_header, edit_data=None):
    rewrite_lvt(src, dst, edit_header, edit_data, fix_checksums=False)


def test_strict_reader_refuses_bad_bf16_files(tiny_models, tmp_path, capsys):
    ck = save_timm(tiny_models["tiny_hswish"], tmp_path / "c.safetensors")
    convert(ck, tmp_path / "b.lvt", "--precision", "bf16")
    cases = {
        "v1 with BF16": lambda h: h["__metadata__"].update(format_version="1"),
        "version 3": lambda h: h["__metadata__"].update(format_version="3"),
        "BF16 labelled F32": lambda h: h["head.weight"].update(dtype="F32"),
        "unknown dtype": lambda h: h["head.weight"].update(dtype="F16"),
        "mixed precisions": lambda h: h["stem.0.weight"].update(dtype="F32", shape=[1, 27, 16]),
        "bias in BF16": lambda h: h["head.bias"].update(dtype="BF16", shape=[32]),
    }
    for what, edit in cases.items():
        _rewrite(tmp_path / "b.lvt", tmp_path / "x.lvt", edit)
        assert main(["inspect", str(tmp_path / "x.lvt")]) == 1, what
        assert "not a valid .lvt" in capsys.readouterr().err, what


def test_unknown_precision_is_a_usage_error(tiny_models, tmp_path, capsys):
    ck = save_timm(tiny_models["tiny_hswish"], tmp_path / "c.safetensors")
    with pytest.raises(SystemExit) as e:
        main(["convert", ck, "-o", str(tmp_path / "m.lvt"), "--precision", "int4"])
    assert e.value.code == 2
    assert not (tmp_path / "m.lvt").exists()
