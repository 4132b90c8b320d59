#!/usr/bin/env python3
"""End-to-end: `levit classify` over 1000 photos against the timm/PyTorch pipeline.

The photos: 1000 JPEGs of 500x375 to 1024x768 (landscape and portrait, quality 90), made
from the committed images in tests/fixtures/images (random crops, flips and sizes,
seeded) and cached outside the repository (default ~/.cache/levit-rs/e2e/photos-v1).

Both pipelines run on the same `--cores` CPUs (sched_setaffinity, inherited by every
thread and worker process), with the same weights (a trained-like checkpoint of
`levit-weights dump`, ~/.cache/levit-rs/peers/dump, and its `levit-weights convert`ed
.lvt):

- levit: `levit classify --threads CORES --batch 8 --stats --json` (decode threads
  feeding batched engines); wall time of the whole process, model load included.
- PyTorch: what a user would write: timm's eval transform
  (`timm.data.create_transform(**resolve_data_config(model=m))`, PIL decode), a
  `DataLoader(batch_size=8, num_workers=2)`, the eager model under
  `torch.inference_mode()` with `torch.set_num_threads(CORES)`, softmax top-5 per image;
  wall time from building the model to the last batch.

Both produce top-5 per image; the script also reports how often their top-1 agree (the
preprocessing is the same bit for bit and both run f32, so it should be all of them).
The best of `--rounds` interleaved rounds counts.

    python benches/classify_e2e.py                              # 128S, 2 cores
    python benches/classify_e2e.py --variant 384 --rounds 3 --json-out e2e.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PHOTOS = 1000
SIZES = ((500, 375), (1024, 768))  # smallest and largest, landscape (portrait swaps them)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_photos(out: Path, count: int, seed: int) -> list[Path]:
    """`count` JPEGs from the committed images, cached in `out` (rebuilt if incomplete)."""
    done = out / "complete.json"
    if done.exists() and json.loads(done.read_text()).get("count") == count:
        return sorted(out.glob("*.jpg"))
    import numpy as np
    from PIL import Image, ImageOps

    out.mkdir(parents=True, exist_ok=True)
    sources = []
    for p in sorted((REPO / "tests" / "fixtures" / "images").iterdir()):
        try:
            with Image.open(p) as im:
                im = im.convert("RGB")
                if min(im.size) >= 100:
                    sources.append(im.copy())
        except OSError:
            continue
    rng = np.random.default_rng(seed)
    for k in range(count):
        src = sources[k % len(sources)]
        w = int(rng.integers(SIZES[0][0], SIZES[1][0] + 1))
        h = w * 3 // 4
        if rng.random() < 0.3:
            w, h = h, w
        # a random crop of the source at the photo's aspect, then resized to the photo's size
        sw, sh = src.size
        scale = rng.uniform(0.6, 1.0)
        cw = max(16, int(min(sw, sh * w / h) * scale))
        ch = max(16, int(cw * h / w))
        x0 = int(rng.integers(0, max(1, sw - cw + 1)))
        y0 = int(rng.integers(0, max(1, sh - ch + 1)))
        im = src.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.BICUBIC)
        if rng.random() < 0.5:
            im = ImageOps.mirror(im)
        im.save(out / f"photo_{k:04d}.jpg", quality=90)
    done.write_text(json.dumps({"count": count, "seed": seed}))
    return sorted(out.glob("*.jpg"))


def cpus_for(cores: int) -> list[int]:
    have = sorted(os.sched_getaffinity(0))
    if len(have) < cores:
        sys.exit(f"classify_e2e.py: {cores} cores asked for, {len(have)} available")
    return have[:cores]


def run_levit(levit: Path, lvt: Path, photos: Path, cores: int, batch: int) -> dict:
    cpus = cpus_for(cores)
    cmd = [str(levit), "classify", "--model", str(lvt), "--threads", str(cores), "--batch", str(batch),
           "--stats", "--json", "--no-progress", "--top", "5", str(photos)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=lambda: os.sched_setaffinity(0, cpus))
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"levit classify failed ({r.returncode}): {r.stderr.strip()}")
    top1 = {}
    for line in r.stdout.splitlines():
        o = json.loads(line)
        top1[Path(o["path"]).name] = o["top"][0]["class"]
    stats = next((ln for ln in r.stderr.splitlines() if "stats:" in ln), "")
    summary = next((ln for ln in r.stderr.splitlines() if "images/s" in ln and "stats:" not in ln), "")

    def num(pattern: str) -> float | None:
        m = re.search(pattern, stats)
        return float(m.group(1)) if m else None

    return {"wall_s": wall, "images_per_s": len(top1) / wall, "top1": top1, "summary": summary, "stats": stats,
            "engine_ms": num(r"engine ([0-9.]+) ms/image"), "decode_ms": num(r"decode\+preprocess ([0-9.]+) ms"),
            "ideal_images_per_s": num(r"= ([0-9.]+) images/s"),
            "achieved_images_per_s": num(r"achieved ([0-9.]+) images/s")}


def torch_child(spec: dict) -> None:
    """The PyTorch pipeline (run in a child process pinned to the cores); prints JSON."""
    t0 = time.perf_counter()
    import timm
    import torch
    from PIL import Image
    from safetensors.torch import load_file
    from timm.data import create_transform, resolve_data_config

    torch.set_num_threads(spec["cores"])
    model = timm.create_model(spec["timm_name"], pretrained=False)
    model.load_state_dict(load_file(spec["checkpoint"]), strict=True)
    model.eval()
    transform = create_transform(**resolve_data_config({}, model=model))
    paths = spec["paths"]

    class Photos(torch.utils.data.Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            with Image.open(paths[i]) as im:
                return transform(im.convert("RGB")), i

    loader = torch.utils.data.DataLoader(Photos(), batch_size=spec["batch"], num_workers=spec["workers"])
    top1 = {}
    with torch.inference_mode():
        for x, idx in loader:
            p = model(x).softmax(-1)
            values, classes = p.topk(5, dim=-1)
            for i, c in zip(idx.tolist(), classes[:, 0].tolist()):
                top1[Path(paths[i]).name] = c
    wall = time.perf_counter() - t0
    print(json.dumps({"wall_s": wall, "images_per_s": len(top1) / wall, "top1": top1,
                      "torch": torch.__version__, "timm": timm.__version__}))


def run_torch(python: str, spec: dict) -> dict:
    cpus = cpus_for(spec["cores"])
    r = subprocess.run([python, __file__, "--torch-child", json.dumps(spec)], capture_output=True, text=True,
                       preexec_fn=lambda: os.sched_setaffinity(0, cpus))
    if r.returncode != 0:
        sys.exit(f"the PyTorch pipeline failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    cache = Path(os.environ.get("LEVIT_E2E_CACHE", Path.home() / ".cache" / "levit-rs" / "e2e"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="128s", help="128s, 128, 192, 256 or 384 (default 128s)")
    ap.add_argument("--cores", type=int, default=2, help="CPUs both pipelines run on (default 2)")
    ap.add_argument("--batch", type=int, default=8, help="levit --batch and the DataLoader batch (default 8)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the best counts (default 2)")
    ap.add_argument("--photos", type=Path, default=cache / "photos-v1", help="where the JPEGs are cached")
    ap.add_argument("--count", type=int, default=PHOTOS, help=f"photos (default {PHOTOS}; fewer for a quick look, "
                                                               "in another --photos folder)")
    ap.add_argument("--dump", type=Path, default=Path.home() / ".cache" / "levit-rs" / "peers" / "dump",
                    help="levit-weights dump with checkpoint_timm.safetensors per variant")
    ap.add_argument("--levit", type=Path, help="the levit binary (default: target/release/levit, built first)")
    ap.add_argument("--no-build", action="store_true", help="skip cargo build --release -p levit-cli")
    ap.add_argument("--json-out", type=Path, help="write the results here")
    ap.add_argument("--torch-child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.torch_child:
        torch_child(json.loads(args.torch_child))
        return 0

    name = args.variant if args.variant.startswith("levit_") else f"levit_{args.variant}"
    ckpt = args.dump / name / "checkpoint_timm.safetensors"
    if not ckpt.exists():
        sys.exit(f"classify_e2e.py: no {ckpt} (run `levit-weights dump --out {args.dump} --variants {name}`)")
    lvt = args.dump / name / "model_timm.lvt"
    if not lvt.exists():
        lvt = cache / f"{name}.lvt"
        subprocess.run([sys.executable, "-m", "levit_weights", "convert", str(ckpt), "-o", str(lvt)], check=True)
    levit = args.levit or REPO / "target" / "release" / "levit"
    if not args.levit and not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "levit-cli"], cwd=REPO, check=True)

    paths = make_photos(args.photos, args.count, seed=0)
    log(f"{len(paths)} photos in {args.photos}; {name}; {args.cores} cores")
    spec = {"cores": args.cores, "batch": args.batch, "workers": args.workers, "timm_name": name,
            "checkpoint": str(ckpt), "paths": [str(p) for p in paths]}
    best_levit, best_torch = None, None
    for rnd in range(args.rounds):
        lv = run_levit(levit, lvt, args.photos, args.cores, args.batch)
        log(f"  round {rnd + 1}: levit {lv['images_per_s']:.1f} images/s ({lv['wall_s']:.2f} s); {lv['stats']}")
        tc = run_torch(sys.executable, spec)
        log(f"  round {rnd + 1}: torch {tc['images_per_s']:.1f} images/s ({tc['wall_s']:.2f} s)")
        if best_levit is None or lv["images_per_s"] > best_levit["images_per_s"]:
            best_levit = lv
        if best_torch is None or tc["images_per_s"] > best_torch["images_per_s"]:
            best_torch = tc
    agree = sum(best_levit["top1"].get(k) == v for k, v in best_torch["top1"].items()) / max(1, len(best_torch["top1"]))
    ratio = best_levit["images_per_s"] / best_torch["images_per_s"]
    busy = (best_levit["achieved_images_per_s"] or 0) / (best_levit["ideal_images_per_s"] or float("inf"))
    print(f"{len(paths)} JPEGs {SIZES[0][0]}x{SIZES[0][1]}..{SIZES[1][0]}x{SIZES[1][1]}, {name}, {args.cores} cores, "
          f"best of {args.rounds} rounds")
    print()
    print("| pipeline | images/s | wall s |")
    print("|---|---:|---:|")
    print(f"| levit classify --batch {args.batch} | {best_levit['images_per_s']:.1f} | {best_levit['wall_s']:.2f} |")
    print(f"| timm transform + DataLoader({args.workers} workers) + eager | {best_torch['images_per_s']:.1f} | "
          f"{best_torch['wall_s']:.2f} |")
    print()
    print(f"- levit / PyTorch: {ratio:.2f}x (target >= 3)")
    print(f"- levit --stats: engine {best_levit['engine_ms']} ms/image at batch {args.batch}, decode+preprocess "
          f"{best_levit['decode_ms']} ms/image; cores/(engine+decode) = {best_levit['ideal_images_per_s']} images/s, "
          f"achieved {best_levit['achieved_images_per_s']} ({100 * busy:.0f} %, target >= 90 %)")
    print(f"- top-1 agreement levit vs PyTorch: {100 * agree:.1f} %")
    if args.json_out:
        doc = {"variant": name, "cores": args.cores, "photos": len(paths), "levit": {k: v for k, v in best_levit.items()
                                                                                 if k != "top1"},
               "torch": {k: v for k, v in best_torch.items() if k != "top1"}, "ratio": ratio, "top1_agree": agree}
        args.json_out.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
