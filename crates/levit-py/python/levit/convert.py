"""``levit.convert``: checkpoints to ``.lvt`` files without leaving Python.

The conversion is the repository's ``weights-tool`` (``pip install ./weights-tool``,
module ``levit_weights``): the same code as ``levit-weights convert``, with its error
messages unchanged. torch is imported here only, and only when converting a state dict
or a module.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any


def _weights_tool():
    try:
        from levit_weights.convert import convert_checkpoint
        from levit_weights.errors import LevitWeightsError
    except ImportError as e:
        raise ImportError(
            "levit.convert needs the converter of levit-rs: pip install ./weights-tool "
            f"(from the levit-rs repository) ({e})"
        ) from e
    return convert_checkpoint, LevitWeightsError


def convert(
    src: Any,
    out: str | os.PathLike,
    *,
    variant: str | None = None,
    act: str | None = None,
    precision: str = "f32",
) -> dict:
    """Convert a checkpoint to a levit-rs weight file at ``out``.

    ``src`` is a checkpoint path (timm ``.safetensors`` / ``.pth`` or a facebookresearch
    ``.pth``), a state dict (``{name: tensor}``, timm or facebookresearch names) or a timm
    ``Levit`` module (its ``state_dict()``). ``variant`` / ``act`` override the inferred
    config as ``levit-weights convert --variant/--act`` do; ``precision`` is ``"f32"``
    or ``"bf16"``. Returns a summary dict (``variant``, ``classes``, ``file_size``,
    ``warnings``, ``summary``). Errors of the converter (``LevitWeightsError``) are
    raised unchanged.
    """
    convert_checkpoint, _ = _weights_tool()
    out = os.fspath(out)
    if isinstance(src, (str, os.PathLike)):
        result = convert_checkpoint(os.fspath(src), out, variant=variant, act=act, precision=precision)
    else:
        import torch  # only a state dict or a module needs it

        state = src.state_dict() if isinstance(src, torch.nn.Module) else src
        if not isinstance(state, dict):
            raise TypeError(
                "levit.convert takes a checkpoint path, a state dict or a torch.nn.Module, "
                f"not {type(src).__name__}"
            )
        state = {k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in state.items()}
        with tempfile.TemporaryDirectory(prefix="levit-convert-") as tmp:
            path = os.path.join(tmp, "state_dict.pth")
            torch.save(state, path)
            result = convert_checkpoint(path, out, variant=variant, act=act, precision=precision)
    return {
        "variant": result.config.variant,
        "classes": result.config.num_classes,
        "layout": result.layout,
        "file_size": result.file_size,
        "precision": result.precision,
        "warnings": list(result.warnings),
        "summary": result.summary(),
    }
