"""checkpoint -> .lvt: load, rename to timm, resolve the config, fold, pack, write, verify.

`dump` converts its own checkpoints through `convert_checkpoint` too, so the golden
files are produced by exactly the code path users run.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from .config import LevitConfig
from .detect import resolve_config
from .errors import LevitWeightsError
from .fold import fold_conv_norm, fold_heads, fold_linear_norm
from .layouts import detect_layout, fb_to_timm, load_checkpoint, squeeze_1x1
from .lvt import check_safetensors_readable, expected_shapes, read_lvt, write_lvt
from .pack import pack_panels, pad_rows, pad_vector, stem_gemm_weight

LAYOUT_NAMES = {"fb": "facebookresearch", "timm": "timm"}


def build_tensors(sd: dict, cfg: LevitConfig) -> "OrderedDict[str, np.ndarray]":
    """The .lvt tensors of a validated timm-named state_dict, in the documented order."""
    out: "OrderedDict[str, np.ndarray]" = OrderedDict()

    def put(name, w, b):
        out[f"{name}.weight"] = pack_panels(w)
        out[f"{name}.bias"] = pad_vector(b)

    for i in range(4):
        w, b = fold_conv_norm(sd, f"stem.conv{i + 1}")
        put(f"stem.{i}", stem_gemm_weight(w), b)
    for s in range(cfg.num_stages):
        if s > 0:
            src, dst = f"stages.{s}.downsample", f"stages.{s}.downsample"
            put(f"{dst}.attn.kv", *fold_linear_norm(sd, f"{src}.attn_downsample.kv"))
            put(f"{dst}.attn.q", *fold_linear_norm(sd, f"{src}.attn_downsample.q.ln"))
            put(f"{dst}.attn.proj", *fold_linear_norm(sd, f"{src}.attn_downsample.proj.ln"))
            out[f"{dst}.attn.attention_biases"] = pad_rows(sd[f"{src}.attn_downsample.attention_biases"])
            put(f"{dst}.mlp.fc1", *fold_linear_norm(sd, f"{src}.mlp.ln1"))
            put(f"{dst}.mlp.fc2", *fold_linear_norm(sd, f"{src}.mlp.ln2"))
        for j in range(cfg.depth[s]):
            p = f"stages.{s}.blocks.{j}"
            put(f"{p}.attn.qkv", *fold_linear_norm(sd, f"{p}.attn.qkv"))
            put(f"{p}.attn.proj", *fold_linear_norm(sd, f"{p}.attn.proj.ln"))
            out[f"{p}.attn.attention_biases"] = pad_rows(sd[f"{p}.attn.attention_biases"])
            put(f"{p}.mlp.fc1", *fold_linear_norm(sd, f"{p}.mlp.ln1"))
            put(f"{p}.mlp.fc2", *fold_linear_norm(sd, f"{p}.mlp.ln2"))
    put("head", *fold_heads(sd, cfg.distilled))

    # The table in lvt.py is derived from the config independently; they must agree.
    exp = expected_shapes(cfg)
    assert list(out) == list(exp), "tensor order/name drift between convert and lvt"
    for k, v in out.items():
        assert v.shape == exp[k], (k, v.shape, exp[k])
    for k, v in out.items():
        if not np.all(np.isfinite(v)):
            raise LevitWeightsError(f"{k}: folded weights contain NaN/Inf (check the BatchNorm statistics)")
    return out


@dataclass
class ConvertResult:
    config: LevitConfig
    layout: str
    source: str
    out_path: str
    file_size: int
    checkpoint_params: int
    folded_params: int
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        c = self.config
        return (f"{c.variant}: {self.checkpoint_params:,} checkpoint params "
                f"({LAYOUT_NAMES[self.layout]} layout) -> {self.folded_params:,} folded params, "
                f"act {c.act}, {c.num_classes} classes{' (distilled heads averaged)' if c.distilled else ''}; "
                f"wrote {self.out_path} ({self.file_size / 1e6:.2f} MB)")


def load_timm_state_dict(path: str):
    """Load any supported checkpoint as a timm-named, 1x1-squeezed state_dict."""
    ck = load_checkpoint(path)
    layout = detect_layout(ck.tensors)
    if layout == "fb":
        sd, origin = fb_to_timm(ck.tensors)
    else:
        sd, origin = ck.tensors, {}
    sd, n_squeezed = squeeze_1x1(sd)
    for k, v in sd.items():
        if np.issubdtype(v.dtype, np.floating) and not np.all(np.isfinite(v)):
            raise LevitWeightsError(f"{origin.get(k, k)}: contains NaN/Inf")
    return ck, layout, sd, origin, n_squeezed


def _param_count(sd: dict, cfg: LevitConfig) -> int:
    """Learnable parameters (no BN running stats), like sum(p.numel() for p in model.parameters())."""
    from .config import timm_shapes

    return sum(int(np.prod(s)) for k, s in timm_shapes(cfg).items()
               if not (k.endswith("running_mean") or k.endswith("running_var")))


def _folded_count(cfg: LevitConfig) -> int:
    """Real (unpadded) floats after folding and merging the heads."""
    from .config import timm_shapes

    n = 0
    for k, s in timm_shapes(cfg).items():
        if k.startswith("head_dist."):
            continue
        if k.endswith(".linear.weight") or k.endswith("attention_biases"):
            n += int(np.prod(s))
        elif k.endswith(".bn.bias") and not k.startswith("head."):
            n += s[0]  # the folded bias of a LinearNorm/ConvNorm
    return n + cfg.num_classes  # head bias


def convert_checkpoint(path: str, out_path: str, variant: str | None = None,
                       act: str | None = None) -> ConvertResult:
    ck, layout, sd, origin, n_squeezed = load_timm_state_dict(path)
    res = resolve_config(sd, variant=variant, act=act, origin=origin)
    cfg = res.config
    tensors = build_tensors(sd, cfg)
    conv = f", {n_squeezed} 1x1 conv weights squeezed" if n_squeezed else ""
    source = (f"{os.path.basename(path)} ({LAYOUT_NAMES[layout]} layout, {ck.container}{conv}); "
              f"converted by levit-weights")
    size = write_lvt(out_path, tensors, cfg, source)
    check_safetensors_readable(out_path, tensors)
    back = read_lvt(out_path)
    if back.data_bytes() != b"".join(t.tobytes() for t in tensors.values()):
        raise LevitWeightsError(f"{out_path}: read-back differs from what was written")
    return ConvertResult(config=cfg, layout=layout, source=source, out_path=out_path, file_size=size,
                         checkpoint_params=_param_count(sd, cfg), folded_params=_folded_count(cfg),
                         warnings=res.warnings)
