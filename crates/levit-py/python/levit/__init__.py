"""levit: LeViT image classifiers on the CPU, from Python.

The engine is levit-rs (Rust, SIMD kernels, no allocation per inference); this package
gives it numpy in and out::

    import levit
    model = levit.Model("levit_128s.lvt")           # mapped, ready in milliseconds
    x = levit.preprocess("cat.jpg")                  # float32 [3, 224, 224], timm's eval transform
    logits = model(x)                                # float32 [1, 1000]
    for c in levit.top_k(logits[0], 5):
        print(f"{c['probability']:.3f} {c['label']}")

Convert a timm or facebookresearch checkpoint (or a timm module) with
``levit.convert`` (needs the repository's ``weights-tool`` and torch).

Errors are Python exceptions carrying the engine's message: ``ValueError`` for
shapes, dtypes and arguments, ``FileNotFoundError`` / ``OSError`` for files that
cannot be read, ``levit.FormatError`` (a ``ValueError``) for damaged or foreign
weight files, ``MemoryError`` when memory runs out.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Union

import numpy as np

from . import _levit
from ._levit import (
    IMAGENET_CLASSES,
    IMAGENET_SYNSETS,
    MAX_THREADS,
    SUPPORTED_ISAS,
    FormatError,
    Model,
    top_k,
)
from .convert import convert

try:
    from importlib.metadata import version as _version

    __version__ = _version("levit")
except Exception:  # noqa: BLE001 - running from a source tree without metadata
    __version__ = "0.0.0"

__all__ = [
    "Model",
    "FormatError",
    "preprocess",
    "preprocess_batch",
    "classify",
    "top_k",
    "image_files",
    "convert",
    "IMAGENET_CLASSES",
    "IMAGENET_SYNSETS",
    "IMAGE_EXTENSIONS",
    "MAX_THREADS",
    "SUPPORTED_ISAS",
]

#: Extensions picked up when a directory is classified (as ``levit classify`` does).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")

PathLike = Union[str, "os.PathLike[str]"]


def preprocess(image: Any, *, img_size: int = 224, crop_pct: float | None = None) -> np.ndarray:
    """timm's eval transform of one image: a normalized float32 ``[3, img_size, img_size]``.

    ``image`` is a path (``str`` / ``os.PathLike``), the encoded bytes of a JPEG, PNG or
    WebP file, a ``PIL.Image.Image``, or an 8-bit ``[H, W, 3]`` RGB numpy array. Files and
    bytes are decoded as PIL decodes them (no EXIF rotation) and the result equals
    timm's ``create_transform(**resolve_data_config({}, model=m))`` output bit for bit:
    resize the shorter side to ``floor(img_size / crop_pct)`` with Pillow's bicubic,
    center-crop, scale to [0, 1], normalize with the ImageNet mean and std.
    ``crop_pct`` defaults to timm's 0.9 (facebookresearch's LeViT used 0.875).
    """
    if isinstance(image, (str, os.PathLike)):
        return _levit._preprocess_file(os.fspath(image), img_size, crop_pct)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _levit._preprocess_bytes(bytes(image), img_size, crop_pct)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"an array image must be uint8 [H, W, 3] RGB, got {image.dtype} {list(image.shape)}"
            )
        h, w, _ = image.shape
        return _levit._preprocess_rgb(np.ascontiguousarray(image).tobytes(), w, h, img_size, crop_pct)
    try:
        from PIL import Image
    except ImportError:  # no PIL: the image cannot be a PIL image
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        # timm's loader does exactly this conversion before its transform.
        rgb = image.convert("RGB")
        return _levit._preprocess_rgb(rgb.tobytes(), rgb.width, rgb.height, img_size, crop_pct)
    raise TypeError(
        "preprocess takes a path, encoded image bytes, a PIL.Image or a uint8 [H, W, 3] "
        f"array, not {type(image).__name__}"
    )


def preprocess_batch(
    paths: Iterable[PathLike], *, img_size: int = 224, crop_pct: float | None = None, threads: int = 1
) -> np.ndarray:
    """The tensors of several image files as one float32 ``[N, 3, img_size, img_size]`` batch.

    Image ``i`` equals ``preprocess(paths[i], ...)`` bit for bit, but the whole batch is one
    call with the GIL released once, written straight into the returned array (no
    per-image call, no ``np.stack`` copy): what a Ray ``map_batches`` actor or a data
    loader wants before ``model(batch)``. ``threads`` > 1 decodes the files on that many
    threads (for a process that owns several cores; leave it at 1 when each core already
    runs a worker). The first file that cannot be read or decoded raises, naming its path.
    """
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise TypeError("preprocess_batch takes a list of paths; for one image use preprocess")
    return _levit._preprocess_files([os.fspath(p) for p in paths], img_size, crop_pct, threads)


def image_files(paths: PathLike | Iterable[PathLike]) -> list[str]:
    """The image files of ``paths`` as ``levit classify`` finds them: files as given,
    directories walked recursively (sorted; ``IMAGE_EXTENSIONS`` only)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[str] = []
    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for f in sorted(files):
                    if f.lower().endswith(IMAGE_EXTENSIONS):
                        out.append(os.path.join(root, f))
        else:
            out.append(p)
    return out


def classify(
    paths: PathLike | Iterable[PathLike], model: Model | PathLike, *, top: int = 5
) -> list[dict]:
    """Classify image files (a path, a list of paths, or directories, walked).

    ``model`` is a loaded ``levit.Model`` or the path of a ``.lvt`` file. Returns one dict
    per image, ``{"path": str, "top": [{"class", "label", "synset", "probability",
    "logit"}, ...]}``, best class first, the same rows ``levit classify --json`` prints.
    """
    if not isinstance(model, Model):
        model = Model(os.fspath(model))
    return model.classify(image_files(paths), top=top)
