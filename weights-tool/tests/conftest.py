"""Shared fixtures: small seeded timm models and their checkpoints in every layout."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
import torch

from levit_weights.dump import build_model
from levit_weights.randinit import make_trained_like_, randomize_, reset_bias_cache_


@pytest.fixture(scope="session")
def tiny_models():
    """name -> eval timm model with trained-like random weights (tiny configs only: fast)."""
    out = {}
    for i, name in enumerate(("tiny_hswish", "tiny_silu")):
        m = build_model(name)
        make_trained_like_(m, torch.Generator().manual_seed(100 + i))
        reset_bias_cache_(m)
        out[name] = m
    return out


def state_dict_np(model) -> dict:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def random_state_dict(name: str, seed: int = 0) -> dict:
    """timm.create_model(name) with random (non-identity) weights and BN stats, as numpy."""
    m = build_model(name)
    g = torch.Generator().manual_seed(seed)
    randomize_(m, g)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                mod.running_mean.normal_(0, 0.5, generator=g)
                mod.running_var.uniform_(0.5, 2.0, generator=g)
    return m


def save_timm(model, path):
    from safetensors.torch import save_file

    save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, str(path))
    return str(path)


def save_fb(model, cfg, path):
    from levit_weights.layouts import timm_to_fb

    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save({"model": timm_to_fb(sd, cfg)}, str(path))
    return str(path)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def rewrite_lvt(src, dst, edit_header, edit_data=None, fix_checksums=False):
    """Copies the .lvt `src` to `dst` after `edit_header(header)` (and
    `edit_data(header, data)` on the tensor bytes), the header re-padded to 64 bytes;
    with `fix_checksums` every tensor's CRC is recomputed from the (edited) data."""
    raw = open(src, "rb").read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen])
    data = bytearray(raw[8 + hlen:])
    edit_header(header)
    if edit_data:
        edit_data(header, data)
    if fix_checksums:
        meta = header["__metadata__"]
        sums = json.loads(meta["checksums"])
        for name, info in header.items():
            if name != "__metadata__":
                b, e = info["data_offsets"]
                sums[name] = f"{zlib.crc32(bytes(data[b:e])) & 0xFFFFFFFF:08x}"
        meta["checksums"] = json.dumps(sums, separators=(",", ":"))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((-(8 + len(text))) % 64)
    open(dst, "wb").write(struct.pack("<Q", len(text)) + text + bytes(data))
