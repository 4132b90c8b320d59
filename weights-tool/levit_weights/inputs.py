"""The shared golden inputs: deterministic numpy arrays from the seed.

Each stresses something different: `randn` is the plain case, `smooth` looks like a
normalised natural image (what the network sees in practice), `large` pushes big
magnitudes through hardswish/softmax, `batch4` checks that batch rows stay independent.
"""

from __future__ import annotations

import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float64)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float64)
SIZE = 224


def smooth_image(rng: np.random.Generator, size: int = SIZE, edges: bool = False, chans: int = 3) -> np.ndarray:
    """A [3,H,W] image in [0,1]: colour gradients plus soft blobs (optionally a few hard edges)."""
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    img = np.empty((chans, size, size))
    for c in range(chans):
        a, b, k = rng.uniform(-1, 1, size=3)
        ch = 0.5 + 0.25 * (a * x + b * y) + 0.1 * np.sin(2 * np.pi * (k * x + rng.uniform(0.5, 2) * y))
        for _ in range(6):
            cx, cy = rng.uniform(0, 1, size=2)
            r = rng.uniform(0.05, 0.25)
            ch += rng.uniform(-0.35, 0.35) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
        if edges:
            for _ in range(3):
                x0, x1 = np.sort(rng.uniform(0, 1, size=2))
                y0, y1 = np.sort(rng.uniform(0, 1, size=2))
                ch += rng.uniform(-0.3, 0.3) * ((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1))
        img[c] = ch
    img = np.clip(img, 0.0, 1.0)
    return normalize(img)


def normalize(img: np.ndarray) -> np.ndarray:
    """ImageNet normalisation of a [C,H,W] image in [0,1] (channels past 3 reuse channel 2's stats)."""
    c = img.shape[0]
    mean = np.resize(IMAGENET_MEAN, c) if c != 3 else IMAGENET_MEAN
    std = np.resize(IMAGENET_STD, c) if c != 3 else IMAGENET_STD
    return (img - mean[:, None, None]) / std[:, None, None]


def texture_image(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A [3,H,W] image in [0,1] with mid/high-frequency stripes and checks (fabric-like)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    img = np.empty((3, size, size))
    for c in range(3):
        ch = np.full((size, size), 0.5)
        for _ in range(4):
            fx, fy = rng.uniform(-0.25, 0.25, size=2)
            ch += rng.uniform(0.05, 0.15) * np.sin(2 * np.pi * (fx * x + fy * y) + rng.uniform(0, 2 * np.pi))
        ch += 0.1 * ((x // 8 + y // 8) % 2 - 0.5)
        img[c] = ch
    return normalize(np.clip(img, 0.0, 1.0))


def make_inputs(seed: int) -> dict[str, np.ndarray]:
    """name -> float32 C-order [N,3,224,224]."""
    rng = np.random.default_rng([seed, 0x1E5])
    shape = (3, SIZE, SIZE)
    out = {
        "randn": rng.standard_normal(shape)[None],
        "smooth": smooth_image(rng)[None],
        "large": (rng.standard_normal(shape) * 25.0)[None],
        "batch4": np.stack([
            smooth_image(rng, edges=True),
            rng.standard_normal(shape),
            smooth_image(rng),
            texture_image(rng),
        ]),
    }
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}
