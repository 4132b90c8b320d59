"""BatchNorm statistics from natural images, and how stable each layer's range is.

The default trained-like weights (`randinit.make_trained_like_`) calibrate every
BatchNorm on N(0,1) and smooth synthetic images, then perturb the statistics. That
keeps f32 round-off small (what golden tests need), but the activation ranges swing
from image to image far more than in a trained network: the BatchNorms were never
fitted to the images the model is then run on. Quantization cares about exactly that
(a static int8 scale, or a per-tensor one, is set by the largest activations), so the
models used to measure int8 accuracy calibrate their BatchNorms the way training
leaves them: on the distribution of natural images they will see, here random crops
of real photos (`natural_images`), through the eval normalisation.

`activation_ranges` and `range_report` measure the effect: for every Linear / Conv
input, each image's max |x|, and per layer the fraction of the layer's range (the max
over all images) that a typical image uses.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# timm's LeViT eval normalisation (IMAGENET_DEFAULT_MEAN / STD).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def photo_paths(image_dir: str | Path) -> list[Path]:
    """The image files of a folder, sorted (raises if there are none)."""
    from .errors import LevitWeightsError

    d = Path(image_dir)
    if not d.is_dir():
        raise LevitWeightsError(f"--bn-images {image_dir}: not a directory")
    paths = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise LevitWeightsError(f"--bn-images {image_dir}: no {'/'.join(IMAGE_SUFFIXES)} files")
    return paths


def natural_images(image_dir: str | Path, n: int, seed: int, img_size: int = 224) -> "torch.Tensor":  # noqa: F821
    """`n` random crops of the photos in `image_dir` as a normalised [n, 3, S, S] batch.

    Each crop: a photo (in turn), a box of 20-100 % of its area with aspect 3/4..4/3
    at a random place (timm's RandomResizedCrop ranges), a horizontal flip half the
    time, a bicubic resize to `img_size`, then the eval normalisation. Seeded: the
    same arguments give the same batch.
    """
    import torch
    from PIL import Image

    rng = random.Random(seed)
    photos = []
    for p in photo_paths(image_dir):
        with Image.open(p) as im:
            photos.append(im.convert("RGB"))
    mean = np.array(MEAN, dtype=np.float32)[:, None, None]
    std = np.array(STD, dtype=np.float32)[:, None, None]
    out = np.empty((n, 3, img_size, img_size), dtype=np.float32)
    for i in range(n):
        im = photos[i % len(photos)]
        w, h = im.size
        for _ in range(10):
            area = w * h * rng.uniform(0.2, 1.0)
            ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
            cw, ch = int(round((area * ratio) ** 0.5)), int(round((area / ratio) ** 0.5))
            if 0 < cw <= w and 0 < ch <= h:
                break
        else:
            cw, ch = w, h
        x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
        crop = im.crop((x0, y0, x0 + cw, y0 + ch)).resize((img_size, img_size), Image.BICUBIC)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        a = np.asarray(crop, dtype=np.float32).transpose(2, 0, 1) / 255.0
        out[i] = (a - mean) / std
    return torch.from_numpy(out)


def calibrate_bn_on_(model, images, batch_size: int = 16) -> None:
    """Running stats = the cumulative batch statistics (momentum=None) of train-mode
    forwards over `images` in batches: the data's own statistics, as a long training
    run's moving averages approach them."""
    import torch
    from torch import nn

    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            model(images[i:i + batch_size])
    for bn in bns:
        bn.momentum = 0.1
    model.train()
    model.eval()  # timm caches the gathered attention bias at eval: rebuild it


def activation_ranges(model, images, batch_size: int = 16) -> dict[str, np.ndarray]:
    """For every Linear / Conv2d, each image's max |input| (eval mode): name -> [n]."""
    import torch
    from torch import nn

    out: dict[str, list] = {}
    hooks = []

    def hook(name):
        def f(mod, inp):
            x = inp[0].detach()
            out.setdefault(name, []).append(x.abs().reshape(x.shape[0], -1).amax(dim=1).double().numpy())
        return f

    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Linear, nn.Conv2d)):
            hooks.append(mod.register_forward_pre_hook(hook(name)))
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, len(images), batch_size):
                model(images[i:i + batch_size])
    finally:
        for h in hooks:
            h.remove()
    return {k: np.concatenate(v) for k, v in out.items()}


def _stage(name: str) -> str:
    if name.startswith("stem"):
        return "stem"
    if name.startswith("stages."):
        return "stage" + name.split(".")[1]
    return "head"


def range_report(ranges: dict[str, np.ndarray]) -> dict:
    """Per stage (stem, stage0.., head): over its layers, the median and the smallest
    `median_i(max|x_i|) / max_i(max|x_i|)`, the fraction of a layer's range (the
    largest activation over all the images) a typical image uses; and the median
    `max_i / min_i` spread of the per-image ranges."""
    per: dict[str, list] = {}
    for name, r in ranges.items():
        r = np.asarray(r, dtype=np.float64)
        top = float(r.max())
        used = float(np.median(r)) / top if top > 0 else 1.0
        spread = top / float(r.min()) if r.min() > 0 else float("inf")
        per.setdefault(_stage(name), []).append((used, spread))
    report = {}
    for stage, v in per.items():
        used = np.array([u for u, _ in v])
        spread = np.array([s for _, s in v])
        report[stage] = {"layers": len(v), "median_used": float(np.median(used)),
                         "min_used": float(used.min()), "median_spread": float(np.median(spread))}
    return report


def format_report(report: dict) -> str:
    return ", ".join(f"{s} {r['median_used'] * 100:.0f}% (min {r['min_used'] * 100:.0f}%, "
                     f"spread {r['median_spread']:.1f}x)" for s, r in report.items())
