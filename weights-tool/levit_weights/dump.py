"""`levit-weights dump`: golden PyTorch outputs for the Rust engine's tests.

For each model: seeded trained-like random weights, checkpoints in both layouts,
both converted through `convert_checkpoint` (their tensor bytes must be identical),
then f32 eval logits and per-stage activations on the shared inputs. The manifest
lets the Rust tests find everything without Python.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import shutil
import tempfile
import time
import zlib

import numpy as np

from .config import PAPER_VARIANTS, TINY_ARCHES, img_size_problem, known_arches
from .errors import LevitWeightsError, warn

DUMPABLE = PAPER_VARIANTS + ("levit_256d",) + tuple(TINY_ARCHES)
MANIFEST_FORMAT = "levit-golden"
MANIFEST_VERSION = 1
# Golden data is only meaningful if f32 round-off is far below the tolerance.
MAX_F32_VS_F64_REL = 1e-5
# Inputs that must be well-conditioned (checked). `large` (N(0,1)*25) is not: scaling
# the input by c scales attention logits by ~c^2, the softmaxes saturate and f32
# round-off alone moves deep outputs by 1e-2..1e-1 relative in every variant. It stays
# in the set as a robustness case; per-tensor figures and `compare` say what to check.
CONDITIONED_INPUTS = ("randn", "smooth", "batch4")
TOLERANCE = {
    "rel": 1e-4,
    "rule": "max|engine-torch| <= rel * max(1, max|torch|), identical top-5",
    "applies_to": "per case, the tensors listed in its 'compare' (f32_vs_f64_rel <= 1e-5); "
                  "the other tensors of that case are ill-conditioned (torch f32 vs f64 already "
                  "differ by more) and need only be finite",
}


# Crops of --bn-images the BatchNorms are refitted on, and crops the ranges are measured on.
BN_COUNT = 128
BN_TEST_COUNT = 64


def build_model(name: str, img_size: int | None = None):
    """timm model for a named variant, or timm's Levit/LevitDistilled for a tiny config
    (at its default img_size, or at `img_size`)."""
    import timm
    from timm.models import levit as tl

    if name in TINY_ARCHES:
        arch = TINY_ARCHES[name]
        cls = tl.LevitDistilled if arch.distilled else tl.Levit
        return cls(**arch.config(img_size=img_size).timm_kwargs())
    if img_size is None:
        return timm.create_model(name)
    return timm.create_model(name, img_size=img_size)


def _model_seed(seed: int, name: str) -> int:
    """Per-model seed, so adding a model to a dump never changes the others."""
    return zlib.crc32(f"{seed}:{name}".encode())


class StageTaps:
    """Forward hooks collecting the stem output (as tokens) and every stage output."""

    def __init__(self, model):
        self.out: dict[str, np.ndarray] = {}
        self.handles = [model.stem.register_forward_hook(self._stem)]
        for s, stage in enumerate(model.stages):
            self.handles.append(stage.register_forward_hook(self._stage(s)))

    def _stem(self, mod, inp, out):
        # [N,C,R,R] -> [N, R*R, C]: row-major tokens, as the engine lays them out.
        self.out["stem"] = out.flatten(2).transpose(1, 2).detach().numpy().copy()

    def _stage(self, s):
        def hook(mod, inp, out):
            self.out[f"stage{s}"] = out.detach().numpy().copy()
        return hook

    def close(self):
        for h in self.handles:
            h.remove()


def _save(path: str, arr: np.ndarray) -> None:
    np.save(path, np.ascontiguousarray(arr, dtype=np.float32))


def _versions() -> dict:
    import numpy
    import timm
    import torch

    return {"torch": torch.__version__, "timm": timm.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


def _load_manifest(path: str, seed: int) -> dict:
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            m = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise LevitWeightsError(f"cannot merge into {path}: {e}") from None
    if m.get("format") != MANIFEST_FORMAT:
        raise LevitWeightsError(f"{path} is not a {MANIFEST_FORMAT} manifest")
    if m.get("seed") != seed:
        raise LevitWeightsError(
            f"{path} holds goldens for seed {m.get('seed')}; its inputs would change with --seed {seed}. "
            "Use the same seed or another --out directory")
    return m


def dump_model(name: str, out_dir: str, seed: int, inputs: dict, keep_checkpoints: bool,
               bn_images: str | None = None, bn_count: int = BN_COUNT) -> dict:
    """Everything for one model; returns its manifest entry. With `bn_images`, the
    BatchNorm statistics are then refitted on `bn_count` random crops of those photos
    (`natural.py`), and the manifest records each stage's activation ranges on other
    crops before and after."""
    import torch
    from safetensors.torch import save_file

    from .convert import convert_checkpoint
    from .layouts import timm_to_fb
    from .lvt import read_lvt
    from .randinit import make_trained_like_, reset_bias_cache_

    t0 = time.time()
    mdir = os.path.join(out_dir, name)
    os.makedirs(mdir, exist_ok=True)
    model = build_model(name)
    gen = torch.Generator().manual_seed(_model_seed(seed, name))
    make_trained_like_(model, gen)
    bn_natural = None
    if bn_images is not None:
        bn_natural = _natural_bn_(model, gen, bn_images, bn_count, seed)
    # Weights are final: clear timm's eval bias cache before any golden forward (ref §3.3).
    reset_bias_cache_(model)
    expected_arch = known_arches()[name]

    # --- checkpoints in both layouts, converted by the CLI code path ---
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    tmp = None if keep_checkpoints else tempfile.mkdtemp(prefix="levit-dump-")
    ck_dir = mdir if keep_checkpoints else tmp
    ck_timm = os.path.join(ck_dir, "checkpoint_timm.safetensors")
    ck_fb = os.path.join(ck_dir, "checkpoint_fb.pth")
    try:
        save_file(sd, ck_timm)
        cfg_guess = expected_arch.config(num_classes=model.num_classes,
                                         distilled=hasattr(model, "head_dist"))
        torch.save({"model": timm_to_fb(sd, cfg_guess)}, ck_fb)
        lvt_timm = os.path.join(mdir, "model_timm.lvt")
        lvt_fb = os.path.join(mdir, "model_fb.lvt")
        r_timm = convert_checkpoint(ck_timm, lvt_timm)
        r_fb = convert_checkpoint(ck_fb, lvt_fb)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    for r in (r_timm, r_fb):
        for w in r.warnings:
            warn(f"{name}: {w}")
    f_timm, f_fb = read_lvt(lvt_timm), read_lvt(lvt_fb)
    if f_timm.data_bytes() != f_fb.data_bytes() or f_timm.config_json != f_fb.config_json:
        raise LevitWeightsError(f"{name}: FB and timm checkpoints converted to different .lvt tensors")
    cfg = f_timm.config
    if cfg.variant != name or cfg.act != expected_arch.act:
        raise LevitWeightsError(f"{name}: converter detected {cfg.variant}/{cfg.act}, "
                                f"expected {name}/{expected_arch.act}")
    t_convert = time.time() - t0

    # --- golden forwards (f32), and the same model in f64 to measure f32 round-off ---
    model64 = copy.deepcopy(model).double()
    reset_bias_cache_(model64)
    taps_names = ["logits", "stem"] + [f"stage{s}" for s in range(cfg.num_stages)]
    cases, worst_abs, worst_rel, logit_max, logit_std = [], 0.0, 0.0, 0.0, []
    for inp_name, x in inputs.items():
        t32, t64 = StageTaps(model), StageTaps(model64)
        with torch.no_grad():
            t32.out["logits"] = model(torch.from_numpy(x)).numpy()
            t64.out["logits"] = model64(torch.from_numpy(x).double()).numpy()
        t32.close()
        t64.close()
        f_abs, f_rel = {}, {}
        for t in taps_names:
            a, b = t32.out[t].astype(np.float64), t64.out[t]
            f_abs[t] = float(np.max(np.abs(a - b)))
            f_rel[t] = f_abs[t] / max(1.0, float(np.max(np.abs(b))))
        logits = t32.out["logits"]
        if inp_name in CONDITIONED_INPUTS:
            worst_abs, worst_rel = max(worst_abs, f_abs["logits"]), max(worst_rel, f_rel["logits"])
            logit_max = max(logit_max, float(np.max(np.abs(logits))))
            logit_std.append(float(logits.std()))
        entry = {"input": inp_name, "logits": f"{name}/{inp_name}.logits.npy", "stages": {},
                 "f32_vs_f64_max_abs": f_abs["logits"],
                 "f32_vs_f64_rel": f_rel,
                 "compare": [t for t in taps_names if f_rel[t] <= MAX_F32_VS_F64_REL]}
        _save(os.path.join(mdir, f"{inp_name}.logits.npy"), logits)
        for tap in taps_names[1:]:
            rel = f"{name}/{inp_name}.{tap}.npy"
            _save(os.path.join(out_dir, rel), t32.out[tap])
            entry["stages"][tap] = rel
        cases.append(entry)
    if worst_rel > MAX_F32_VS_F64_REL:
        msg = (f"{name}: torch f32 vs f64 logits differ by {worst_abs:.3g} ({worst_rel:.3g} relative > "
               f"{MAX_F32_VS_F64_REL}) on the {'/'.join(CONDITIONED_INPUTS)} inputs")
        if bn_natural is None:
            raise LevitWeightsError(msg + "; the random weights are too chaotic for golden data")
        # BatchNorms fitted to photos leave N(0,1) inputs out of distribution: such a
        # dump is for measuring quantization on natural images, and each case's
        # `compare` list still names only its well-conditioned tensors.
        warn(msg + " (BatchNorm fitted to --bn-images: the synthetic inputs are out of its "
             "distribution; their ill-conditioned tensors are left out of `compare`)")

    entry = {
        "name": name,
        "config": f_timm.config_json,
        "files": {"timm": f"{name}/model_timm.lvt", "fb": f"{name}/model_fb.lvt"},
        "f32_vs_f64_max_abs": worst_abs,
        "f32_vs_f64_rel": worst_rel,
        "logits_max_abs": logit_max,
        "logits_std": float(np.mean(logit_std)),
        "cases": cases,
    }
    if bn_natural is not None:
        entry["bn_natural"] = bn_natural
    if keep_checkpoints:
        entry["checkpoints"] = {"timm": f"{name}/checkpoint_timm.safetensors",
                                "fb": f"{name}/checkpoint_fb.pth"}
    dt = time.time() - t0
    print(f"{name}: f32 vs f64 max|dlogit| {worst_abs:.2e} ({worst_rel:.2e} rel), logits std "
          f"{entry['logits_std']:.2f} max {logit_max:.1f}; {r_timm.folded_params:,} params, "
          f"{r_timm.file_size / 1e6:.2f} MB .lvt; {dt:.1f}s (convert {t_convert:.1f}s)", flush=True)
    return entry


def _natural_bn_(model, gen, bn_images: str, bn_count: int, seed: int) -> dict:
    """Refits `model`'s BatchNorms on natural crops and rescales its heads on them;
    returns what was done and the activation ranges before and after."""
    import torch

    from . import natural
    from .randinit import scale_heads_

    if bn_count < 16:
        raise LevitWeightsError(f"--bn-count {bn_count}: at least 16 crops are needed")
    draw = int(torch.randint(0, 2**62, (1,), generator=gen))
    # The model's input size: 16x its first stage's token grid (the attention-bias
    # index table of a timm Levit block is [grid², grid²]).
    grid = round(model.stages[0].blocks[0].attn.attention_bias_idxs.shape[-1] ** 0.5)
    img_size = 16 * grid
    calib = natural.natural_images(bn_images, bn_count, seed=draw, img_size=img_size)
    test = natural.natural_images(bn_images, BN_TEST_COUNT, seed=draw + 1, img_size=img_size)
    before = natural.range_report(natural.activation_ranges(model, test))
    natural.calibrate_bn_on_(model, calib)
    alpha = scale_heads_(model, gen, x=calib[:32])
    after = natural.range_report(natural.activation_ranges(model, test))
    print(f"  ranges used by a typical crop, before: {natural.format_report(before)}")
    print(f"  after refitting BatchNorm on {bn_count} crops: {natural.format_report(after)}")
    return {"images": os.path.abspath(bn_images), "count": bn_count, "seed": seed,
            "head_scale": alpha, "test_crops": BN_TEST_COUNT, "ranges_before": before, "ranges_after": after}


def run_dump(out_dir: str, variants: list[str], seed: int = 0, keep_checkpoints: bool = True,
             bn_images: str | None = None, bn_count: int = BN_COUNT) -> dict:
    import torch

    names = [v.strip() for v in variants]
    bad = [n for n in names if n not in DUMPABLE]
    if bad:
        raise LevitWeightsError(f"cannot dump {', '.join(bad)}; choose from {', '.join(DUMPABLE)}")
    torch.manual_seed(seed)  # nothing should draw from it, but keep any stray draw reproducible
    os.makedirs(os.path.join(out_dir, "inputs"), exist_ok=True)
    manifest_path = os.path.join(out_dir, "manifest.json")
    old = _load_manifest(manifest_path, seed)
    if old.get("kind") == SIZES_MANIFEST_KIND:
        raise LevitWeightsError(f"{manifest_path} is an img_size sweep; write the full dump "
                                "to its own directory")

    t0 = time.time()
    from .inputs import make_inputs

    inputs = make_inputs(seed)
    for k, v in inputs.items():
        _save(os.path.join(out_dir, "inputs", f"{k}.npy"), v)

    models = {m["name"]: m for m in old.get("models", [])}
    for n in names:
        models[n] = dump_model(n, out_dir, seed, inputs, keep_checkpoints, bn_images, bn_count)
        # Rewrite after every model, so an interrupted run still leaves a usable manifest.
        manifest = {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "seed": seed,
            "versions": _versions(),
            "tolerance": TOLERANCE,
            "inputs": {k: f"inputs/{k}.npy" for k in inputs},
            "models": list(models.values()),
        }
        tmp = manifest_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(manifest, f, indent=1)
            f.write("\n")
        os.replace(tmp, manifest_path)
    print(f"wrote {len(names)} model(s) to {out_dir} in {time.time() - t0:.1f}s")
    return manifest


# ---- img_size sweep: logits-only cases of one variant at many input sizes ------------

SIZES_MANIFEST_KIND = "img-sizes"


def size_model_name(name: str, img_size: int) -> str:
    return f"{name}_img{img_size}"


def dump_img_size(name: str, img_size: int, out_dir: str, seed: int) -> tuple[dict, dict]:
    """One variant built by timm at `img_size`, converted, and its f32 logits on a randn
    and a smooth image of that size. Returns (manifest entry, {input name: path})."""
    import torch
    from safetensors.torch import save_file

    from .convert import convert_checkpoint
    from .inputs import smooth_image
    from .lvt import read_lvt
    from .randinit import make_trained_like_, reset_bias_cache_

    t0 = time.time()
    tag = size_model_name(name, img_size)
    mdir = os.path.join(out_dir, tag)
    os.makedirs(mdir, exist_ok=True)
    model = build_model(name, img_size=img_size)
    in_chans = model.stem.conv1.linear.in_channels
    gen = torch.Generator().manual_seed(_model_seed(seed, tag))
    make_trained_like_(model, gen, img_size=img_size, in_chans=in_chans)
    reset_bias_cache_(model)
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    lvt_path = os.path.join(mdir, "model_timm.lvt")
    tmp = tempfile.mkdtemp(prefix="levit-dump-")
    try:
        ck = os.path.join(tmp, "checkpoint_timm.safetensors")
        save_file(sd, ck)
        r = convert_checkpoint(ck, lvt_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for w in r.warnings:
        warn(f"{tag}: {w}")
    f = read_lvt(lvt_path)
    if f.config.variant != name or f.config.img_size != img_size:
        raise LevitWeightsError(f"{tag}: converter detected {f.config.variant} at img_size "
                                f"{f.config.img_size}, expected {name} at {img_size}")

    rng = np.random.default_rng([seed, 0x512E, img_size])
    x = np.ascontiguousarray(np.stack([
        rng.standard_normal((in_chans, img_size, img_size)),
        smooth_image(rng, img_size, chans=in_chans),
    ]), dtype=np.float32)
    model64 = copy.deepcopy(model).double()
    reset_bias_cache_(model64)
    with torch.no_grad():
        y32 = model(torch.from_numpy(x)).numpy()
        y64 = model64(torch.from_numpy(x).double()).numpy()
    f_abs = float(np.max(np.abs(y32.astype(np.float64) - y64)))
    f_rel = f_abs / max(1.0, float(np.max(np.abs(y64))))
    if not f_rel <= MAX_F32_VS_F64_REL:
        raise LevitWeightsError(f"{tag}: torch f32 vs f64 logits differ by {f_rel:.3g} relative "
                                f"> {MAX_F32_VS_F64_REL}; the random weights are too chaotic for golden data")
    inp = f"inputs/{tag}.npy"
    _save(os.path.join(out_dir, inp), x)
    _save(os.path.join(mdir, "logits.npy"), y32)
    res = f.config.resolutions()
    entry = {
        "name": tag,
        "variant": name,
        "img_size": img_size,
        "resolutions": res,
        "config": f.config_json,
        "files": {"timm": f"{tag}/model_timm.lvt"},
        "f32_vs_f64_max_abs": f_abs,
        "f32_vs_f64_rel": f_rel,
        "logits_max_abs": float(np.max(np.abs(y32))),
        "cases": [{"input": tag, "logits": f"{tag}/logits.npy", "stages": {},
                   "f32_vs_f64_max_abs": f_abs, "f32_vs_f64_rel": {"logits": f_rel},
                   "compare": ["logits"]}],
    }
    print(f"{tag}: grids {'->'.join(map(str, res))}, f32 vs f64 max|dlogit| {f_abs:.2e} "
          f"({f_rel:.2e} rel), max|logit| {entry['logits_max_abs']:.1f}; {time.time() - t0:.1f}s",
          flush=True)
    return entry, {tag: inp}


def parse_img_sizes(text: str) -> list[int]:
    """'16,32,48' -> [16, 32, 48]; refuses what the engine cannot run, with its reason."""
    sizes = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            v = int(part)
        except ValueError:
            raise LevitWeightsError(f"--img-sizes: {part!r} is not an integer") from None
        problem = img_size_problem(v)
        if problem:
            raise LevitWeightsError(f"--img-sizes: unsupported config: img_size: {problem}")
        sizes.append(v)
    if not sizes:
        raise LevitWeightsError("--img-sizes: no sizes given")
    return sizes


def run_size_dump(out_dir: str, variants: list[str], img_sizes: list[int], seed: int = 0) -> dict:
    """Logits-only goldens of each variant at each img_size (timm layout, no checkpoints
    kept), in their own manifest (`kind` "img-sizes"; merged like `run_dump`'s)."""
    import torch

    names = [v.strip() for v in variants]
    bad = [n for n in names if n not in DUMPABLE]
    if bad:
        raise LevitWeightsError(f"cannot dump {', '.join(bad)}; choose from {', '.join(DUMPABLE)}")
    torch.manual_seed(seed)
    os.makedirs(os.path.join(out_dir, "inputs"), exist_ok=True)
    manifest_path = os.path.join(out_dir, "manifest.json")
    old = _load_manifest(manifest_path, seed)
    if old and old.get("kind") != SIZES_MANIFEST_KIND:
        raise LevitWeightsError(f"{manifest_path} is a full golden dump; write the img_size "
                                "sweep to its own directory")
    t0 = time.time()
    models = {m["name"]: m for m in old.get("models", [])}
    inputs = dict(old.get("inputs", {}))
    for n in names:
        for size in img_sizes:
            entry, inp = dump_img_size(n, size, out_dir, seed)
            models[entry["name"]] = entry
            inputs.update(inp)
            manifest = {
                "format": MANIFEST_FORMAT,
                "version": MANIFEST_VERSION,
                "kind": SIZES_MANIFEST_KIND,
                "seed": seed,
                "versions": _versions(),
                "tolerance": TOLERANCE,
                "inputs": inputs,
                "models": sorted(models.values(), key=lambda m: (m["variant"], m["img_size"])),
            }
            tmp = manifest_path + ".tmp"
            with open(tmp, "w") as fh:
                json.dump(manifest, fh, indent=1)
                fh.write("\n")
            os.replace(tmp, manifest_path)
    print(f"wrote {len(names) * len(img_sizes)} img_size case(s) to {out_dir} in {time.time() - t0:.1f}s")
    return manifest
