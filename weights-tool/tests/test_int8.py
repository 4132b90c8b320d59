"""int8 precision: the quantized layout against a from-scratch packing, convert and
recast --precision int8, --keep-float, and the strict reader's int8 checks. (That the
numpy quantization rounds exactly as the engine's is checked on the Rust side, against
fuzz/seeds/one_stage_int8.lvt written by `recast`: crates/levit/tests/int8_file.rs.)"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import rewrite_lvt, save_timm
from levit_weights.cli import main
from levit_weights.lvt import expected_table, int8_companion_names, read_lvt
from levit_weights.pack import (dequantize_panels_int8, int8_packed_shape, pack_panels, quantize_panels_int8,
                                repack_panels_bf16)


def convert(ckpt, out, *extra):
    assert main(["convert", str(ckpt), "-o", str(out), "-q", *extra]) == 0
    return read_lvt(str(out))


def scratch_quantize(w: np.ndarray):
    """docs/weight-format.md element by element, in f32: B = W^T [K,N]; m = max_k |B|,
    sw = m/127, qw = round_ties_even(B * (127/m)); data[p][kq][j][t] = qw[4kq+t][p*16+j]."""
    n, k = w.shape
    panels, kq = -(-n // 16), -(-k // 64) * 64
    b = w.astype(np.float32).T
    data = np.zeros((panels, kq // 4, 16, 4), dtype=np.int8)
    scale = np.zeros(panels * 16, dtype=np.float32)
    comp = np.zeros(panels * 16, dtype=np.int32)
    for col in range(n):
        m = np.float32(max(abs(float(v)) for v in b[:, col]))
        if m == 0:
            continue
        scale[col] = m / np.float32(127)
        inv = np.float32(127) / m
        for kk in range(k):
            q = int(np.rint(np.float32(b[kk, col]) * inv))
            data[col // 16, kk // 4, col % 16, kk % 4] = q
            comp[col] += 128 * q
    return data, scale, comp


@pytest.mark.parametrize("n,k", [(16, 64), (37, 45), (1, 1), (16, 27), (48, 130), (10, 33), (33, 200)])
def test_layout_matches_a_from_scratch_quantization(n, k):
    rng = np.random.default_rng(n * 1000 + k)
    w = rng.standard_normal((n, k)) * 10.0 ** rng.integers(-3, 3, (n, 1))
    if n > 3:
        w[2] = 0.0  # an all-zero column: scale 0, weights 0
    data, scale, comp = quantize_panels_int8(pack_panels(w))
    assert data.dtype == np.int8 and scale.dtype == np.dtype("<f4") and comp.dtype == np.dtype("<i4")
    assert data.shape == int8_packed_shape(k, n) == (-(-n // 16), -(-k // 64) * 16, 16, 4)
    assert data.nbytes % 64 == 0 and data[0, 0].nbytes == 64 and scale.nbytes % 64 == 0
    want = scratch_quantize(w)
    np.testing.assert_array_equal(data, want[0])
    np.testing.assert_array_equal(scale, want[1])
    np.testing.assert_array_equal(comp, want[2])
    assert data.min() >= -127 and data.max() <= 127
    back = dequantize_panels_int8(data, scale, n, k)
    w32 = w.astype(np.float32)
    assert (np.abs(back - w32) <= scale[:n, None] * 0.5001 + 1e-30).all()


def test_ties_round_to_even():
    # columns whose values land exactly on .5 steps after scaling by 127/m = 1
    w = np.array([[127.0, 0.5, 1.5, 2.5, -0.5, -1.5, 126.5]], dtype=np.float64)
    data, scale, _ = quantize_panels_int8(pack_panels(w))
    assert scale[0] == np.float32(1.0)
    q = data[0].reshape(-1, 16, 4).transpose(1, 0, 2).reshape(16, -1)[0, :7]
    np.testing.assert_array_equal(q, [127, 0, 2, 2, 0, -2, 126])


def test_int8_convert_round_trip(tiny_models, tmp_path):
    m = tiny_models["tiny_silu"]
    ck = save_timm(m, tmp_path / "c.safetensors")
    f32 = convert(ck, tmp_path / "f.lvt")
    q = convert(ck, tmp_path / "q.lvt", "--precision", "int8")
    assert (q.format_version, q.precision, q.keep_float) == ("2", "int8", ())
    table = expected_table(q.config, "int8")
    assert list(q.tensors) == list(table)
    stem_ch = q.config.stem_channels()
    n_int8 = 0
    for name, t in f32.tensors.items():
        if not name.endswith(".weight"):
            assert q.tensors[name].tobytes() == t.tobytes(), name
            continue
        if name.startswith("stem.") and stem_ch[int(name.split(".")[1])] <= 16:
            assert q.tensors[name].dtype == np.dtype("<f4"), name  # runs in f32
            assert q.tensors[name].tobytes() == t.tobytes(), name
            continue
        n_int8 += 1
        data, scale, comp = quantize_panels_int8(t)
        s, c = int8_companion_names(name)
        np.testing.assert_array_equal(q.tensors[name], data, err_msg=name)
        np.testing.assert_array_equal(q.tensors[s], scale, err_msg=name)
        np.testing.assert_array_equal(q.tensors[c], comp, err_msg=name)
    assert n_int8 >= 5
    # recast f32 -> int8 gives the same file contents as convert --precision int8
    assert main(["recast", str(tmp_path / "f.lvt"), "-o", str(tmp_path / "r.lvt"), "--precision", "int8"]) == 0
    r = read_lvt(str(tmp_path / "r.lvt"))
    assert r.data_bytes() == q.data_bytes()
    # smaller than the f32 file (about a quarter for the paper variants; these tiny
    # models are half bias tables and biases, which stay f32)
    assert (tmp_path / "q.lvt").stat().st_size < 0.6 * (tmp_path / "f.lvt").stat().st_size


def test_keep_float_stores_kept_layers_in_bf16(tiny_models, tmp_path, capsys):
    ck = save_timm(tiny_models["tiny_hswish"], tmp_path / "c.safetensors")
    bf = convert(ck, tmp_path / "b.lvt", "--precision", "bf16")
    q = convert(ck, tmp_path / "q.lvt", "--precision", "int8", "--keep-float", "stem,head,stage1")
    assert q.precision == "int8"
    kept = [k for k, v in q.tensors.items() if k.endswith(".weight") and v.dtype == np.dtype("<u2")]
    assert kept and set(q.keep_float) == {k[: -len(".weight")] for k in kept}
    for name in kept:
        assert name.startswith(("stem.", "head.", "stages.1.")), name
        assert q.tensors[name].tobytes() == bf.tensors[name].tobytes(), name
    assert any(k.startswith("stages.0.") and v.dtype == np.int8 for k, v in q.tensors.items())
    assert not any(k.startswith("stages.1.") and v.dtype == np.int8 for k, v in q.tensors.items())
    assert main(["inspect", str(tmp_path / "q.lvt")]) == 0
    assert "kept in float" in capsys.readouterr().out
    # keeping everything is the bf16 file
    allf = convert(ck, tmp_path / "a.lvt", "--precision", "int8", "--keep-float", "all")
    assert allf.precision == "bf16" and allf.data_bytes() == bf.data_bytes()


def test_bad_int8_requests_are_errors(tiny_models, tmp_path, capsys):
    ck = save_timm(tiny_models["tiny_hswish"], tmp_path / "c.safetensors")
    for extra, words in [(["--keep-float", "stem"], "applies to --precision int8"),
                         (["--precision", "int8", "--keep-float", "stage7"], "names no layer"),
                         (["--precision", "int8", "--keep-float", "stem;head"], "not a layer name")]:
        assert main(["convert", ck, "-o", str(tmp_path / "m.lvt"), *extra]) == 1, extra
        assert words in capsys.readouterr().err, extra
        assert not (tmp_path / "m.lvt").exists()
    convert(ck, tmp_path / "q.lvt", "--precision", "int8")
    assert main(["recast", str(tmp_path / "q.lvt"), "-o", str(tmp_path / "r.lvt"), "--precision", "f32"]) == 1
    assert "cannot be recast" in capsys.readouterr().err
    convert(ck, tmp_path / "b.lvt", "--precision", "bf16")
    assert main(["recast", str(tmp_path / "b.lvt"), "-o", str(tmp_path / "r.lvt"), "--precision", "int8"]) == 1
    assert "quantized from the f32 weights" in capsys.readouterr().err


def _rewrite(src, dst, edit_header, edit_data=None):
    rewrite_lvt(src, dst, edit_header, edit_data, fix_checksums=True)


def test_strict_reader_refuses_bad_int8_files(tiny_models, tmp_path, capsys):
    ck = save_timm(tiny_models["tiny_hswish"], tmp_path / "c.safetensors")
    convert(ck, tmp_path / "q.lvt", "--precision", "int8")
    w = "stages.0.blocks.0.mlp.fc1.weight"

    def poke(offset_in, value):
        def edit(h, data):
            b = h[offset_in]["data_offsets"][0]
            data[b] = value
        return edit

    cases = {
        "scale as I32": (lambda h: h[w + "_scale"].update(dtype="I32"), None),
        "comp as F32": (lambda h: h[w + "_comp"].update(dtype="F32"), None),
        "I32 in version 1": (lambda h: h["__metadata__"].update(format_version="1"), None),
        "weight -128": (lambda h: None, poke(w, 0x80)),
        "comp off by one": (lambda h: None, poke(w + "_comp", 1)),
    }
    for what, (edit_h, edit_d) in cases.items():
        _rewrite(tmp_path / "q.lvt", tmp_path / "x.lvt", edit_h, edit_d)
        assert main(["inspect", str(tmp_path / "x.lvt")]) == 1, what
        assert "not a valid .lvt" in capsys.readouterr().err, what
