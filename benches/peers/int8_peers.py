"""The int8 peers: OpenVINO with NNCF post-training quantization and ONNX Runtime QDQ.

Recipes that worked on these models (issue 12), each also in its default config so
nobody can say we picked a peer's worst:

- Export after timm's own `.fuse()` of every ConvNorm / LinearNorm / NormLinear
  (`fused_copy`): otherwise `LinearNorm` exports as MatMul-Flatten-BatchNorm-Reshape,
  ORT keeps 48-60 BatchNorm nodes and the quantizers wrap each.
- OpenVINO: `ov.convert_model` of that ONNX (with `core.read_model` NNCF fails with a
  KeyError on the attention-bias Gather), `nncf.quantize(..., model_type=TRANSFORMER)`;
  best config with SmoothQuant off (`smooth_quant_alphas` matmul = -1), default with
  NNCF's defaults (SmoothQuant alpha 0.95 on MatMuls).
- ONNX Runtime: `quant_pre_process`, then `quantize_static` in QDQ format, per-channel
  s8 weights and u8 activations; best config quantizes only MatMul/Gemm/Conv and keeps
  their outputs float (quantizing Softmax/Add hurts), default quantizes every op it
  can, per-tensor weights (quantize_static's defaults).

Calibration uses images the caller gives (accuracy.py: random crops of the photos,
drawn with another seed than the evaluation's crops).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

# engine key -> (label, kind, config)
PEERS = {
    "ov-int8": ("OV int8 (NNCF, SQ off)", "ov", "best"),
    "ov-int8-default": ("OV int8 (NNCF default)", "ov", "default"),
    "ort-int8": ("ORT int8 (QDQ MatMul/Gemm/Conv)", "ort", "best"),
    "ort-int8-default": ("ORT int8 (QDQ default)", "ort", "default"),
}


def fused_copy(model):
    """A copy of a timm Levit with every ConvNorm / LinearNorm / NormLinear replaced by
    its `.fuse()` (BatchNorm folded into the conv / linear), in eval mode."""
    m = copy.deepcopy(model)

    def fuse(mod):
        for name, child in list(mod.named_children()):
            if hasattr(child, "fuse") and callable(child.fuse):
                setattr(mod, name, child.fuse())
            else:
                fuse(child)

    fuse(m)
    m.train()
    m.eval()  # timm caches the gathered attention bias at eval: rebuild it
    return m


def build(kind: str, config: str, fused_onnx: Path, calib, work: Path, threads: int | None = None):
    """Returns (run(x[1,3,H,W]) -> logits, info) for one int8 peer. `threads`: intra-op
    threads (compare.py's latency rows); None: ORT 1, OpenVINO its default."""
    import numpy as np

    t0 = time.time()
    info: dict = {"config": config, "calibration_images": len(calib)}
    if kind == "ov":
        import nncf
        import openvino as ov

        model = ov.convert_model(str(fused_onnx))
        params = {}
        if config == "best":
            params["advanced_parameters"] = nncf.AdvancedQuantizationParameters(
                smooth_quant_alphas=nncf.AdvancedSmoothQuantParameters(matmul=-1))
        q = nncf.quantize(model, nncf.Dataset([np.ascontiguousarray(x[None]) for x in calib]),
                          model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calib), **params)
        ov_config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        if threads:
            ov_config["INFERENCE_NUM_THREADS"] = threads
        compiled = ov.Core().compile_model(q, "CPU", ov_config)
        req = compiled.create_infer_request()
        out = compiled.output(0)
        info.update(version=ov.__version__, nncf=nncf.__version__, quantize_s=time.time() - t0)

        def run(x):
            return np.array(req.infer({0: x})[out], dtype=np.float32)

        return run, info
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input": np.ascontiguousarray(x[None])} for x in calib])

        def get_next(self):
            return next(self.it, None)

    pre = work / f"{fused_onnx.stem}.pre.onnx"
    out = work / f"{fused_onnx.stem}.qdq-{config}.onnx"
    quant_pre_process(str(fused_onnx), str(pre))
    kw = dict(quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    if config == "best":
        kw.update(per_channel=True, op_types_to_quantize=["MatMul", "Gemm", "Conv"],
                  extra_options={"OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm"]})
    quantize_static(str(pre), str(out), Reader(), **kw)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads or 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(str(out), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    info.update(version=ort.__version__, quantize_s=time.time() - t0, model=str(out))

    def run(x):
        return np.array(sess.run(None, {name: x})[0], dtype=np.float32)

    return run, info
