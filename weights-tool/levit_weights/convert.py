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
from .lvt import (check_safetensors_readable, expected_shapes, expected_table, gemm_dims, int8_companion_names,
                  int8_layer_dtype, is_gemm_weight, read_lvt, write_lvt)
from .pack import (PRECISIONS, pack_panels, pack_panels_bf16, pad_rows, pad_vector, quantize_panels_int8,
                   repack_panels_bf16, stem_gemm_weight, unpack_panels, unpack_panels_bf16)

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


def check_keep_float(cfg: LevitConfig, precision: str, keep_float) -> tuple:
    """The --keep-float selectors, checked: only with int8, each naming a layer of cfg."""
    keep_float = tuple(keep_float or ())
    if not keep_float:
        return keep_float
    if precision != "int8":
        raise LevitWeightsError(f"--keep-float applies to --precision int8, not {precision}")
    from .pack import keeps

    layers = [k[: -len(".weight")] for k in gemm_dims(cfg)]
    for sel in keep_float:
        if not sel or not all(c.isalnum() or c in "._" for c in sel):
            raise LevitWeightsError(f"--keep-float: {sel!r} is not a layer name (stem, head, stage0, ..., "
                                    f"all, or a dotted prefix such as stages.1.blocks.0.mlp.fc1)")
        if not any(keeps((sel,), layer) for layer in layers):
            raise LevitWeightsError(f"--keep-float: {sel!r} names no layer of this model (stem, head, "
                                    f"stage0..stage{cfg.num_stages - 1}, all, or a prefix of a weight name "
                                    f"such as {layers[len(layers) // 2]})")
    return keep_float


def to_precision(tensors: "OrderedDict[str, np.ndarray]", cfg: LevitConfig,
                 precision: str, keep_float=()) -> "OrderedDict[str, np.ndarray]":
    """The f32 tensors of build_tensors in `precision`: for bf16 every GEMM/conv weight
    (`*.weight`: stem convs, linears, head) becomes bf16 panels with interleaved K pairs
    (rounded to nearest even from its f32 value); for int8 every GEMM/conv weight is
    quantized per output column into int8 panels followed by its F32 `_scale` and I32
    `_comp` tensors, except the layers `keep_float` keeps (bf16 panels) and the stem
    convs over at most 16 channels (kept f32: they run in f32); biases and
    attention-bias tables stay f32."""
    if precision not in PRECISIONS:
        raise LevitWeightsError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    keep_float = check_keep_float(cfg, precision, keep_float)
    if precision == "f32":
        return tensors
    if precision == "int8":
        out = OrderedDict()
        for k, v in tensors.items():
            dtype = int8_layer_dtype(cfg, k, keep_float) if is_gemm_weight(k) else "F32"
            if dtype == "I8":
                data, scale, comp = quantize_panels_int8(v)
                names = int8_companion_names(k)
                out[k], out[names[0]], out[names[1]] = data, scale, comp
            else:
                out[k] = repack_panels_bf16(v) if dtype == "BF16" else v
    else:
        out = OrderedDict((k, repack_panels_bf16(v) if is_gemm_weight(k) else v) for k, v in tensors.items())
    exp = expected_table(cfg, precision, keep_float)
    assert list(out) == list(exp), "tensor order/name drift between convert and lvt"
    for k, v in out.items():
        assert v.shape == exp[k][1], (k, v.shape, exp[k])
    return out


def gemm_matrices(f) -> "OrderedDict[str, np.ndarray]":
    """W [N,K] f32 of every GEMM weight of a read f32 or bf16 .lvt."""
    if f.precision == "int8":
        raise LevitWeightsError(f"{f.path}: an int8 file cannot be recast (the quantization cannot be "
                                "undone); convert the checkpoint again")
    out = OrderedDict()
    for name, (k, n) in gemm_dims(f.config).items():
        t = f.tensors[name]
        out[name] = unpack_panels_bf16(t, n, k) if f.precision == "bf16" else unpack_panels(t, n)
    return out


def recast_lvt(path: str, out_path: str, precision: str, keep_float=()) -> int:
    """Rewrites a .lvt in another precision without the checkpoint: f32 -> bf16 equals
    `convert --precision bf16` tensor for tensor; bf16 -> f32 gives the f32 file of the
    bf16-rounded weights (the same model, in the f32 layout); f32 -> int8 equals
    `convert --precision int8` (and what the engine quantizes at load). Returns the file
    size."""
    f = read_lvt(path)
    mats = gemm_matrices(f)
    exp = expected_table(f.config, "f32")
    if precision == "int8":
        if f.precision != "f32":
            raise LevitWeightsError(f"{path}: int8 is quantized from the f32 weights; this file is "
                                    f"{f.precision} (convert the checkpoint, or recast its f32 file)")
        # The f32 panels as stored (padding columns included), in the documented order:
        # exactly what the engine quantizes when it loads the f32 file in int8.
        tensors = to_precision(OrderedDict((k, np.ascontiguousarray(f.tensors[k])) for k in exp),
                               f.config, "int8", keep_float)
        keep = f" (float: {','.join(keep_float)})" if keep_float else ""
        size = write_lvt(out_path, tensors, f.config,
                         f"{f.metadata.get('source', '')}; recast f32 -> int8{keep} by levit-weights")
        _verify_written(out_path, tensors)
        return size
    check_keep_float(f.config, precision, keep_float)
    exp = expected_table(f.config, precision)
    tensors = OrderedDict()
    for name in exp:  # the documented order, whatever the input's
        if name in mats:
            w = mats[name]
            tensors[name] = pack_panels_bf16(w) if precision == "bf16" else pack_panels(w)
        else:
            tensors[name] = np.ascontiguousarray(f.tensors[name])
        assert tensors[name].shape == exp[name][1], (name, tensors[name].shape, exp[name])
    source = f.metadata.get("source", "")
    if f.precision != precision:
        source = f"{source}; recast {f.precision} -> {precision} by levit-weights"
    size = write_lvt(out_path, tensors, f.config, source)
    _verify_written(out_path, tensors)
    return size


def _verify_written(out_path, tensors) -> None:
    check_safetensors_readable(out_path, tensors)
    back = read_lvt(out_path)
    if back.data_bytes() != b"".join(t.tobytes() for t in tensors.values()):
        raise LevitWeightsError(f"{out_path}: read-back differs from what was written")


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
    precision: str = "f32"
    keep_float: tuple = ()

    def summary(self) -> str:
        c = self.config
        return (f"{c.variant}: {self.checkpoint_params:,} checkpoint params "
                f"({LAYOUT_NAMES[self.layout]} layout) -> {self.folded_params:,} folded params, "
                f"act {c.act}, {c.num_classes} classes{' (distilled heads averaged)' if c.distilled else ''}; "
                f"{'bf16 GEMM weights; ' if self.precision == 'bf16' else ''}"
                f"{'int8 GEMM weights' if self.precision == 'int8' else ''}"
                f"{' (float: ' + ','.join(self.keep_float) + ')' if self.keep_float else ''}"
                f"{'; ' if self.precision == 'int8' else ''}"
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
                       act: str | None = None, precision: str = "f32", keep_float=()) -> ConvertResult:
    if precision not in PRECISIONS:
        raise LevitWeightsError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    ck, layout, sd, origin, n_squeezed = load_timm_state_dict(path)
    res = resolve_config(sd, variant=variant, act=act, origin=origin)
    cfg = res.config
    keep_float = check_keep_float(cfg, precision, keep_float)
    tensors = to_precision(build_tensors(sd, cfg), cfg, precision, keep_float)
    conv = f", {n_squeezed} 1x1 conv weights squeezed" if n_squeezed else ""
    source = (f"{os.path.basename(path)} ({LAYOUT_NAMES[layout]} layout, {ck.container}{conv}); "
              f"converted by levit-weights")
    size = write_lvt(out_path, tensors, cfg, source)
    _verify_written(out_path, tensors)
    return ConvertResult(config=cfg, layout=layout, source=source, out_path=out_path, file_size=size,
                         checkpoint_params=_param_count(sd, cfg), folded_params=_folded_count(cfg),
                         warnings=res.warnings, precision=precision, keep_float=keep_float)
