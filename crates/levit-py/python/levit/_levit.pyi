"""Type stubs of the native module `levit._levit` (re-exported by `levit`)."""

import os
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt

IMAGENET_CLASSES: tuple[str, ...]
IMAGENET_SYNSETS: tuple[str, ...]
MAX_THREADS: int
SUPPORTED_ISAS: tuple[str, ...]

class FormatError(ValueError):
    """A weight file that is damaged, truncated, or not a levit-rs `.lvt` file."""

# One ranked class, what `levit classify --json` prints per class ("class" is a
# keyword, hence the functional form).
Prediction = TypedDict(
    "Prediction",
    {"class": int, "label": str, "synset": str | None, "probability": float, "logit": float},
)

class ModelInfo(TypedDict):
    path: str
    variant: str
    classes: int
    img_size: int
    in_chans: int
    macs: int
    isa: str
    precision: str
    file_size: int
    threads: int
    batch: int
    engine_bytes: int

class Model:
    """A LeViT model loaded from a `.lvt` file; call it on normalized float32 images.

    `threads` is the intra-op threads of each engine (1: the calling thread only). `isa`
    forces a SIMD path (`portable`, `avx2`, `avx512`, `avx512bf16`, `amx`; default: the
    best this CPU has, or `LEVIT_ISA`). `mmap=False` reads the file into memory instead
    of mapping it. `verify=True` checks every tensor's CRC-32 and finiteness at load.
    `precision="bf16"` runs the GEMMs in bfloat16 (`"f32"`: the file's own). `batch` is
    the images one engine runs at once: `[N, 3, H, W]` calls then read each weight once
    per chunk of up to `batch` images (same logits bit for bit, a larger arena).

    One Model is shared by any number of Python threads: each call in flight runs on its
    own engine with the GIL released.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        threads: int = 1,
        isa: str | None = None,
        mmap: bool = True,
        verify: bool = False,
        precision: str | None = None,
        batch: int = 1,
    ) -> None: ...
    def __call__(self, x: npt.NDArray[np.floating[Any]], /) -> npt.NDArray[np.float32]:
        """Same as `infer`."""
    def infer(self, x: npt.NDArray[np.floating[Any]], /) -> npt.NDArray[np.float32]:
        """Logits `[N, classes]` of `[3, H, W]` or `[N, 3, H, W]` normalized images.

        C-contiguous float32 is read in place; other floating arrays are converted once;
        other dtypes and shapes raise ValueError, non-arrays TypeError."""
    def preprocess(self, path: str | os.PathLike[str], /) -> npt.NDArray[np.float32]:
        """timm's eval tensor `[3, S, S]` of an image file at this model's input size."""
    def classify(self, paths: list[str | os.PathLike[str]], /, top: int = 5) -> list[dict[str, Any]]:
        """One `{"path", "top": [Prediction, ...]}` dict per image file."""
    def verify(self) -> None:
        """Checks every tensor's CRC-32 and finiteness (FormatError if one is wrong)."""
    @property
    def info(self) -> ModelInfo: ...
    @property
    def num_classes(self) -> int: ...
    @property
    def input_shape(self) -> tuple[int, int, int]: ...
    @property
    def threads(self) -> int: ...
    @property
    def batch(self) -> int: ...
    def _last_input_address(self) -> int: ...
    def _engines_made(self) -> int: ...

def top_k(logits: npt.NDArray[np.float32], k: int = 5) -> list[Any]:
    """The `k` best classes of `[classes]` logits (list of Prediction) or of
    `[N, classes]` logits (a list of such lists)."""

def _preprocess_file(path: str, img_size: int = 224, crop_pct: float | None = None) -> npt.NDArray[np.float32]: ...
def _preprocess_files(
    paths: list[str], img_size: int = 224, crop_pct: float | None = None, threads: int = 1
) -> npt.NDArray[np.float32]: ...
def _preprocess_bytes(data: bytes, img_size: int = 224, crop_pct: float | None = None) -> npt.NDArray[np.float32]: ...
def _preprocess_rgb(
    pixels: bytes, width: int, height: int, img_size: int = 224, crop_pct: float | None = None
) -> npt.NDArray[np.float32]: ...
