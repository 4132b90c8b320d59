"""Kernel layouts of docs/weight-format.md: 16-column GEMM panels (f32, bf16 with
interleaved K pairs, or int8 with K in groups of 4 plus per-column scales and
compensations), padded vectors.

The engine mmaps the file and feeds these bytes straight to its GEMM, so this is the
one place that decides where every weight lands.
"""

from __future__ import annotations

import numpy as np

NR = 16  # panel width, fixed by format_version 1
KB = 32  # bf16 panels pad K to a multiple of this (one AMX tile depth), format_version 2
KQ = 64  # int8 panels pad K to a multiple of this (one AMX tdpbusd tile depth), format_version 2
ZERO_POINT = 128  # the activations' zero point: comp = 128 * sum_k qw
# Stem convs over at most this many input channels run in f32 in an int8 model (the
# engine's levit_graph::F32_CONV_MAX_CIN): an int8 file stores them in f32.
F32_CONV_MAX_CIN = 16
PRECISIONS = ("f32", "bf16", "int8")


def pad16(n: int) -> int:
    return -(-n // NR) * NR


def pad32(k: int) -> int:
    return -(-k // KB) * KB


def pack_panels(w: np.ndarray) -> np.ndarray:
    """W [N,K] (PyTorch [out,in]) -> packed[p][k][j] = W[p*16+j][k], zero past N; [ceil(N/16),K,16] f32."""
    n, k = w.shape
    padded = np.zeros((pad16(n), k), dtype=np.float64)
    padded[:n] = w
    out = padded.reshape(-1, NR, k).transpose(0, 2, 1)
    return np.ascontiguousarray(out, dtype="<f4")


def unpack_panels(p: np.ndarray, n: int) -> np.ndarray:
    """Inverse of pack_panels (tests, inspect): [P,K,16] -> W [n,K]."""
    P, k, nr = p.shape
    return p.transpose(0, 2, 1).reshape(P * nr, k)[:n]


def pad_vector(b: np.ndarray) -> np.ndarray:
    """Bias [N] -> [ceil(N/16)*16] f32, zero-padded."""
    out = np.zeros(pad16(b.shape[0]), dtype="<f4")
    out[: b.shape[0]] = b
    return out


def stem_gemm_weight(w: np.ndarray) -> np.ndarray:
    """Conv W [Cout,Cin,3,3] -> GEMM W [Cout, 9*Cin] with K in (ky,kx,ci) order (the im2col order)."""
    cout = w.shape[0]
    return w.transpose(0, 2, 3, 1).reshape(cout, -1)


def pad_rows(a: np.ndarray) -> np.ndarray:
    """Bias table [H, L] -> [H, ceil(L/16)*16] f32, each row zero-padded."""
    h, l = a.shape
    out = np.zeros((h, pad16(l)), dtype="<f4")
    out[:, :l] = a
    return out


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """f32 values -> bf16 bit patterns (uint16), round to nearest, ties to even, as
    `vcvtne2ps2bf16` (and torch's `.to(torch.bfloat16)`); NaN stays a quiet NaN.

    Values are first rounded to f32 if they are not f32 already: bf16 is the rounding
    of the f32 value, so a bf16 file equals the bf16 rounding of the f32 file."""
    bits = np.ascontiguousarray(x, dtype="<f4").view("<u4").astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2")
    nan = (bits & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, ((bits >> 16) | 0x0040).astype("<u2"), rounded)


def bf16_to_f32(b: np.ndarray) -> np.ndarray:
    """bf16 bit patterns -> the f32 values they stand for (exact)."""
    return (np.asarray(b, dtype="<u2").astype("<u4") << 16).view("<f4")


def bf16_packed_shape(k: int, n: int) -> tuple[int, int, int, int]:
    """Stored shape of a bf16-packed GEMM weight with K inputs and N outputs."""
    return (pad16(n) // NR, pad32(k) // 2, NR, 2)


def pack_panels_bf16(w: np.ndarray) -> np.ndarray:
    """W [N,K] (PyTorch [out,in]) -> bf16 panels with interleaved K pairs:
    packed[p][kp][j][t] = bf16(W[p*16+j][2*kp+t]), zero where 2*kp+t >= K or p*16+j >= N;
    shape [ceil(N/16), ceil(K/32)*16, 16, 2], uint16 bit patterns."""
    n, k = w.shape
    padded = np.zeros((pad16(n), pad32(k)), dtype="<f4")
    padded[:n, :k] = w  # rounds to f32 first (the f32 file's value)
    P, KP = padded.shape[0] // NR, padded.shape[1]
    out = bf16_bits(padded).reshape(P, NR, KP // 2, 2).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(out)


def unpack_panels_bf16(p: np.ndarray, n: int, k: int) -> np.ndarray:
    """Inverse of pack_panels_bf16 up to the rounding: [P,KP/2,16,2] bf16 -> W [n,k] f32."""
    P, kh, nr, two = p.shape
    w = bf16_to_f32(p).transpose(0, 2, 1, 3).reshape(P * nr, kh * two)
    return w[:n, :k]


def repack_panels_bf16(panels: np.ndarray) -> np.ndarray:
    """f32 panels [P,K,16] (pack_panels) -> bf16 panels of the same GEMM weight
    (padding columns included, which are zero): what `convert --precision bf16` stores."""
    P, k, nr = panels.shape
    return pack_panels_bf16(unpack_panels(panels, P * nr))


def pad64(k: int) -> int:
    return -(-k // KQ) * KQ


def int8_packed_shape(k: int, n: int) -> tuple[int, int, int, int]:
    """Stored shape of an int8-packed GEMM weight with K inputs and N outputs."""
    return (pad16(n) // NR, pad64(k) // 4, NR, 4)


def quantize_panels_int8(panels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """f32 panels [P,K,16] (pack_panels: the f32 file's values) -> the int8 weights of
    docs/weight-format.md, exactly as the engine quantizes an f32 file at load
    (`levit_kernels::int8::quantize_f32_panels`), every operation in f32:
      m[n] = max_k |B[k][n]|, sw[n] = m / 127, qw = round_ties_even(clamp(B * (127 / m), -127, 127))
      (a column with m = 0: scale 0, weights 0);
      data[p][kq][j][t] = qw[4*kq+t][p*16+j], zero past K: int8 [P, ceil(K/64)*16, 16, 4];
      scale = sw [P*16] f32; comp = 128 * sum_k qw [P*16] int32.
    The weights must be finite (the converter refuses others)."""
    x = np.ascontiguousarray(panels, dtype="<f4")
    P, k, nr = x.shape
    m = np.abs(x).max(axis=1) if k else np.zeros((P, nr), dtype="<f4")  # [P,16], f32
    zero = m == 0
    safe = np.where(zero, np.float32(1), m)
    scale = np.where(zero, np.float32(0), safe / np.float32(127)).astype("<f4")
    inv = np.where(zero, np.float32(0), np.float32(127) / safe).astype("<f4")
    q = np.rint(np.clip(x * inv[:, None, :], np.float32(-127), np.float32(127))).astype(np.int8)
    padded = np.zeros((P, pad64(k), nr), dtype=np.int8)
    padded[:, :k] = q
    data = np.ascontiguousarray(padded.reshape(P, pad64(k) // 4, 4, nr).transpose(0, 1, 3, 2))
    comp = (q.astype(np.int32).sum(axis=1) * ZERO_POINT).astype("<i4").reshape(-1)
    return data, scale.reshape(-1), comp


def dequantize_panels_int8(data: np.ndarray, scale: np.ndarray, n: int, k: int) -> np.ndarray:
    """int8 weights (quantize_panels_int8) -> the W [n,k] f32 the engine multiplies by: qw * sw."""
    P, kq4, nr, four = data.shape
    q = data.transpose(0, 2, 1, 3).reshape(P * nr, kq4 * four)[:n, :k].astype(np.float32)
    return q * np.asarray(scale, dtype="<f4")[:n, None]


def keeps(selectors, layer: str) -> bool:
    """Whether `layer` (a weight name without `.weight`) is kept in float by the
    --keep-float selectors (the engine's levit_graph::KeepFloat): `stem`, `head`,
    `stageS` (= `stages.S`), `all`, or any dotted prefix of a layer name."""
    for sel in selectors:
        if sel == "all":
            return True
        if sel.startswith("stage") and sel[5:].isdigit():
            sel = f"stages.{int(sel[5:])}"
        if layer == sel or layer.startswith(sel + "."):
            return True
    return False
