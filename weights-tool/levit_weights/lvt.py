"""The .lvt container (docs/weight-format.md): writer, a strict reader, the tensor table.

Tensors are numpy arrays whose numpy dtype says the stored dtype: little-endian f32
(`F32`), uint16 bf16 bit patterns (`BF16`), int8 (`I8`) or little-endian int32 (`I32`). A file is format version 1
when every tensor is F32 (byte for byte what this tool wrote before version 2) and
version 2 otherwise.

The writer lays the bytes out by hand instead of calling safetensors' serializer,
because the format's promises (64-byte aligned data start via header space padding,
CRCs, metadata order) must hold exactly; `safe_open` is then used as an independent
check that the result is still a valid safetensors file.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import zlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .config import LevitConfig, img_size_problem
from .errors import LevitWeightsError
from .pack import F32_CONV_MAX_CIN, PRECISIONS, bf16_packed_shape, int8_packed_shape, keeps, pad16

FORMAT = "levit-rs"
FORMAT_VERSION = "2"  # the newest; all-F32 files are still written as version 1
SUPPORTED_VERSIONS = ("1", "2")
ALIGN = 64

# safetensors dtype string <-> the numpy dtype holding its elements
DTYPES = {"F32": np.dtype("<f4"), "BF16": np.dtype("<u2"), "I8": np.dtype("i1"), "I32": np.dtype("<i4")}
# dtypes each format version may store
VERSION_DTYPES = {"1": ("F32",), "2": ("F32", "BF16", "I8", "I32")}


def dtype_name(arr: np.ndarray) -> str:
    """The safetensors dtype string of an array (F32, BF16 for uint16 bit patterns, I8)."""
    for name, dt in DTYPES.items():
        if arr.dtype == dt:
            return name
    raise AssertionError(f"no .lvt dtype for numpy {arr.dtype}")


def format_version_of(tensors) -> str:
    return "1" if all(dtype_name(a) == "F32" for a in tensors.values()) else "2"


def is_gemm_weight(name: str) -> bool:
    """The packed GEMM/conv weights (stem convs, linears, head): stored in the precision."""
    return name.endswith(".weight")


def crc32_hex(data: bytes) -> str:
    return f"{zlib.crc32(data) & 0xFFFFFFFF:08x}"


def _P(k: int, n: int) -> tuple[int, int, int]:
    return (pad16(n) // 16, k, 16)


def _B(n: int) -> tuple[int]:
    return (pad16(n),)


def expected_shapes(cfg: LevitConfig, precision: str = "f32") -> "OrderedDict[str, tuple[int, ...]]":
    """Every tensor of a .lvt for cfg, in the documented order, with its padded shape
    (the GEMM weights in the layout of `precision`: f32 or bf16 panels)."""
    return OrderedDict((k, shape) for k, (_, shape) in expected_table(cfg, precision).items())


def int8_companion_names(weight: str) -> tuple[str, str]:
    """The per-column scale (F32) and compensation (I32) tensors beside an int8 weight."""
    return f"{weight}_scale", f"{weight}_comp"


def int8_layer_dtype(cfg: LevitConfig, name: str, keep_float=()) -> str:
    """How an int8 file stores the GEMM weight `name`: BF16 where --keep-float keeps its
    layer, F32 for a stem conv over at most F32_CONV_MAX_CIN channels (it runs in f32),
    else I8."""
    layer = name[: -len(".weight")]
    if keeps(keep_float, layer):
        return "BF16"
    if layer.startswith("stem.") and cfg.stem_channels()[int(layer[5:])] <= F32_CONV_MAX_CIN:
        return "F32"
    return "I8"


def expected_table(cfg: LevitConfig, precision: str = "f32",
                   keep_float=()) -> "OrderedDict[str, tuple[str, tuple[int, ...]]]":
    """Every tensor of a .lvt for cfg in the documented order: name -> (dtype, shape).
    In bf16 the GEMM weights are BF16; in int8 they are I8 (each followed by its F32
    `_scale` and I32 `_comp`), except the layers `keep_float` keeps (BF16) and the small
    stem convs (F32); biases and attention-bias tables stay F32."""
    if precision not in PRECISIONS:
        raise AssertionError(f"unknown precision {precision!r}")
    out: "OrderedDict[str, tuple[str, tuple[int, ...]]]" = OrderedDict()
    for name, entry in _table(cfg).items():
        if entry[0] == "gemm":
            k, n = entry[1], entry[2]
            dtype = {"f32": "F32", "bf16": "BF16"}.get(precision) or int8_layer_dtype(cfg, name, keep_float)
            if dtype == "I8":
                out[name] = ("I8", int8_packed_shape(k, n))
                scale, comp = int8_companion_names(name)
                out[scale] = ("F32", _B(n))
                out[comp] = ("I32", _B(n))
            else:
                out[name] = ("BF16", bf16_packed_shape(k, n)) if dtype == "BF16" else ("F32", _P(k, n))
        else:
            out[name] = ("F32", entry[1])
    return out


def gemm_dims(cfg: LevitConfig) -> "OrderedDict[str, tuple[int, int]]":
    """Every GEMM weight's (K inputs, N outputs), in the documented order."""
    return OrderedDict((k, (e[1], e[2])) for k, e in _table(cfg).items() if e[0] == "gemm")


def _table(cfg: LevitConfig) -> "OrderedDict[str, tuple]":
    """name -> ("gemm", K, N) for packed weights, ("f32", shape) for the rest."""
    out: "OrderedDict[str, tuple]" = OrderedDict()

    def lin(name, k, n):
        out[f"{name}.weight"] = ("gemm", k, n)
        out[f"{name}.bias"] = ("f32", _B(n))

    ch = cfg.stem_channels()
    for i in range(4):
        lin(f"stem.{i}", 9 * ch[i], ch[i + 1])
    res = cfg.resolutions()
    D = cfg.key_dim
    for s in range(cfg.num_stages):
        E = cfg.embed_dim[s]
        if s > 0:
            p = f"stages.{s}.downsample"
            Ein, Hd, Dvd = cfg.embed_dim[s - 1], cfg.down_heads(s), cfg.down_val_dim()
            lin(f"{p}.attn.kv", Ein, Hd * (D + Dvd))
            lin(f"{p}.attn.q", Ein, Hd * D)
            lin(f"{p}.attn.proj", Hd * Dvd, E)
            out[f"{p}.attn.attention_biases"] = ("f32", (Hd, pad16(res[s - 1] ** 2)))
            hid = cfg.down_mlp_hidden(s)
            lin(f"{p}.mlp.fc1", E, hid)
            lin(f"{p}.mlp.fc2", hid, E)
        H, Dv, hid = cfg.num_heads[s], cfg.val_dim(s), cfg.mlp_hidden(s)
        for j in range(cfg.depth[s]):
            p = f"stages.{s}.blocks.{j}"
            lin(f"{p}.attn.qkv", E, H * (2 * D + Dv))
            lin(f"{p}.attn.proj", H * Dv, E)
            out[f"{p}.attn.attention_biases"] = ("f32", (H, pad16(res[s] ** 2)))
            lin(f"{p}.mlp.fc1", E, hid)
            lin(f"{p}.mlp.fc2", hid, E)
    lin("head", cfg.embed_dim[-1], cfg.num_classes)
    return out


def config_string(cfg: LevitConfig) -> str:
    """The exact `config` string (its CRC is stored, so it is produced in one place)."""
    return json.dumps(cfg.to_json_dict(), separators=(",", ":"))


def build_header(tensors: "OrderedDict[str, np.ndarray]", cfg: LevitConfig, source: str) -> bytes:
    """Header JSON padded with spaces so that 8 + len(header) is a multiple of 64."""
    cfg_str = config_string(cfg)
    meta = OrderedDict(
        format=FORMAT,
        format_version=format_version_of(tensors),
        config=cfg_str,
        config_crc32=crc32_hex(cfg_str.encode("utf-8")),
        checksums=json.dumps({k: crc32_hex(v.tobytes()) for k, v in tensors.items()},
                             separators=(",", ":")),
        source=source,
    )
    header: "OrderedDict[str, object]" = OrderedDict(__metadata__=meta)
    offset = 0
    for name, arr in tensors.items():
        header[name] = {"dtype": dtype_name(arr), "shape": list(arr.shape),
                        "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return raw + b" " * ((-(8 + len(raw))) % ALIGN)


def write_lvt(path: str, tensors: "OrderedDict[str, np.ndarray]", cfg: LevitConfig, source: str) -> int:
    """Write atomically (temp file + rename); returns the file size."""
    for name, arr in tensors.items():
        if arr.dtype not in DTYPES.values() or not arr.flags.c_contiguous:
            raise AssertionError(f"{name}: must be C-contiguous little-endian f32, uint16 (bf16), "
                                 f"int8 or int32, got {arr.dtype}")
        if arr.nbytes % ALIGN:
            raise AssertionError(f"{name}: {arr.nbytes} bytes is not a multiple of {ALIGN}")
    header = build_header(tensors, cfg, source)
    d = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".lvt-", dir=d)
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(header)))
            f.write(header)
            for arr in tensors.values():
                f.write(arr.tobytes())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
    except OSError as e:
        raise LevitWeightsError(f"cannot write {path}: {e}") from None
    return os.path.getsize(path)


@dataclass
class LvtFile:
    """A parsed and verified .lvt."""

    path: str
    config: LevitConfig
    config_json: dict
    metadata: dict
    tensors: "OrderedDict[str, np.ndarray]"  # F32 as f4, BF16 as uint16 bit patterns, I8 as i1, I32 as i4
    data_start: int
    offsets: dict  # name -> absolute file offset of the tensor data
    precision: str = "f32"  # of the GEMM weights: "f32", "bf16" or "int8"
    keep_float: tuple = ()  # int8 files: the layers stored in float (BF16) instead of I8

    @property
    def format_version(self) -> str:
        return self.metadata["format_version"]

    def dtypes(self) -> "OrderedDict[str, str]":
        """name -> stored dtype (F32, BF16, I8), in header order."""
        return OrderedDict((k, dtype_name(v)) for k, v in self.tensors.items())

    def data_bytes(self) -> bytes:
        """All tensor bytes in file order (for byte-identity checks between files)."""
        return b"".join(t.tobytes() for t in self.tensors.values())


def read_lvt(path: str) -> LvtFile:
    """Parse and check every promise of the format; raises LevitWeightsError on any violation."""
    try:
        with open(path, "rb") as f:
            buf = f.read()
    except OSError as e:
        raise LevitWeightsError(f"cannot read {path}: {e}") from None

    def bad(msg):
        return LevitWeightsError(f"{path}: not a valid .lvt file: {msg}")

    if len(buf) < 8:
        raise bad("shorter than 8 bytes")
    (hlen,) = struct.unpack("<Q", buf[:8])
    if 8 + hlen > len(buf):
        raise bad(f"header length {hlen} runs past the end of the file")
    data_start = 8 + hlen
    if data_start % ALIGN:
        raise bad(f"data section starts at {data_start}, not a multiple of {ALIGN}")
    try:
        header = json.loads(buf[8:data_start].decode("utf-8"), object_pairs_hook=OrderedDict)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(f"header is not UTF-8 JSON: {e}") from None
    meta = header.pop("__metadata__", None)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise bad(f"missing __metadata__.format == {FORMAT!r}")
    version = meta.get("format_version")
    if version not in SUPPORTED_VERSIONS:
        raise bad(f"format_version {version!r} is not one of the supported {list(SUPPORTED_VERSIONS)}")
    cfg_str = meta.get("config", "")
    if crc32_hex(cfg_str.encode("utf-8")) != meta.get("config_crc32"):
        raise bad("config_crc32 does not match config")
    cfg_json = json.loads(cfg_str)
    cfg = LevitConfig.from_json_dict(cfg_json)
    problem = img_size_problem(cfg.img_size)
    if problem:
        raise bad(f"unsupported config: img_size: {problem}")
    checksums = json.loads(meta.get("checksums", "{}"))

    names = list(header)
    for name in names:
        info = header[name]
        if not isinstance(info, dict) or info.get("dtype") not in DTYPES:
            raise bad(f"{name}: dtype {info.get('dtype') if isinstance(info, dict) else info!r} "
                      f"is not one of {list(DTYPES)}")
        if info["dtype"] not in VERSION_DTYPES[version]:
            raise bad(f"{name}: dtype {info['dtype']} is not allowed in format_version {version} "
                      f"(allowed: {list(VERSION_DTYPES[version])})")
    weight_dtypes = sorted({header[k]["dtype"] for k in names if is_gemm_weight(k)})
    keep_float: tuple = ()
    if "I8" in weight_dtypes:
        # int8: the layers stored BF16 are the ones kept in float
        precision = "int8"
        keep_float = tuple(k[: -len(".weight")] for k in names
                           if is_gemm_weight(k) and header[k]["dtype"] == "BF16")
    elif weight_dtypes == ["BF16"]:
        precision = "bf16"
    elif weight_dtypes in (["F32"], []):
        precision = "f32"
    else:
        raise bad(f"GEMM weights of mixed or unsupported dtypes {weight_dtypes} (all F32, all BF16, "
                  f"or I8 with F32 small stem convs and BF16 kept layers)")
    expected = expected_table(cfg, precision, keep_float)
    if set(names) != set(expected):
        missing = sorted(set(expected) - set(names))
        extra = sorted(set(names) - set(expected))
        raise bad(f"tensor set differs from the config: missing {missing[:10]}, extra {extra[:10]}")
    spans = sorted((tuple(v["data_offsets"]), k) for k, v in header.items())
    pos = 0
    tensors: "OrderedDict[str, np.ndarray]" = OrderedDict()
    offsets = {}
    for (b, e), name in spans:
        info = header[name]
        want_dtype, want_shape = expected[name]
        if info["dtype"] != want_dtype:
            raise bad(f"{name}: dtype {info['dtype']}, expected {want_dtype} in a {precision} file")
        if tuple(info["shape"]) != want_shape:
            raise bad(f"{name}: shape {info['shape']}, expected {list(want_shape)}")
        if b != pos:
            raise bad(f"{name}: starts at data offset {b}, expected {pos} (hole or overlap)")
        size = DTYPES[info["dtype"]].itemsize * int(np.prod(info["shape"]))
        if e - b != size:
            raise bad(f"{name}: byte span {e - b} does not match its shape and dtype ({size} bytes)")
        if (e - b) % ALIGN:
            raise bad(f"{name}: {e - b} bytes is not a multiple of {ALIGN}")
        if (data_start + b) % ALIGN:
            raise bad(f"{name}: data at file offset {data_start + b} is not {ALIGN}-byte aligned")
        raw = buf[data_start + b: data_start + e]
        if checksums.get(name) != crc32_hex(raw):
            raise bad(f"{name}: CRC-32 {crc32_hex(raw)} does not match the stored {checksums.get(name)}")
        offsets[name] = data_start + b
        pos = e
    if data_start + pos != len(buf):
        raise bad(f"file has {len(buf) - data_start - pos} bytes after the last tensor")
    if set(checksums) != set(header):
        raise bad("checksums do not list exactly the tensors")
    for name in names:  # header order
        b, e = header[name]["data_offsets"]
        dt = DTYPES[header[name]["dtype"]]
        tensors[name] = np.frombuffer(buf, dtype=dt, count=(e - b) // dt.itemsize,
                                      offset=data_start + b).reshape(header[name]["shape"])
    for name in names:
        if header[name]["dtype"] == "I8":  # the int8 scheme's promises (weights in -127..=127, comp)
            q = tensors[name]
            scale, comp = int8_companion_names(name)
            if (q == -128).any():
                raise bad(f"{name}: holds -128 (int8 weights are in -127..=127)")
            sums = q.astype(np.int64).sum(axis=(1, 3)).reshape(-1) * 128
            if not np.array_equal(sums, tensors[comp].astype(np.int64)):
                raise bad(f"{comp}: is not 128 * the column sums of {name}")
            if not (np.isfinite(tensors[scale]).all() and (tensors[scale] >= 0).all()):
                raise bad(f"{scale}: scales must be finite and >= 0")
    return LvtFile(path=path, config=cfg, config_json=cfg_json, metadata=dict(meta),
                   tensors=tensors, data_start=data_start, offsets=offsets, precision=precision,
                   keep_float=keep_float)


def check_safetensors_readable(path: str, tensors: "OrderedDict[str, np.ndarray]") -> None:
    """Read the file back with the reference safetensors reader and compare the bytes."""
    import torch
    from safetensors import safe_open

    # torch, because numpy has no bfloat16; the bits are compared through integer views.
    as_torch = {"F32": (torch.float32, torch.int32), "BF16": (torch.bfloat16, torch.int16),
                "I8": (torch.int8, torch.int8), "I32": (torch.int32, torch.int32)}
    try:
        with safe_open(path, "pt") as f:
            keys = set(f.keys())
            if keys != set(tensors):
                raise LevitWeightsError(f"{path}: safetensors sees tensors {sorted(keys ^ set(tensors))[:5]} differently")
            for k, v in tensors.items():
                got = f.get_tensor(k)
                dtype, bits = as_torch[dtype_name(v)]
                if (got.dtype != dtype or tuple(got.shape) != v.shape
                        or got.view(bits).numpy().tobytes() != v.tobytes()):
                    raise LevitWeightsError(f"{path}: safetensors reads {k} back differently")
            meta = f.metadata()
    except LevitWeightsError:
        raise
    except Exception as e:  # noqa: BLE001
        raise LevitWeightsError(f"{path}: written file is not readable by safetensors: {e}") from None
    if meta.get("format") != FORMAT:
        raise LevitWeightsError(f"{path}: safetensors does not see the metadata")
