"""Kernel layouts of docs/weight-format.md: 16-column GEMM panels, padded vectors.

The engine mmaps the file and feeds these bytes straight to its GEMM, so this is the
one place that decides where every weight lands.
"""

from __future__ import annotations

import numpy as np

NR = 16  # panel width, fixed by format_version 1


def pad16(n: int) -> int:
    return -(-n // NR) * NR


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
