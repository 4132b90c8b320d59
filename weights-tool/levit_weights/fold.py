"""BatchNorm folding (reference §4), in float64.

Folding in f64 and rounding once to f32 at packing time gives the correctly rounded
folded weights; the result depends only on the checkpoint values, so FB and timm
layouts of the same weights produce identical bytes.
"""

from __future__ import annotations

import numpy as np

from .config import BN_EPS
from .errors import LevitWeightsError


def bn_affine(sd: dict, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Eval BN as y = s*x + t: s = gamma/sqrt(var+eps), t = beta - mean*s."""
    g = sd[f"{prefix}.weight"].astype(np.float64)
    b = sd[f"{prefix}.bias"].astype(np.float64)
    mu = sd[f"{prefix}.running_mean"].astype(np.float64)
    var = sd[f"{prefix}.running_var"].astype(np.float64)
    if np.any(var + BN_EPS <= 0):
        raise LevitWeightsError(f"{prefix}.running_var has values <= -eps; the BatchNorm cannot be folded")
    s = g / np.sqrt(var + BN_EPS)
    return s, b - mu * s


def fold_linear_norm(sd: dict, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """timm LinearNorm / FB Linear_BN (and 1x1 ConvNorm): W'[o,:] = s[o]*W[o,:], b' = t."""
    s, t = bn_affine(sd, f"{prefix}.bn")
    w = sd[f"{prefix}.linear.weight"].astype(np.float64)
    return w * s[:, None], t


def fold_conv_norm(sd: dict, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """timm ConvNorm / FB Conv2d_BN (stem 3x3): W'[o] = s[o]*W[o], b' = t."""
    s, t = bn_affine(sd, f"{prefix}.bn")
    w = sd[f"{prefix}.linear.weight"].astype(np.float64)
    return w * s[:, None, None, None], t


def fold_norm_linear(sd: dict, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """timm NormLinear / FB BN_Linear (BN on the *input*): W'[o,i] = W[o,i]*s[i], b' = b + W·t."""
    s, t = bn_affine(sd, f"{prefix}.bn")
    w = sd[f"{prefix}.linear.weight"].astype(np.float64)
    b = sd[f"{prefix}.linear.bias"].astype(np.float64)
    return w * s[None, :], b + w @ t


def fold_heads(sd: dict, distilled: bool) -> tuple[np.ndarray, np.ndarray]:
    """head (+ head_dist) folded, then averaged: the eval output (head + head_dist)/2 is linear."""
    w, b = fold_norm_linear(sd, "head")
    if distilled:
        wd, bd = fold_norm_linear(sd, "head_dist")
        w, b = (w + wd) / 2, (b + bd) / 2
    return w, b
