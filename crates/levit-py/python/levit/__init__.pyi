"""Type stubs of the package `levit` (see `_levit.pyi` for Model)."""

import os
from typing import Any, Iterable

import numpy as np
import numpy.typing as npt

from ._levit import (
    IMAGENET_CLASSES as IMAGENET_CLASSES,
    IMAGENET_SYNSETS as IMAGENET_SYNSETS,
    MAX_THREADS as MAX_THREADS,
    SUPPORTED_ISAS as SUPPORTED_ISAS,
    FormatError as FormatError,
    Model as Model,
    top_k as top_k,
)
from .convert import convert as convert

IMAGE_EXTENSIONS: tuple[str, ...]
_Path = str | os.PathLike[str]

def preprocess(image: Any, *, img_size: int = 224, crop_pct: float | None = None) -> npt.NDArray[np.float32]: ...
def preprocess_batch(
    paths: Iterable[_Path], *, img_size: int = 224, crop_pct: float | None = None, threads: int = 1
) -> npt.NDArray[np.float32]: ...
def image_files(paths: _Path | Iterable[_Path]) -> list[str]: ...
def classify(paths: _Path | Iterable[_Path], model: Model | _Path, *, top: int = 5) -> list[dict[str, Any]]: ...
__version__: str
