#!/usr/bin/env python3
"""The accuracy contract: levit f32 / bf16 (every bf16 GEMM kernel), OpenVINO bf16 and the int8 peers against PyTorch f32.

Same weights and inputs for every engine. For every variant it takes the seeded
trained-like random checkpoint of `levit-weights dump` (the one compare.py uses), builds
the timm model (the f32 reference), exports it to ONNX as compare.py does (OpenVINO and
ONNX Runtime load that file) and runs the converted `.lvt` through `levit infer`: in f32,
and with `--precision bf16` on the CPU's default path and on each other bf16 kernel the
CPU has (`--isa avx512`: bf16 weights widened to f32 FMA; `--isa avx512bf16`: vdpbf16ps;
the default is AMX where the CPU has it).

Inputs (one image each): the golden dump's `randn`, `smooth` and the 4 images of
`batch4` (`levit_weights.inputs.make_inputs`, seed 0, as in tests/golden-*), and the
photos in tests/fixtures/images through timm's eval transform for the variant
(`create_transform(**resolve_data_config({}, model=model))` on `Image.open(p).convert("RGB")`).

Per engine and variant, over the images: median and max of the relative logit error
`max_j|y_j - t_j| / max(1, max_j|t_j|)`, top-1 agreement and top-5 agreement (same
classes in the same order) with PyTorch f32; the max over the golden inputs alone, which
is what the contract of the golden tests covers (`tests/support/lib.rs`, read at run time:
f32 1e-4, bf16 1e-1 as of writing).
A `torch f32` row measures PyTorch f32 against PyTorch f64, the conditioning of each
image (the dump calls an input ill-conditioned above 1e-5).

    python benches/peers/accuracy.py                       # all 5 variants
    python benches/peers/accuracy.py --variants 128s --markdown --out accuracy.json

See benches/peers/README.md.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import compare as cmp  # noqa: E402 - the shared helpers (build, dump, ONNX export, levit infer)
import int8_peers  # noqa: E402 - OpenVINO NNCF and ONNX Runtime QDQ int8 builds

REPO = cmp.REPO
GOLDEN_INPUTS = ("randn", "smooth", "batch4")  # the dump's well-conditioned inputs (`large` is not)
# engine -> (label, levit precision, levit --isa, CPU flags the ISA needs); None precision: a Python peer
ENGINES = {
    "levit": ("levit f32", "f32", None, ()),
    "levit-bf16": ("levit bf16", "bf16", None, ()),
    "levit-bf16-avx512": ("levit bf16 avx512", "bf16", "avx512", ("avx512f",)),
    "levit-bf16-avx512bf16": ("levit bf16 avx512bf16", "bf16", "avx512bf16", ("avx512f", "avx512_bf16")),
    "levit-int8": ("levit int8", "int8", None, ()),
    "levit-int8-avx512": ("levit int8 avx512", "int8", "avx512", ("avx512f", "avx512_vnni")),
    "ov-bf16": ("OV bf16", None, None, ()),
    "ov-f32": ("OV f32", None, None, ()),
    "ort": ("ORT f32", None, None, ()),
    **{k: (label, None, None, ()) for k, (label, _, _) in int8_peers.PEERS.items()},
}
DEFAULT_ENGINES = ("levit", "levit-bf16", "levit-bf16-avx512", "levit-bf16-avx512bf16", "ov-bf16", "ort")
# The contract of the golden tests, on the golden inputs: read from tests/support/lib.rs
# (REL_TOLERANCE, BF16_REL_TOLERANCE; these are the fallbacks). An image whose PyTorch
# f32 logits are further than 1e-5 from f64 is ill-conditioned (weights-tool/
# levit_weights/dump.py: MAX_F32_VS_F64_REL).
TOLERANCE = {"f32": 1e-4, "bf16": 1e-1, "int8": None}  # int8: no golden contract (peers only)
MAX_F32_VS_F64_REL = 1e-5

log = cmp.log


def read_tolerances(path: Path) -> dict:
    """{"f32": REL_TOLERANCE, "bf16": BF16_REL_TOLERANCE, "int8": INT8_REL_TOLERANCE} as the golden tests
    define them."""
    import re

    tol = dict(TOLERANCE)
    try:
        text = path.read_text()
    except OSError:
        return tol
    for key, const in (("f32", "REL_TOLERANCE"), ("bf16", "BF16_REL_TOLERANCE"), ("int8", "INT8_REL_TOLERANCE")):
        m = re.search(rf"pub const {const}: f32 = ([0-9.eE+-]+);", text)
        if m:
            tol[key] = float(m.group(1))
    return tol


# --------------------------------------------------------------------------------------
# inputs


def golden_inputs(seed: int) -> list[tuple[str, object]]:
    """(name, [3,224,224] f32) for the dump's randn, smooth and batch4 images."""
    from levit_weights.inputs import make_inputs

    inputs = make_inputs(seed)
    out = []
    for k in GOLDEN_INPUTS:
        x = inputs[k]
        out += [(k, x[0])] if len(x) == 1 else [(f"{k}[{i}]", x[i]) for i in range(len(x))]
    return out


def photo_inputs(model, image_dir: Path, crops: int = 0, seed: int = 0) -> tuple[list[tuple[str, object]], str]:
    """The photos through timm's eval transform for `model`, each followed by `crops`
    random crops of it (a box of 30-100 % of each side at a random place, seeded by
    `seed` and the file name, then the same transform: more natural inputs from the
    same few files); returns them and the transform."""
    import random

    import numpy as np
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    tf = create_transform(**resolve_data_config({}, model=model))
    out = []
    for p in sorted(image_dir.iterdir()):
        if p.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
            continue
        with Image.open(p) as im:
            rgb = im.convert("RGB")  # as timm's dataset loader does (no EXIF transpose)
        out.append((p.name, np.ascontiguousarray(tf(rgb).numpy(), dtype=np.float32)))
        rng = random.Random(f"{seed}:{p.name}")
        w, h = rgb.size
        for c in range(crops):
            cw, ch = max(1, round(w * rng.uniform(0.3, 1.0))), max(1, round(h * rng.uniform(0.3, 1.0)))
            x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
            x = tf(rgb.crop((x0, y0, x0 + cw, y0 + ch)))
            out.append((f"{p.name}#crop{c}", np.ascontiguousarray(x.numpy(), dtype=np.float32)))
    return out, " -> ".join(type(t).__name__ for t in tf.transforms)


# --------------------------------------------------------------------------------------
# engines


def levit_kernels(levit_bin: Path, engines: list[str], flags: set[str]) -> dict:
    """engine -> {gemm_kernel, isa} from a 1-run levit-bench (random weights, no file), or
    {skip: why} for an ISA this CPU lacks, or one whose kernel an earlier row already runs."""
    out, seen = {}, {}
    for e in engines:
        label, precision, isa, need = ENGINES[e]
        if precision is None:
            continue
        missing = [f for f in need if f not in flags]
        if missing:
            out[e] = {"skip": f"CPU lacks {', '.join(missing)}"}
            continue
        # the kernel depends on (precision, ISA) only: ask levit-bench on random weights
        cmd = [str(levit_bin / "levit-bench"), "--variant", "128s", "--warmup", "0", "--iters", "1", "--no-peak",
               "--json", "--precision", precision] + (["--isa", isa] if isa else [])
        r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, RUST_BACKTRACE="0"))
        if r.returncode != 0:
            lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
            out[e] = {"skip": (lines[0] if lines else f"exit {r.returncode}").removeprefix("Error: ")}
            continue
        j = json.loads(r.stdout.strip().splitlines()[-1])
        k = {"gemm_kernel": j.get("gemm_kernel"), "isa": j.get("isa"), "precision": j.get("precision")}
        key = (k["precision"], k["gemm_kernel"])
        if key in seen:
            out[e] = {"skip": f"same kernel as {ENGINES[seen[key]][0]} ({k['gemm_kernel']})", **k}
            continue
        seen[key] = e
        out[e] = k
    return out


def run_peer(kind: str, onnx_path: Path, images) -> tuple[object, dict]:
    """ONNX Runtime / OpenVINO logits [N, classes], one batch-1 inference per image."""
    import numpy as np

    info: dict = {}
    if kind == "ort":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        info["version"] = ort.__version__

        def run(x):
            return sess.run(None, {name: x})[0]
    else:
        import openvino as ov

        core = ov.Core()
        config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        if kind == "ov-f32":
            config["INFERENCE_PRECISION_HINT"] = "f32"
        compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU", config)
        req = compiled.create_infer_request()
        hint = compiled.get_property("INFERENCE_PRECISION_HINT")
        info.update(version=ov.__version__, precision=hint.get_type_name() if hasattr(hint, "get_type_name")
                    else str(hint))

        def run(x):
            return req.infer({0: x})[compiled.output(0)]
    y = np.concatenate([np.array(run(np.ascontiguousarray(x[None])), dtype=np.float32) for x in images])
    return y, info


# --------------------------------------------------------------------------------------
# metrics


def per_image(ref, y) -> list[dict]:
    """Relative error and top-1 / top-5 agreement of each row of y against ref."""
    import numpy as np

    rows = []
    for t, v in zip(np.asarray(ref, dtype=np.float64), np.asarray(y, dtype=np.float64)):
        if not np.all(np.isfinite(v)):
            rows.append({"rel": float("inf"), "top1": False, "top5": False, "top5_set": False})
            continue
        rel = float(np.max(np.abs(v - t))) / max(1.0, float(np.max(np.abs(t))))
        top_t, top_v = np.argsort(-t, kind="stable")[:5], np.argsort(-v, kind="stable")[:5]
        rows.append({"rel": rel, "top1": bool(top_t[0] == top_v[0]), "top5": bool(np.array_equal(top_t, top_v)),
                     "top5_set": set(top_t.tolist()) == set(top_v.tolist())})
    return rows


def summarize(rows: list[dict], names: list[str], tol: float, n_golden: int, cond: list[bool]) -> dict:
    """Median / max over all images; max over the first n_golden (the golden inputs) and
    over the well-conditioned images (cond[i])."""
    import numpy as np

    rel = np.array([r["rel"] for r in rows])
    worst = int(np.argmax(rel))
    golden_max = float(rel[:n_golden].max()) if n_golden else 0.0
    return {"median_rel": float(np.median(rel)), "max_rel": float(rel[worst]), "worst_image": names[worst],
            "max_rel_golden": golden_max, "max_rel_conditioned": float(rel[np.asarray(cond)].max(initial=0.0)),
            "n_conditioned": int(sum(cond)), "top1": sum(r["top1"] for r in rows),
            "top5": sum(r["top5"] for r in rows), "top5_set": sum(r["top5_set"] for r in rows), "n": len(rows),
            "tolerance": tol,
            "above_tolerance": [n for n, r in zip(names, rel) if tol is not None and r > tol],
            "within_contract": None if tol is None else golden_max <= tol}


# --------------------------------------------------------------------------------------


def measure_variant(name: str, args, levit_bin: Path, kernels: dict, golden) -> dict:
    import numpy as np
    import torch

    t0 = time.time()
    ckpt = args.dump / name / "checkpoint_timm.safetensors"
    lvt = args.dump / name / "model_timm.lvt"
    model = cmp.load_timm(name, ckpt)
    photos, transform = photo_inputs(model, args.images, args.crops, args.seed)
    images = golden + photos
    names = [n for n, _ in images]
    x = np.ascontiguousarray(np.stack([im for _, im in images]), dtype=np.float32)
    x_path = args.work / f"{name}.inputs.npy"
    np.save(x_path, x)
    model64 = copy.deepcopy(model).double()
    model64.train()
    model64.eval()  # rebuild timm's attention-bias cache in f64
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy().astype(np.float32)
        ref64 = model64(torch.from_numpy(x).double()).numpy()
    del model64
    rec: dict = {"name": name, "checkpoint": str(ckpt), "lvt": str(lvt), "images": names, "transform": transform,
                 "n_golden": len(golden), "engines": {}}
    rows = per_image(ref64, ref)  # the conditioning of each image: PyTorch f32 against f64
    cond = [r["rel"] <= MAX_F32_VS_F64_REL for r in rows]
    rec["ill_conditioned"] = [n for n, c in zip(names, cond) if not c]
    rec["engines"]["torch"] = {"label": "torch f32 (vs f64)", "precision": "f32", "per_image": dict(zip(names, rows)),
                               **summarize(rows, names, TOLERANCE["f32"], len(golden), cond)}

    onnx_path = args.work / f"{name}.onnx"
    if any(ENGINES[e][1] is None and e not in int8_peers.PEERS for e in args.engines):
        rec["onnx"] = cmp.export_onnx(model, torch.from_numpy(x[:1]), onnx_path, args.opset)
    fused_path = args.work / f"{name}.fused.onnx"
    calib = None
    if any(e in int8_peers.PEERS for e in args.engines):
        # int8 peers: the fused export, calibrated on other crops of the same photos.
        rec["onnx_fused"] = cmp.export_onnx(int8_peers.fused_copy(model), torch.from_numpy(x[:1]), fused_path,
                                            args.opset)
        crops, _ = photo_inputs(model, args.images, args.calib_crops, args.seed + 1)
        calib = [im for n, im in crops if "#crop" in n]
        rec["calibration"] = {"images": len(calib), "seed": args.seed + 1, "source": str(args.images)}
    del model

    log_row(name, rec["engines"]["torch"])
    for e in args.engines:
        label, precision, isa, _ = ENGINES[e]
        r: dict = {"label": label}
        if precision is not None:  # levit: one `levit infer` on the whole batch
            k = kernels.get(e, {})
            r.update({kk: v for kk, v in k.items() if kk != "skip"})
            if "skip" in k:
                r["skip"] = k["skip"]
                rec["engines"][e] = r
                continue
            y, err = cmp.levit_infer(levit_bin, lvt, x_path, args.work / f"{name}.{e}.npy", isa, precision)
        elif e in int8_peers.PEERS:
            precision = "int8"
            try:
                _, kind, config = int8_peers.PEERS[e]
                run, info = int8_peers.build(kind, config, fused_path, calib, args.work)
                r["info"] = info
                y = np.concatenate([run(np.ascontiguousarray(im[None])) for im in x])
                err = None
            except Exception as ex:  # noqa: BLE001 - reported in the table, the run carries on
                y, err = None, f"{type(ex).__name__}: {str(ex)[:300]}"
        else:
            try:
                y, info = run_peer(e, onnx_path, x)
                r["info"] = info
                precision = "bf16" if e == "ov-bf16" else "f32"
                err = None
                if e == "ov-bf16" and info.get("precision") != "bf16":
                    log(f"  {name}: OpenVINO's default precision resolved to {info.get('precision')}, not bf16")
                    precision = "f32" if info.get("precision") == "f32" else precision
            except Exception as ex:  # noqa: BLE001 - reported in the table, the run carries on
                y, err = None, f"{type(ex).__name__}: {str(ex)[:200]}"
        r["precision"] = precision
        if err:
            r["error"] = err
            log(f"  {name} {label}: FAILED: {err}")
        else:
            rows = per_image(ref, y)
            r.update(summarize(rows, names, TOLERANCE[precision], len(golden), cond),
                     per_image=dict(zip(names, rows)))
            log_row(name, r)
        rec["engines"][e] = r
    rec["reference_max_abs"] = float(np.max(np.abs(ref)))
    rec["seconds"] = time.time() - t0
    x_path.unlink(missing_ok=True)
    return rec


def log_row(name: str, r: dict) -> None:
    log(f"  {name} {r['label']:<22} median {r['median_rel']:.2e}  max {r['max_rel']:.2e} ({r['worst_image']})  "
        f"golden max {r['max_rel_golden']:.2e}  top-1 {r['top1']}/{r['n']}  top-5 {r['top5']}/{r['n']}")


def report(variants: list[dict], engines: list[str], markdown: bool) -> str:
    headers = ["variant", "engine", "kernel", "median rel", "max rel", "max rel golden", "max rel cond.", "top-1",
               "top-5", "contract"]
    rows = []
    for v in variants:
        for e in ["torch"] + engines:
            r = v["engines"][e]
            kernel = r.get("gemm_kernel") or ("" if "info" not in r else
                                              f"{r['info'].get('precision', '?')} (resolved)" if e == "ov-bf16" else "")
            head = [v["name"].removeprefix("levit_"), r["label"], kernel]
            if "skip" in r or "error" in r:
                rows.append(head + ["n/a"] * 4 + [""] * 2 + ["skipped: " + r["skip"] if "skip" in r else "ERROR"])
                continue
            n = r["n"]
            rows.append(head + [f"{r['median_rel']:.1e}", f"{r['max_rel']:.1e}", f"{r['max_rel_golden']:.1e}",
                                f"{r['max_rel_conditioned']:.1e}", f"{r['top1']}/{n}", f"{r['top5']}/{n}",
                                "" if r["within_contract"] is None else
                                f"{'ok' if r['within_contract'] else 'NO'} ({r['tolerance']:.0e})"])
    return cmp.render(headers, rows, markdown, right_from=3)


def main(argv=None) -> int:
    default_cache = Path(os.environ.get("LEVIT_PEERS_CACHE", Path.home() / ".cache" / "levit-rs" / "peers"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default=",".join(cmp.VARIANTS), help="comma list of 128s,128,192,256,384 "
                                                                      "(default all)")
    ap.add_argument("--engines", default=",".join(DEFAULT_ENGINES),
                    help=f"subset of {','.join(ENGINES)} (default {','.join(DEFAULT_ENGINES)}); levit bf16 rows "
                         "for an ISA the CPU lacks, or that run the same kernel as an earlier row, are skipped")
    ap.add_argument("--dump", type=Path, help="levit-weights dump dir with checkpoints (compare.py's; missing "
                                              "variants are dumped into it); default <cache>/dump")
    ap.add_argument("--images", type=Path, default=REPO / "tests" / "fixtures" / "images",
                    help="photos to add to the golden inputs (default tests/fixtures/images)")
    ap.add_argument("--crops", type=int, default=0, help="random crops per photo added to the inputs (default 0: "
                                                         "each photo once); e.g. 20 for 6 + 21 x 21 = 447 inputs")
    ap.add_argument("--calib-crops", type=int, default=3, help="int8 peers: random crops per photo they are "
                                                              "calibrated on, another seed than --crops' "
                                                              "(default 3: 63 images)")
    ap.add_argument("--cache", type=Path, default=default_cache, help=f"cache dir (default {default_cache})")
    ap.add_argument("--work", type=Path, help="where the ONNX files and logits go (default <cache>/accuracy)")
    ap.add_argument("--out", type=Path, help="results JSON (default <work>/accuracy.json)")
    ap.add_argument("--markdown", action="store_true", help="print the table as GitHub markdown")
    ap.add_argument("--seed", type=int, default=0, help="seed of the golden inputs (default 0, the dumps')")
    ap.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    ap.add_argument("--levit-root", type=Path, default=REPO, help="levit-rs workspace to build and run (default: "
                                                                  "the one holding this script)")
    ap.add_argument("--no-build", action="store_true", help="skip `cargo build --release` (binaries must exist)")
    args = ap.parse_args(argv)

    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    bad = [e for e in args.engines if e not in ENGINES]
    if bad:
        ap.error(f"unknown engine(s) {bad}; choose from {','.join(ENGINES)}")
    args.engines = [e for e in ENGINES if e in args.engines]  # fixed order
    names = [cmp.variant_name(v) for v in args.variants.split(",") if v.strip()]
    bad = [n for n in names if n.removeprefix("levit_") not in cmp.VARIANTS]
    if bad:
        ap.error(f"unknown variant(s) {bad}; choose from {','.join(cmp.VARIANTS)}")
    args.work = args.work or args.cache / "accuracy"
    args.out = args.out or args.work / "accuracy.json"
    args.dump = args.dump or args.cache / "dump"
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    levit_root = args.levit_root.resolve()
    if not args.no_build:
        cmp.cargo_build(levit_root)
    levit_bin = cmp.bin_dir(levit_root)
    for b in ("levit", "levit-bench"):
        if not (levit_bin / b).exists():
            sys.exit(f"accuracy.py: {levit_bin / b} not found (build with cargo build --release -p levit-cli "
                     "-p levit-bench)")
    cmp.ensure_dump(args.dump, names)

    TOLERANCE.update(read_tolerances(levit_root / "tests" / "support" / "lib.rs"))
    flags = set(cmp.cpu_flags())
    kernels = levit_kernels(levit_bin, args.engines, flags)
    for e, k in kernels.items():
        what = f"skipped ({k['skip']})" if "skip" in k else f"{k['gemm_kernel']} (ISA {k['isa']})"
        log(f"{ENGINES[e][0]}: {what}")
    golden = golden_inputs(args.seed)

    import importlib.metadata as md

    def ver(pkg):
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return None

    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cmp.cpu_model(), "cpu_flags": sorted(flags), "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {p: ver(p) for p in ("torch", "timm", "onnx", "onnxruntime", "openvino", "numpy", "pillow")},
        "levit_git": cmp.git_describe(levit_root), "levit_root": str(levit_root), "script_git": cmp.git_describe(REPO),
        "argv": sys.argv, "dump": str(args.dump), "images_dir": str(args.images), "seed": args.seed,
        "metric": "rel = max_j|y_j - t_j| / max(1, max_j|t_j|) against PyTorch f32 per image; top-5 = same "
                  "classes in the same order",
        "tolerance": TOLERANCE, "kernels": kernels, "runtime_s": None, "complete": False,
    }
    variants: list[dict] = []
    doc = {"meta": meta, "variants": variants}

    def save():  # after every variant, so an interrupted run keeps what it measured
        meta["runtime_s"] = time.time() - t_start
        tmp = args.out.with_name(args.out.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        os.replace(tmp, args.out)

    for n in names:
        log(f"{n}:")
        variants.append(measure_variant(n, args, levit_bin, kernels, golden))
        save()
    meta["complete"] = True
    save()

    n_img = len(variants[0]["images"]) if variants else 0
    print(f"{meta['cpu']}, {meta['date']}, levit {meta['levit_git'] or levit_root}, "
          f"openvino {meta['versions']['openvino']}, onnxruntime {meta['versions']['onnxruntime']}, "
          f"torch {meta['versions']['torch']}; {n_img} images per variant "
          f"({len(golden)} golden: {', '.join(GOLDEN_INPUTS)}; the rest photos from {args.images.name}/, each with {args.crops} random crops)")
    print()
    print(report(variants, args.engines, args.markdown))
    print()
    notes = ["rel = max_j|y_j - t_j| / max(1, max_j|t_j|) against PyTorch f32, median and max over the images; "
             "max rel golden: over the golden inputs only; max rel cond.: over the images on which PyTorch f32 is "
             f"within {MAX_F32_VS_F64_REL:.0e} of f64 (the torch f32 row: PyTorch f32 against PyTorch f64); "
             "top-1 / top-5: images whose top-1 class / top-5 classes (in order) equal PyTorch f32's.",
             f"contract: the golden tests' bound (tests/support/lib.rs: f32 {TOLERANCE['f32']:.0e}, bf16 "
             f"{TOLERANCE['bf16']:.0e}) on the golden inputs. bf16 rounding may reorder classes closer than its "
             "error, so top-5 is reported, not required."]
    ill: dict[str, list[str]] = {}
    for v in variants:
        for n in v["ill_conditioned"]:
            ill.setdefault(n, []).append(v["name"].removeprefix("levit_"))
    if ill:
        notes.append(f"ill-conditioned (PyTorch f32 vs f64 > {MAX_F32_VS_F64_REL:.0e}): "
                     + ", ".join(f"{n} ({', '.join(vs)})" for n, vs in sorted(ill.items())) + ".")
    prec = sorted({str(v["engines"]["ov-bf16"].get("info", {}).get("precision")) for v in variants
                   if "ov-bf16" in v["engines"]})
    if prec:
        notes.append(f"OV bf16 = OpenVINO's default INFERENCE_PRECISION_HINT, which resolved to: {', '.join(prec)}.")
    print("\n".join(("- " if args.markdown else "") + s for s in notes))
    log(f"wrote {args.out} ({time.time() - t_start:.0f}s)")
    # exit 1 if a levit row breaks its contract
    broken = [f"{v['name']} {v['engines'][e]['label']}" for v in variants for e in args.engines
              if e.startswith("levit") and (v["engines"][e].get("error") or
                                            v["engines"][e].get("within_contract") is False)]
    if broken:
        log("outside the contract (golden inputs): " + ", ".join(broken))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
