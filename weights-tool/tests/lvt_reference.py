"""A tiny NumPy forward pass that reads only a .lvt file (test helper).

It is written from docs/weight-format.md and reference §2-§5 alone, so agreement with
timm's forward proves that the bytes the converter writes mean what the doc says
(panel layout, stem K order, head merge, bias rows, qkv split) -- the contract the
Rust engine implements. Format version 2 files with BF16 GEMM weights are read too:
each BF16 weight is decoded from its interleaved-pair panels (written out here from the
doc, independently of pack.py) to the exact f32 values it stands for.
"""

from __future__ import annotations

import numpy as np

from levit_weights.lvt import LvtFile


def decode_f32_panels(p: np.ndarray, n: int, k: int) -> np.ndarray:
    """F32 packed[p][k][j] = W[p*16 + j][k]  ->  W [n, k]."""
    assert p.dtype == np.dtype("<f4") and p.ndim == 3 and p.shape[1:] == (k, 16), p.shape
    return p.transpose(0, 2, 1).reshape(-1, k)[:n].astype(np.float64)


def decode_bf16_panels(p: np.ndarray, n: int, k: int) -> np.ndarray:
    """BF16 packed[p][kp][j][t] = bf16(W[p*16 + j][2*kp + t]), shape [P, KP/2, 16, 2]
    with KP = ceil(k/32)*32  ->  W [n, k] (a bf16 is the upper half of an f32)."""
    P, kh, nr, two = p.shape
    assert p.dtype == np.dtype("<u2") and (nr, two) == (16, 2) and kh == -(-k // 32) * 16, p.shape
    w = np.empty((P * 16, 2 * kh))
    for kp in range(kh):
        for t in range(2):
            col = (p[:, kp, :, t].astype(np.uint32) << 16).view(np.float32)  # [P, 16]
            w[:, 2 * kp + t] = col.reshape(-1)
    assert not w[:, k:].any(), "K padding must be zero"
    assert not w[n:].any(), "N padding must be zero"
    return w[:n, :k]


def hard_swish(x):
    return x * np.clip(x + 3.0, 0.0, 6.0) / 6.0


def silu(x):
    return x / (1.0 + np.exp(-x))


def _softmax(a):
    a = a - a.max(axis=-1, keepdims=True)
    e = np.exp(a)
    return e / e.sum(axis=-1, keepdims=True)


def _im2col(h):
    """[B,H,W,C] -> [B,Ho,Wo,9C], 3x3 stride 2 pad 1, columns in (ky,kx,ci) order."""
    B, H, W, C = h.shape
    Ho, Wo = (H - 1) // 2 + 1, (W - 1) // 2 + 1
    p = np.zeros((B, H + 2, W + 2, C))
    p[:, 1:-1, 1:-1] = h
    cols = [p[:, ky:ky + 2 * Ho:2, kx:kx + 2 * Wo:2] for ky in range(3) for kx in range(3)]
    return np.concatenate(cols, axis=-1)


def _bias_idx(R, stride):
    Rq = (R - 1) // stride + 1
    qy, qx = np.divmod(np.arange(Rq * Rq), Rq)
    ky, kx = np.divmod(np.arange(R * R), R)
    return np.abs(qy[:, None] * stride - ky[None]) * R + np.abs(qx[:, None] * stride - kx[None])


def forward(f: LvtFile, x: np.ndarray):
    """x [B,C,H,W] -> (logits, {'stem': tokens, 'stage{s}': tokens}), in float64."""
    cfg = f.config
    T = {k: v.astype(np.float64) for k, v in f.tensors.items() if v.dtype == np.dtype("<f4")}
    act = hard_swish if cfg.act == "hard_swish" else silu

    def lin(a, name, n):
        w = f.tensors[f"{name}.weight"]
        k = a.shape[-1]
        w = decode_bf16_panels(w, n, k) if w.dtype == np.dtype("<u2") else decode_f32_panels(w, n, k)
        return a @ w.T + T[f"{name}.bias"][:n]

    def attention(q, k, v, name, R_in, stride):
        B, Nq, H, D = q.shape
        bias = T[f"{name}.attention_biases"][:, : R_in * R_in][:, _bias_idx(R_in, stride)]
        a = np.einsum("bnhd,bmhd->bhnm", q, k) * D ** -0.5 + bias[None]
        o = np.einsum("bhnm,bmhd->bnhd", _softmax(a), v)
        return o.reshape(B, Nq, -1)

    taps = {}
    h = x.astype(np.float64).transpose(0, 2, 3, 1)
    ch = cfg.stem_channels()
    for i in range(4):
        h = lin(_im2col(h), f"stem.{i}", ch[i + 1])
        if i < 3:
            h = act(h)
    B, R, _, C = h.shape
    h = h.reshape(B, R * R, C)
    taps["stem"] = h
    res, D = cfg.resolutions(), cfg.key_dim
    for s in range(cfg.num_stages):
        E = cfg.embed_dim[s]
        if s > 0:
            p, Rin = f"stages.{s}.downsample", res[s - 1]
            Hd, Dv = cfg.down_heads(s), cfg.down_val_dim()
            kv = lin(h, f"{p}.attn.kv", Hd * (D + Dv)).reshape(B, Rin * Rin, Hd, D + Dv)
            xs = h.reshape(B, Rin, Rin, -1)[:, ::2, ::2].reshape(B, res[s] ** 2, -1)
            q = lin(xs, f"{p}.attn.q", Hd * D).reshape(B, -1, Hd, D)
            o = attention(q, kv[..., :D], kv[..., D:], f"{p}.attn", Rin, 2)
            h = lin(act(o), f"{p}.attn.proj", E)
            h = h + lin(act(lin(h, f"{p}.mlp.fc1", cfg.down_mlp_hidden(s))), f"{p}.mlp.fc2", E)
        H, Dv, hid = cfg.num_heads[s], cfg.val_dim(s), cfg.mlp_hidden(s)
        for j in range(cfg.depth[s]):
            p = f"stages.{s}.blocks.{j}"
            qkv = lin(h, f"{p}.attn.qkv", H * (2 * D + Dv)).reshape(B, -1, H, 2 * D + Dv)
            o = attention(qkv[..., :D], qkv[..., D:2 * D], qkv[..., 2 * D:], f"{p}.attn", res[s], 1)
            h = h + lin(act(o), f"{p}.attn.proj", E)
            h = h + lin(act(lin(h, f"{p}.mlp.fc1", hid)), f"{p}.mlp.fc2", E)
        taps[f"stage{s}"] = h
    logits = lin(h.mean(axis=1), "head", cfg.num_classes)
    return logits, taps
