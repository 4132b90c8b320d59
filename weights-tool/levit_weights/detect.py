"""Inferring a LevitConfig from a timm-named state_dict, naming it, and validating it.

Checkpoints carry no config, so every hyper-parameter is read back from tensor shapes
(reference §6 "Inferring hyper-parameters"); the activation is the one thing shapes
cannot tell, which is why the result is matched against timm's `model_cfgs`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import numpy as np

from .config import (
    Arch,
    LevitConfig,
    STEM_STRIDE,
    exact_ratio,
    img_size_problem,
    is_ignorable_key,
    known_arches,
    lookup_arch,
    timm_shapes,
)
from .errors import LevitWeightsError

MAX_LISTED = 20


def _need(sd: dict, key: str) -> tuple[int, ...]:
    if key not in sd:
        raise LevitWeightsError(f"cannot infer the model config: missing key {key}")
    return tuple(sd[key].shape)


def _unsupported(field: str, msg: str) -> LevitWeightsError:
    return LevitWeightsError(f"unsupported config: {field}: {msg}")


def _div(num: int, den: int, what: str) -> int:
    if den == 0 or num % den:
        raise _unsupported(what, f"{num} is not a multiple of {den}")
    return num // den


@dataclass(frozen=True)
class IoInfo:
    """Build arguments of a checkpoint (not fixed by a variant name)."""

    img_size: int
    in_chans: int
    num_classes: int
    distilled: bool


def detect_io(sd: dict) -> IoInfo:
    """img_size, in_chans, num_classes, distilled: from the stem, the bias tables, the head."""
    if "stem.conv4.linear.weight" not in sd and "stem.conv3.linear.weight" in sd:
        raise _unsupported(
            "stem_type",
            "the checkpoint has a 3-conv stride-8 stem ('s8', e.g. levit_384_s8); only the "
            "4-conv stride-16 's16' stem is supported",
        )
    in_chans = _need(sd, "stem.conv1.linear.weight")[1]
    if "head.linear.weight" not in sd:
        raise _unsupported("num_classes", "the checkpoint has no classifier head (head.linear.weight)")
    num_classes = sd["head.linear.weight"].shape[0]
    distilled = any(k.startswith("head_dist.") for k in sd)
    # R0² is the width of the first bias table on the R0 grid.
    width = None
    for key in ("stages.0.blocks.0.attn.attention_biases",
                "stages.1.downsample.attn_downsample.attention_biases"):
        if key in sd:
            width = sd[key].shape[-1]
            break
    if width is None:
        raise LevitWeightsError(
            "cannot infer img_size: no stages.0.blocks.0.attn.attention_biases or "
            "stages.1.downsample.attn_downsample.attention_biases"
        )
    r0 = math.isqrt(width)
    if r0 * r0 != width:
        raise _unsupported("img_size", f"attention_biases width {width} is not a square grid")
    # timm's grid is img_size // 16, so a checkpoint built at any img_size in
    # 16*R0..16*R0+15 is the same model: the one of 16*R0, the only input size timm runs.
    problem = img_size_problem(STEM_STRIDE * r0)
    if problem:
        raise _unsupported("img_size", f"{problem} (read from the {r0}x{r0} token grid of {key}, "
                           f"{width} columns)")
    return IoInfo(img_size=STEM_STRIDE * r0, in_chans=in_chans, num_classes=num_classes,
                  distilled=distilled)


def detect_config(sd: dict) -> LevitConfig:
    """Every hyper-parameter from shapes; variant 'unknown' and act hard_swish (unconfirmed)."""
    io = detect_io(sd)
    stage_ids = sorted({int(m.group(1)) for k in sd for m in [re.match(r"^stages\.(\d+)\.", k)] if m})
    if not stage_ids:
        raise LevitWeightsError("cannot infer the model config: no stages.N.* keys")
    if stage_ids != list(range(len(stage_ids))):
        raise LevitWeightsError(f"cannot infer the model config: stage indices {stage_ids} are not 0..N-1")
    n = len(stage_ids)
    e0 = _need(sd, "stem.conv4.linear.weight")[0]

    embed, heads, depth, attn_r, mlp_r = [], [], [], [], []
    key_dims: dict[str, int] = {}
    down_attn, down_mlp = set(), set()
    for s in range(n):
        blocks = {int(m.group(1)) for k in sd
                  for m in [re.match(rf"^stages\.{s}\.blocks\.(\d+)\.", k)] if m}
        d = len(blocks)
        if blocks and sorted(blocks) != list(range(d)):
            raise LevitWeightsError(
                f"cannot infer the model config: stage {s} block indices {sorted(blocks)} are not 0..{d - 1}")
        depth.append(d)
        if d:
            p = f"stages.{s}.blocks.0.attn"
            E = _need(sd, f"{p}.proj.ln.linear.weight")[0]
            H = _need(sd, f"{p}.attention_biases")[0]
            Dv = _div(_need(sd, f"{p}.proj.ln.linear.weight")[1], H, f"stage {s} value dim (proj in / heads)")
            qkv = _div(_need(sd, f"{p}.qkv.linear.weight")[0], H, f"stage {s} qkv rows / heads")
            D = _div(qkv - Dv, 2, f"stage {s} key_dim")
            key_dims[f"stage {s}"] = D
            hid = _need(sd, f"stages.{s}.blocks.0.mlp.ln1.linear.weight")[0]
            heads.append(H)
            attn_r.append((Dv, D))
            mlp_r.append(exact_ratio(hid, E))
        if s > 0:
            p = f"stages.{s}.downsample"
            if d == 0:
                E = _need(sd, f"{p}.attn_downsample.proj.ln.linear.weight")[0]
            Hd = _need(sd, f"{p}.attn_downsample.attention_biases")[0]
            Dd = _div(_need(sd, f"{p}.attn_downsample.q.ln.linear.weight")[0], Hd, f"stage {s} downsample key_dim")
            kv = _div(_need(sd, f"{p}.attn_downsample.kv.linear.weight")[0], Hd, f"stage {s} downsample kv rows / heads")
            key_dims[f"stage {s} downsample"] = Dd
            down_attn.add((kv - Dd, Dd))
            down_mlp.add(exact_ratio(_need(sd, f"{p}.mlp.ln1.linear.weight")[0], E))
        elif d == 0:
            E = e0
        if d == 0:
            heads.append(0)
            attn_r.append(None)
            mlp_r.append(2.0)
        embed.append(E)

    if not key_dims:
        raise LevitWeightsError("cannot infer key_dim: the checkpoint has no attention block")
    if len(set(key_dims.values())) != 1:
        raise _unsupported("key_dim", "differs between stages: "
                           + ", ".join(f"{k} {v}" for k, v in key_dims.items()))
    D = next(iter(key_dims.values()))
    if 0 in heads:
        raise _unsupported("depth", f"a stage without blocks ({depth}) is not supported")
    attn = tuple(exact_ratio(dv, D) for dv, _ in attn_r)
    if len(down_attn) > 1:
        raise _unsupported("down_attn_ratio", f"differs between downsamples: {sorted(down_attn)}")
    if len(down_mlp) > 1:
        raise _unsupported("down_mlp_ratio", f"differs between downsamples: {sorted(down_mlp)}")
    down_attn_ratio = exact_ratio(*next(iter(down_attn))) if down_attn else 4.0
    down_mlp_ratio = next(iter(down_mlp)) if down_mlp else 2.0
    return LevitConfig(
        variant="unknown",
        img_size=io.img_size,
        in_chans=io.in_chans,
        num_classes=io.num_classes,
        embed_dim=tuple(embed),
        key_dim=D,
        num_heads=tuple(heads),
        depth=tuple(depth),
        attn_ratio=attn,
        mlp_ratio=tuple(mlp_r),
        down_attn_ratio=down_attn_ratio,
        down_mlp_ratio=down_mlp_ratio,
        act="hard_swish",
        distilled=io.distilled,
    )


def _same_ratios(a, b, dims) -> bool:
    return all(int(x * d) == int(y * d) for x, y, d in zip(a, b, dims))


def arch_matches(cfg: LevitConfig, arch: Arch) -> bool:
    """Same shapes everywhere (ratios compared through timm's int(ratio*dim))."""
    return (
        arch.stem_type == "s16"
        and tuple(arch.embed_dim) == tuple(cfg.embed_dim)
        and arch.key_dim == cfg.key_dim
        and tuple(arch.num_heads) == tuple(cfg.num_heads)
        and tuple(arch.depth) == tuple(cfg.depth)
        and _same_ratios(arch.attn_ratio, cfg.attn_ratio, [cfg.key_dim] * cfg.num_stages)
        and _same_ratios(arch.mlp_ratio, cfg.mlp_ratio, cfg.embed_dim)
        and int(cfg.down_attn_ratio * cfg.key_dim) == 4 * cfg.key_dim
        and all(int(e * cfg.down_mlp_ratio) == 2 * e for e in cfg.embed_dim[1:])
    )


def match_arches(cfg: LevitConfig) -> list[Arch]:
    return [a for a in known_arches().values() if arch_matches(cfg, a)]


def apply_arch(cfg_or_io, arch: Arch) -> LevitConfig:
    """The config a variant name means, with the checkpoint's build arguments."""
    return arch.config(img_size=cfg_or_io.img_size, in_chans=cfg_or_io.in_chans,
                       num_classes=cfg_or_io.num_classes, distilled=cfg_or_io.distilled)


@dataclass
class Resolution:
    """The outcome of config resolution, with the notes the CLI prints."""

    config: LevitConfig
    confirmed: bool  # activation known (matched a known config or --act given)
    warnings: list[str]


def resolve_config(sd: dict, variant: str | None = None, act: str | None = None,
                   origin: dict | None = None) -> Resolution:
    """Detect (or take from --variant) the config, then check every tensor against it."""
    warnings: list[str] = []
    if variant is not None:
        arch = lookup_arch(variant)
        if arch.stem_type != "s16":
            raise _unsupported("stem_type", f"variant {arch.name} uses the '{arch.stem_type}' "
                               "stem; only the 4-conv stride-16 's16' stem is supported")
        cfg = apply_arch(detect_io(sd), arch)
        try:
            validate(sd, cfg, origin)
        except LevitWeightsError as e:
            hint = ""
            try:
                det = detect_config(sd)
                names = [a.name for a in match_arches(det)]
                hint = f"\nthe checkpoint looks like {names[0] if names else 'an unknown config'}: " \
                       f"{_describe(det)}"
            except LevitWeightsError:
                pass
            raise LevitWeightsError(f"--variant {arch.name}: {e}{hint}") from None
        confirmed = True
    else:
        det = detect_config(sd)
        matches = match_arches(det)
        if matches:
            acts = {a.act for a in matches}
            arch = matches[0]
            if len(acts) > 1:
                warnings.append(
                    f"shapes match {', '.join(a.name for a in matches)} with different activations; "
                    f"using {arch.name} ({arch.act}); pass --variant or --act to choose")
            # keep the exact detected ratios' meaning but the variant's canonical values
            cfg = apply_arch(det, arch)
            confirmed = len(acts) == 1
        else:
            cfg = replace(det, variant="custom")
            confirmed = False
        validate(sd, cfg, origin)
    if act is not None:
        if confirmed and act != cfg.act:
            warnings.append(f"--act {act} overrides the activation of {cfg.variant} ({cfg.act})")
        cfg = replace(cfg, act=act)
        confirmed = True
    if not confirmed:
        warnings.append(
            f"shapes match no known LeViT config ({_describe(cfg)}); the activation could not be "
            f"confirmed and defaults to {cfg.act}; pass --act silu|hard_swish to set it")
    return Resolution(config=cfg, confirmed=confirmed, warnings=warnings)


def _describe(cfg: LevitConfig) -> str:
    return (f"embed_dim {list(cfg.embed_dim)}, key_dim {cfg.key_dim}, num_heads {list(cfg.num_heads)}, "
            f"depth {list(cfg.depth)}, attn_ratio {list(cfg.attn_ratio)}, mlp_ratio {list(cfg.mlp_ratio)}")


def _listing(title: str, items: list[str]) -> str:
    shown = items[:MAX_LISTED]
    more = f"\n  ... and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return f"{title} ({len(items)}):\n  " + "\n  ".join(shown) + more


def _group_keys(keys: list[str]) -> list[str]:
    """Collapse the keys of one module: 'a.qkv.{linear.weight,bn.weight,...}'."""
    groups: dict[str, list[str]] = {}
    for k in keys:
        m = re.match(r"^(.*?)\.((?:linear|bn)\.[a-z_]+)$", k)
        prefix, leaf = (m.group(1), m.group(2)) if m else (k, "")
        groups.setdefault(prefix, []).append(leaf)
    out = []
    for prefix, leaves in groups.items():
        if leaves == [""]:
            out.append(prefix)
        elif len(leaves) == 1:
            out.append(f"{prefix}.{leaves[0]}")
        else:
            out.append(f"{prefix}.{{{','.join(leaves)}}}")
    return out


def validate(sd: dict, cfg: LevitConfig, origin: dict | None = None) -> None:
    """Exact key set and shapes of cfg; one error listing every problem.

    `origin` maps timm names back to the checkpoint's own names (FB) for messages.
    """
    origin = origin or {}
    expected = timm_shapes(cfg)

    def name(k):
        o = origin.get(k, k)
        return k if o == k else f"{o} (timm: {k})"

    missing = _group_keys([k for k in expected if k not in sd])
    unexpected = [name(k) for k in sd if k not in expected and not is_ignorable_key(k)]
    mismatched = [
        f"{name(k)}: checkpoint {list(sd[k].shape)}, expected {list(expected[k])}"
        for k in expected if k in sd and tuple(sd[k].shape) != expected[k]
    ]
    nonfloat = [name(k) for k in expected if k in sd and not np.issubdtype(sd[k].dtype, np.floating)]
    parts = []
    if missing:
        parts.append(_listing("missing keys (timm names)", missing))
    if unexpected:
        parts.append(_listing("unexpected keys", unexpected))
    if mismatched:
        parts.append(_listing("shape mismatches", mismatched))
    if nonfloat:
        parts.append(_listing("non-floating-point tensors", nonfloat))
    if parts:
        raise LevitWeightsError(f"checkpoint does not fit {cfg.variant} ({_describe(cfg)}):\n" + "\n".join(parts))
