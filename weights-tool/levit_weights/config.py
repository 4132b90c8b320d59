"""The LeViT model config: the `config` object of a .lvt file, plus the known variants.

The config is the single source of truth for every shape: `timm_shapes` (what a
checkpoint must contain) and `lvt.expected_shapes` (what a .lvt must contain) are both
derived from it with exactly timm's integer arithmetic, so detection, validation and
writing can never disagree.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

ACTS = ("hard_swish", "silu")

# BatchNorm eps used by every BN in FB LeViT and timm (never overridden).
BN_EPS = 1e-5

# Stem stride of the only stem levit-rs supports (timm stem_type 's16').
STEM_STRIDE = 16

# The engine's bound on img_size (crates/levit-graph config.rs MAX_IMG).
MAX_IMG_SIZE = 2048


def img_size_problem(img_size: int) -> str | None:
    """Why the engine cannot run img_size, word for word as levit-graph's
    `check_img_size` says it; None when it can.

    timm sizes its attention biases for an img_size // 16 grid while its stem makes a
    ceil(img_size / 16) one, so a timm LeViT runs only on 16 * (img_size // 16) pixel
    inputs: below 16 the grid is empty (timm builds the model but cannot run it), and a
    checkpoint built at a size that is not a multiple of 16 is the checkpoint of
    16 * (img_size // 16) (which is what detection reads back from the bias tables).
    """
    if img_size < STEM_STRIDE:
        return (f"{img_size} is below 16: the token grid (img_size // 16) is empty, and timm "
                "cannot run such a model either")
    if img_size % STEM_STRIDE:
        runs_at = STEM_STRIDE * (img_size // STEM_STRIDE)
        return (f"{img_size} is not a multiple of 16: timm runs such a model only on "
                f"{runs_at}x{runs_at} inputs (its attention biases cover a grid of img_size // 16), "
                f"so use img_size {runs_at}")
    if img_size > MAX_IMG_SIZE:
        return f"{img_size} is above levit's limit of {MAX_IMG_SIZE}"
    return None


@dataclass(frozen=True)
class LevitConfig:
    """Hyper-parameters of one LeViT, named as in docs/weight-format.md."""

    variant: str
    img_size: int
    in_chans: int
    num_classes: int
    embed_dim: tuple[int, ...]
    key_dim: int
    num_heads: tuple[int, ...]
    depth: tuple[int, ...]
    attn_ratio: tuple[float, ...]
    mlp_ratio: tuple[float, ...]
    down_attn_ratio: float = 4.0
    down_mlp_ratio: float = 2.0
    act: str = "hard_swish"
    distilled: bool = True

    # ---- derived sizes, exactly as timm computes them -------------------------------
    @property
    def num_stages(self) -> int:
        return len(self.embed_dim)

    def resolutions(self) -> list[int]:
        """Token grid side per stage: R0 = img/16, then (R-1)//2+1 per downsample."""
        r = [self.img_size // STEM_STRIDE]
        for _ in range(1, self.num_stages):
            r.append((r[-1] - 1) // 2 + 1)
        return r

    def stem_channels(self) -> list[int]:
        """in_chans -> E0/8 -> E0/4 -> E0/2 -> E0 (timm Stem16 uses floor division)."""
        e0 = self.embed_dim[0]
        return [self.in_chans, e0 // 8, e0 // 4, e0 // 2, e0]

    def val_dim(self, s: int) -> int:
        return int(self.attn_ratio[s] * self.key_dim)

    def mlp_hidden(self, s: int) -> int:
        return int(self.embed_dim[s] * self.mlp_ratio[s])

    def down_heads(self, s: int) -> int:
        """Heads of the downsample that starts stage s >= 1 (timm: in_dim // key_dim)."""
        return self.embed_dim[s - 1] // self.key_dim

    def down_val_dim(self) -> int:
        return int(self.down_attn_ratio * self.key_dim)

    def down_mlp_hidden(self, s: int) -> int:
        return int(self.embed_dim[s] * self.down_mlp_ratio)

    # ---- serialisation ----------------------------------------------------------------
    def to_json_dict(self) -> dict:
        """The `config` object of the .lvt header, keys in the documented order."""
        return {
            "variant": self.variant,
            "img_size": int(self.img_size),
            "in_chans": int(self.in_chans),
            "num_classes": int(self.num_classes),
            "embed_dim": [int(x) for x in self.embed_dim],
            "key_dim": int(self.key_dim),
            "num_heads": [int(x) for x in self.num_heads],
            "depth": [int(x) for x in self.depth],
            "attn_ratio": [float(x) for x in self.attn_ratio],
            "mlp_ratio": [float(x) for x in self.mlp_ratio],
            "down_attn_ratio": float(self.down_attn_ratio),
            "down_mlp_ratio": float(self.down_mlp_ratio),
            "act": self.act,
            "distilled": bool(self.distilled),
        }

    @classmethod
    def from_json_dict(cls, d: dict) -> "LevitConfig":
        return cls(
            variant=d["variant"],
            img_size=d["img_size"],
            in_chans=d["in_chans"],
            num_classes=d["num_classes"],
            embed_dim=tuple(d["embed_dim"]),
            key_dim=d["key_dim"],
            num_heads=tuple(d["num_heads"]),
            depth=tuple(d["depth"]),
            attn_ratio=tuple(float(x) for x in d["attn_ratio"]),
            mlp_ratio=tuple(float(x) for x in d["mlp_ratio"]),
            down_attn_ratio=float(d["down_attn_ratio"]),
            down_mlp_ratio=float(d["down_mlp_ratio"]),
            act=d["act"],
            distilled=bool(d["distilled"]),
        )

    def timm_kwargs(self) -> dict:
        """Arguments for timm's `Levit`/`LevitDistilled` constructor."""
        return dict(
            img_size=self.img_size,
            in_chans=self.in_chans,
            num_classes=self.num_classes,
            embed_dim=tuple(self.embed_dim),
            key_dim=self.key_dim,
            num_heads=tuple(self.num_heads),
            depth=tuple(self.depth),
            attn_ratio=tuple(self.attn_ratio),
            mlp_ratio=tuple(self.mlp_ratio),
            act_layer=self.act,
        )


def exact_ratio(num: int, den: int) -> float:
    """num/den as a float r with int(r*den) == num, like timm's int(ratio*dim).

    a/b*b can round just below a, and int() would then lose one; nudge up by an ulp.
    """
    r = num / den
    while int(r * den) < num:
        r = math.nextafter(r, math.inf)
    return r


# ---- known architectures --------------------------------------------------------------

@dataclass(frozen=True)
class Arch:
    """The architecture part of a config (what a variant name fixes).

    img_size, in_chans, num_classes and distilled are build arguments, not part of the
    architecture: they always come from the checkpoint.
    """

    name: str
    embed_dim: tuple[int, ...]
    key_dim: int
    num_heads: tuple[int, ...]
    depth: tuple[int, ...]
    attn_ratio: tuple[float, ...]
    mlp_ratio: tuple[float, ...]
    act: str = "hard_swish"
    stem_type: str = "s16"
    # Defaults used when this tool builds the model itself (dump).
    img_size: int = 224
    num_classes: int = 1000
    distilled: bool = True
    origin: str = "timm"
    extra: dict = field(default_factory=dict, compare=False)

    def config(self, img_size=None, in_chans=3, num_classes=None, distilled=None) -> LevitConfig:
        return LevitConfig(
            variant=self.name,
            img_size=self.img_size if img_size is None else img_size,
            in_chans=in_chans,
            num_classes=self.num_classes if num_classes is None else num_classes,
            embed_dim=self.embed_dim,
            key_dim=self.key_dim,
            num_heads=self.num_heads,
            depth=self.depth,
            attn_ratio=self.attn_ratio,
            mlp_ratio=self.mlp_ratio,
            act=self.act,
            distilled=self.distilled if distilled is None else distilled,
        )


def _ntuple(v, n):
    if isinstance(v, (tuple, list)):
        assert len(v) == n
        return tuple(v)
    return (v,) * n


def _timm_arches() -> dict[str, Arch]:
    """Every entry of timm's `model_cfgs`, normalised with timm's own defaults."""
    from timm.models import levit as tl

    # create_levit builds these without distillation head (distilled=False).
    not_distilled = {"levit_512_s8", "levit_512", "levit_256d", "levit_512d"}
    out = {}
    for name, cfg in tl.model_cfgs.items():
        n = len(cfg["embed_dim"])
        act = cfg.get("act_layer", "hard_swish")
        act = {"hardswish": "hard_swish", "swish": "silu"}.get(act, act)
        out[name] = Arch(
            name=name,
            embed_dim=tuple(cfg["embed_dim"]),
            key_dim=cfg["key_dim"],
            num_heads=_ntuple(cfg["num_heads"], n),
            depth=tuple(cfg["depth"]),
            attn_ratio=tuple(float(x) for x in _ntuple(cfg.get("attn_ratio", 2.0), n)),
            mlp_ratio=tuple(float(x) for x in _ntuple(cfg.get("mlp_ratio", 2.0), n)),
            act=act,
            stem_type=cfg.get("stem_type", "s16"),
            distilled=name not in not_distilled,
        )
    return out


# Two tiny configs defined by this tool for the committed golden fixtures. Both keep
# img 224 so the grids are 14 -> 7 -> 4 and both attention kinds run at every size.
TINY_ARCHES = {
    "tiny_hswish": Arch(
        name="tiny_hswish",
        embed_dim=(32, 48, 64),
        key_dim=8,
        num_heads=(2, 3, 4),
        depth=(1, 2, 1),
        attn_ratio=(2.0, 2.0, 2.0),
        mlp_ratio=(2.0, 2.0, 2.0),
        act="hard_swish",
        num_classes=10,
        distilled=True,
        origin="levit-weights",
    ),
    # key_dim 12: scale 12^-0.5 is not a power of two; per-stage ratios give
    # val_dim 24/18/30 and mlp hidden 48/108/72; 17 classes, stem widths 3/6/12 and
    # 2-head downsamples exercise the zero padding of panels and bias rows.
    "tiny_silu": Arch(
        name="tiny_silu",
        embed_dim=(24, 36, 48),
        key_dim=12,
        num_heads=(2, 3, 4),
        depth=(2, 1, 2),
        attn_ratio=(2.0, 1.5, 2.5),
        mlp_ratio=(2.0, 3.0, 1.5),
        act="silu",
        num_classes=17,
        distilled=False,
        origin="levit-weights",
    ),
}

PAPER_VARIANTS = ("levit_128s", "levit_128", "levit_192", "levit_256", "levit_384")

_ARCHES: dict[str, Arch] | None = None


def known_arches() -> dict[str, Arch]:
    """timm's model_cfgs followed by this tool's tiny configs (matching order)."""
    global _ARCHES
    if _ARCHES is None:
        _ARCHES = {**_timm_arches(), **TINY_ARCHES}
    return _ARCHES


def normalize_variant(name: str) -> str:
    """'LeViT-128S', '128s', 'levit_conv_128s', 'levit_128s.fb_dist_in1k' -> 'levit_128s'."""
    n = name.strip().lower().replace("-", "_")
    n = n.split(".")[0]  # timm pretrained tag
    if n in TINY_ARCHES:
        return n
    n = re.sub(r"^levit_", "", n)
    n = re.sub(r"^conv_", "", n)
    return "levit_" + n


def lookup_arch(name: str) -> Arch:
    from .errors import LevitWeightsError

    arches = known_arches()
    key = normalize_variant(name)
    if key not in arches:
        raise LevitWeightsError(
            f"unknown variant {name!r}; known: {', '.join(sorted(arches))}"
        )
    return arches[key]


def with_variant(cfg: LevitConfig, name: str) -> LevitConfig:
    return replace(cfg, variant=name)


# ---- shapes a timm-layout checkpoint must have ------------------------------------------

BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def _norm_layer(out: dict, prefix: str, n_out: int, n_in: int, conv3: bool = False):
    out[f"{prefix}.linear.weight"] = (n_out, n_in, 3, 3) if conv3 else (n_out, n_in)
    for k in BN_KEYS:
        out[f"{prefix}.bn.{k}"] = (n_out,)


def timm_shapes(cfg: LevitConfig) -> dict[str, tuple[int, ...]]:
    """Required keys of a timm (linear-mode) state_dict for cfg, with shapes.

    Ignorable keys (num_batches_tracked, attention_bias_idxs) are not listed; 1x1 conv
    weights of `levit_conv_*` checkpoints are squeezed before comparing.
    """
    out: dict[str, tuple[int, ...]] = {}
    ch = cfg.stem_channels()
    for i in range(4):
        _norm_layer(out, f"stem.conv{i + 1}", ch[i + 1], ch[i], conv3=True)
    res = cfg.resolutions()
    D = cfg.key_dim
    for s in range(cfg.num_stages):
        E = cfg.embed_dim[s]
        if s > 0:
            p = f"stages.{s}.downsample"
            Ein, Hd, Dvd = cfg.embed_dim[s - 1], cfg.down_heads(s), cfg.down_val_dim()
            _norm_layer(out, f"{p}.attn_downsample.kv", Hd * (D + Dvd), Ein)
            _norm_layer(out, f"{p}.attn_downsample.q.ln", Hd * D, Ein)
            _norm_layer(out, f"{p}.attn_downsample.proj.ln", E, Hd * Dvd)
            out[f"{p}.attn_downsample.attention_biases"] = (Hd, res[s - 1] ** 2)
            hid = cfg.down_mlp_hidden(s)
            _norm_layer(out, f"{p}.mlp.ln1", hid, E)
            _norm_layer(out, f"{p}.mlp.ln2", E, hid)
        H, Dv, hid = cfg.num_heads[s], cfg.val_dim(s), cfg.mlp_hidden(s)
        for j in range(cfg.depth[s]):
            p = f"stages.{s}.blocks.{j}"
            _norm_layer(out, f"{p}.attn.qkv", H * (2 * D + Dv), E)
            _norm_layer(out, f"{p}.attn.proj.ln", E, H * Dv)
            out[f"{p}.attn.attention_biases"] = (H, res[s] ** 2)
            _norm_layer(out, f"{p}.mlp.ln1", hid, E)
            _norm_layer(out, f"{p}.mlp.ln2", E, hid)
    heads = ("head", "head_dist") if cfg.distilled else ("head",)
    for h in heads:
        for k in BN_KEYS:
            out[f"{h}.bn.{k}"] = (cfg.embed_dim[-1],)
        out[f"{h}.linear.weight"] = (cfg.num_classes, cfg.embed_dim[-1])
        out[f"{h}.linear.bias"] = (cfg.num_classes,)
    return out


def is_ignorable_key(key: str) -> bool:
    """Keys a converter may drop silently: BN step counters and FB's saved bias indices."""
    return key.endswith("num_batches_tracked") or key.endswith("attention_bias_idxs")
