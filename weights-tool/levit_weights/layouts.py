"""Reading checkpoint files and mapping the facebookresearch key layout to timm's.

Everything downstream works on a flat timm-named state_dict of numpy arrays, so this is
the only module that knows about containers (.pth/.bin/.safetensors, `model` /
`state_dict` wrappers), FB names (reference §6) and conv-mode `[o,i,1,1]` weights.
"""

from __future__ import annotations

import argparse
import os
import re
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .config import LevitConfig
from .errors import LevitWeightsError

# ---- reading -----------------------------------------------------------------------------


def _looks_like_safetensors(path: str) -> bool:
    """safetensors starts with a u64 header length followed by '{'."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    if len(head) < 9 or head[8:9] != b"{":
        return False
    n = int.from_bytes(head[:8], "little")
    return 0 < n <= os.path.getsize(path) - 8


def _load_torch(path: str):
    import torch

    # FB training checkpoints may carry an argparse.Namespace ('args'); it is harmless,
    # so allow it instead of falling back to unrestricted unpickling.
    try:
        torch.serialization.add_safe_globals([argparse.Namespace])
    except AttributeError:  # very old torch
        pass
    return torch.load(path, map_location="cpu", weights_only=True)


def _unwrap(obj, path: str):
    """Find the state_dict inside a checkpoint: flat, or under 'model' / 'state_dict'."""
    import torch

    trail = []
    while isinstance(obj, dict):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        for k in ("model", "state_dict", "model_state_dict"):
            if k in obj and isinstance(obj[k], dict):
                obj = obj[k]
                trail.append(k)
                break
        else:
            bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
            raise LevitWeightsError(
                f"{path}: no state_dict found: top-level entries {sorted(map(str, obj))[:12]} "
                f"are not all tensors (non-tensors: {bad[:8]}) and there is no "
                "'model' or 'state_dict' entry"
            )
    if not isinstance(obj, dict) or not obj:
        raise LevitWeightsError(f"{path}: checkpoint holds no tensors")
    return obj, trail


def _to_numpy(t) -> np.ndarray:
    """Float tensors become float64 (folding is done in f64), integers stay integers."""
    import torch

    t = t.detach().cpu()
    if t.is_floating_point():
        return t.to(torch.float64).numpy()
    return t.numpy()


@dataclass
class Checkpoint:
    """A loaded state_dict (original key names) and where it came from."""

    path: str
    tensors: "OrderedDict[str, np.ndarray]"
    container: str  # e.g. "safetensors", "pth['model']"


def load_checkpoint(path: str) -> Checkpoint:
    """Read .pth/.bin (torch.load, weights_only) or .safetensors into numpy arrays."""
    if not os.path.exists(path):
        raise LevitWeightsError(f"cannot read checkpoint {path}: no such file")
    if os.path.isdir(path):
        raise LevitWeightsError(f"cannot read checkpoint {path}: is a directory")
    if path.endswith(".safetensors") or _looks_like_safetensors(path):
        from safetensors.torch import load_file

        try:
            sd = load_file(path)
        except Exception as e:  # noqa: BLE001 - any reader failure is "unreadable"
            raise LevitWeightsError(f"cannot read checkpoint {path} as safetensors: {e}") from None
        container, trail = "safetensors", []
    else:
        try:
            obj = _load_torch(path)
        except Exception as e:  # noqa: BLE001
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise LevitWeightsError(
                f"cannot read checkpoint {path}: not a safetensors file or a loadable "
                f"PyTorch checkpoint ({msg})"
            ) from None
        sd, trail = _unwrap(obj, path)
        container = "pth" + "".join(f"[{k!r}]" for k in trail)
    sd, container = _strip_module_prefix(sd, container)
    tensors = OrderedDict((k, _to_numpy(v)) for k, v in sd.items())
    return Checkpoint(path=path, tensors=tensors, container=container)


def _strip_module_prefix(sd, container):
    """DataParallel checkpoints prefix every key with 'module.'."""
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}, container + " (module. stripped)"
    return sd, container


# ---- layout detection ----------------------------------------------------------------------

_FB_RE = re.compile(r"^(patch_embed\.|blocks\.\d+\.)")
_TIMM_RE = re.compile(r"^(stem\.|stages\.\d+\.)")


def detect_layout(keys) -> str:
    """'fb' or 'timm' from the key names."""
    keys = list(keys)
    fb = any(_FB_RE.match(k) for k in keys)
    tm = any(_TIMM_RE.match(k) for k in keys)
    if fb and tm:
        raise LevitWeightsError(
            "checkpoint mixes facebookresearch keys (patch_embed./blocks.N.) and timm keys "
            "(stem./stages.N.)"
        )
    if not fb and not tm:
        raise LevitWeightsError(
            "not a LeViT checkpoint: no 'patch_embed.*'/'blocks.N.*' (facebookresearch) or "
            f"'stem.*'/'stages.N.*' (timm) keys; first keys: {keys[:6]}"
        )
    return "fb" if fb else "timm"


# ---- FB -> timm ---------------------------------------------------------------------------

# (FB sub-key prefix, timm sub-key prefix) within one FB block, per block kind.
_ATTN_MAP = [("m.qkv.c.", "qkv.linear."), ("m.qkv.bn.", "qkv.bn."),
             ("m.proj.1.c.", "proj.ln.linear."), ("m.proj.1.bn.", "proj.ln.bn."),
             ("m.attention_biases", "attention_biases"),
             ("m.attention_bias_idxs", "attention_bias_idxs")]
_MLP_MAP = [("m.0.c.", "ln1.linear."), ("m.0.bn.", "ln1.bn."),
            ("m.2.c.", "ln2.linear."), ("m.2.bn.", "ln2.bn.")]
_AS_MAP = [("kv.c.", "kv.linear."), ("kv.bn.", "kv.bn."),
           ("q.1.c.", "q.ln.linear."), ("q.1.bn.", "q.ln.bn."),
           ("proj.1.c.", "proj.ln.linear."), ("proj.1.bn.", "proj.ln.bn."),
           ("attention_biases", "attention_biases"),
           ("attention_bias_idxs", "attention_bias_idxs")]
_HEAD_MAP = [("bn.", "bn."), ("l.", "linear.")]


def _map_sub(sub: str, table) -> str | None:
    for a, b in table:
        if sub == a or (a.endswith(".") and sub.startswith(a)):
            return b + sub[len(a):]
    return None


def _fb_block_kinds(keys) -> dict[int, str]:
    """Kind of every FB `blocks.K`: 'attn' / 'mlp' (Residual, `.m.`) or 'as' (subsample)."""
    kinds: dict[int, str] = {}
    for k in keys:
        m = re.match(r"^blocks\.(\d+)\.(.*)$", k)
        if not m:
            continue
        K, sub = int(m.group(1)), m.group(2)
        if sub.startswith("m.qkv.") or sub.startswith("m.proj.") or sub.startswith("m.attention_bias"):
            kind = "attn"
        elif sub.startswith("m.0.") or sub.startswith("m.2."):
            kind = "mlp"
        elif not sub.startswith("m."):
            kind = "as"
        else:
            continue
        kinds.setdefault(K, kind)
    return kinds


def fb_to_timm(tensors: dict) -> tuple["OrderedDict[str, np.ndarray]", dict[str, str]]:
    """Rename FB keys to timm keys (reference §6).

    FB numbers blocks flatly (`blocks.K`): attention and MLP residuals alternate, and a
    subsample block followed by its MLP opens every stage after the first. The walk
    below recovers (stage, block) from that sequence, so it works for any depths.
    Returns the renamed dict and {timm_key: fb_key}; keys that cannot be mapped keep
    their FB name so validation reports them as unexpected.
    """
    kinds = _fb_block_kinds(tensors.keys())
    prefix: dict[int, tuple[str, list]] = {}
    stage, j, prev = 0, -1, None
    for K in sorted(kinds):
        kind = kinds[K]
        if kind == "as":
            stage += 1
            j = -1
            prefix[K] = (f"stages.{stage}.downsample.attn_downsample.", _AS_MAP)
        elif kind == "attn":
            j += 1
            prefix[K] = (f"stages.{stage}.blocks.{j}.attn.", _ATTN_MAP)
        elif kind == "mlp":
            if prev == "as":
                prefix[K] = (f"stages.{stage}.downsample.mlp.", _MLP_MAP)
            elif j >= 0:
                prefix[K] = (f"stages.{stage}.blocks.{j}.mlp.", _MLP_MAP)
        prev = kind

    out: "OrderedDict[str, np.ndarray]" = OrderedDict()
    origin: dict[str, str] = {}
    for k, v in tensors.items():
        new = None
        m = re.match(r"^patch_embed\.(\d+)\.(c|bn)\.(.*)$", k)
        if m and int(m.group(1)) % 2 == 0:
            i = int(m.group(1)) // 2 + 1
            new = f"stem.conv{i}.{'linear' if m.group(2) == 'c' else 'bn'}.{m.group(3)}"
        m = re.match(r"^blocks\.(\d+)\.(.*)$", k)
        if m and int(m.group(1)) in prefix:
            pfx, table = prefix[int(m.group(1))]
            sub = _map_sub(m.group(2), table)
            if sub is not None:
                new = pfx + sub
        m = re.match(r"^(head|head_dist)\.(.*)$", k)
        if m:
            sub = _map_sub(m.group(2), _HEAD_MAP)
            if sub is not None:
                new = f"{m.group(1)}.{sub}"
        if new is None or new in out:
            new = k
        out[new] = v
        origin[new] = k
    return out, origin


# ---- timm -> FB (used by `dump` to write FB-layout checkpoints) ---------------------------


def fb_key_map(cfg: LevitConfig) -> "OrderedDict[str, str]":
    """{fb_key: timm_key} for every parameter/BN buffer of cfg, in FB module order."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    out: "OrderedDict[str, str]" = OrderedDict()

    def norm(fb: str, tm: str):
        out[f"{fb}.c.weight"] = f"{tm}.linear.weight"
        for b in bn:
            out[f"{fb}.bn.{b}"] = f"{tm}.bn.{b}"

    for i in range(4):
        norm(f"patch_embed.{2 * i}", f"stem.conv{i + 1}")
    K = 0
    for s in range(cfg.num_stages):
        if s > 0:
            t = f"stages.{s}.downsample"
            out[f"blocks.{K}.attention_biases"] = f"{t}.attn_downsample.attention_biases"
            norm(f"blocks.{K}.kv", f"{t}.attn_downsample.kv")
            norm(f"blocks.{K}.q.1", f"{t}.attn_downsample.q.ln")
            norm(f"blocks.{K}.proj.1", f"{t}.attn_downsample.proj.ln")
            norm(f"blocks.{K + 1}.m.0", f"{t}.mlp.ln1")
            norm(f"blocks.{K + 1}.m.2", f"{t}.mlp.ln2")
            K += 2
        for j in range(cfg.depth[s]):
            t = f"stages.{s}.blocks.{j}"
            out[f"blocks.{K}.m.attention_biases"] = f"{t}.attn.attention_biases"
            norm(f"blocks.{K}.m.qkv", f"{t}.attn.qkv")
            norm(f"blocks.{K}.m.proj.1", f"{t}.attn.proj.ln")
            norm(f"blocks.{K + 1}.m.0", f"{t}.mlp.ln1")
            norm(f"blocks.{K + 1}.m.2", f"{t}.mlp.ln2")
            K += 2
    for h in (("head", "head_dist") if cfg.distilled else ("head",)):
        for b in bn:
            out[f"{h}.bn.{b}"] = f"{h}.bn.{b}"
        out[f"{h}.l.weight"] = f"{h}.linear.weight"
        out[f"{h}.l.bias"] = f"{h}.linear.bias"
    return out


def fb_attention_bias_idxs(resolution: int, stride: int = 1) -> np.ndarray:
    """FB's `attention_bias_idxs`, built FB's way (first-seen dictionary order).

    Deliberately *not* the |dy|*R+|dx| formula, so FB checkpoints written by `dump`
    carry buffers produced by FB's own algorithm (reference §3.3 says they coincide).
    """
    import itertools

    points = list(itertools.product(range(resolution), range(resolution)))
    if stride == 1:
        queries = points
    else:
        r_ = (resolution - 1) // stride + 1
        queries = list(itertools.product(range(r_), range(r_)))
    offsets: dict = {}
    idxs = []
    for p1 in queries:
        for p2 in points:
            if stride == 1:
                off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
            else:
                size = 1
                off = (abs(p1[0] * stride - p2[0] + (size - 1) / 2),
                       abs(p1[1] * stride - p2[1] + (size - 1) / 2))
            if off not in offsets:
                offsets[off] = len(offsets)
            idxs.append(offsets[off])
    return np.asarray(idxs, dtype=np.int64).reshape(len(queries), len(points))


def timm_to_fb(sd: dict, cfg: LevitConfig) -> "OrderedDict":
    """A timm state_dict (torch tensors) in FB layout, with FB's saved idx buffers."""
    import torch

    out: "OrderedDict" = OrderedDict()
    res = cfg.resolutions()
    K = 0
    idx_keys = {}
    for s in range(cfg.num_stages):
        if s > 0:
            idx_keys[f"blocks.{K}.attention_biases"] = (f"blocks.{K}.attention_bias_idxs", res[s - 1], 2)
            K += 2
        for _ in range(cfg.depth[s]):
            idx_keys[f"blocks.{K}.m.attention_biases"] = (f"blocks.{K}.m.attention_bias_idxs", res[s], 1)
            K += 2
    for fb, tm in fb_key_map(cfg).items():
        out[fb] = sd[tm]
        if fb in idx_keys:
            name, r, stride = idx_keys[fb]
            out[name] = torch.from_numpy(fb_attention_bias_idxs(r, stride))
    return out


# ---- conv layout ----------------------------------------------------------------------------


def squeeze_1x1(tensors: dict) -> tuple[dict, int]:
    """`levit_conv_*` / FB `levit_c` store 1x1 projections as [o,i,1,1]: make them [o,i]."""
    n = 0
    out = OrderedDict()
    for k, v in tensors.items():
        if v.ndim == 4 and v.shape[2:] == (1, 1) and not k.startswith("stem."):
            v = v.reshape(v.shape[:2])
            n += 1
        out[k] = v
    return out, n
