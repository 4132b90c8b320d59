"""Images/s of the Ray Data pipeline of examples/ray_classify.py with levit against the
same pipeline built the way users of timm/PyTorch and ONNX Runtime build it.

    pip install ./crates/levit-py "ray[data]"     # plus torch, timm, onnx, onnxruntime
    python benches/ray_throughput.py --variant levit_128s --images 1024 --num-cpus 2

Every row runs the same pipeline: the file listing, `map_batches` over batches of
paths, one actor per core with one intra-op thread each, top-5 with `levit.top_k`.
What differs is what a user of each library runs in the actor:

- levit: `levit.preprocess_batch` (Rust decode + timm's eval transform, bit-exact,
  the whole batch in one call without the GIL) and `levit.Model(batch=8)`;
  "levit bf16" is the same with `precision="bf16"` (extra information: another
  precision, not the headline).
- timm (PyTorch eager) and ONNX Runtime: timm's own eval transform,
  `timm.data.create_transform(**resolve_data_config({}, model=...))` on
  `PIL.Image.open(f).convert("RGB")`, as timm's `ImageDataset` loads an image.
- ONNX Runtime + levit.preprocess: ONNX Runtime fed by `levit.preprocess_batch`, so
  the engines alone differ; kept so the part of levit's lead that comes from the
  preprocessing stays visible.

The model is timm's `--variant` with the weights of `--dump` (the peers dump:
checkpoint_timm.safetensors, as benches/peers/compare.py uses), or random weights if
there is none; the same weights are converted with `levit.convert` and exported to ONNX
(batch axis dynamic). The images are tests/fixtures/images copied to `--images` files.
Each backend runs the pipeline once to warm up (Ray workers started) and then
`--repeats` times; the table gives the best of each: end to end (actor start-up and
model load included) and steady state (after the first batch). Run it on a
quiet machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples"))
os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO / "examples"), os.environ.get("PYTHONPATH", "")])

import ray  # noqa: E402

import levit  # noqa: E402
from ray_classify import LevitClassifier, classify  # noqa: E402


class TimmTransform:
    """timm's eval transform with PIL decoding, as a timm user's actor preprocesses."""

    def __init__(self, data_config: dict, threads: int):
        import timm.data
        import torch

        torch.set_num_threads(threads)
        self.transform = timm.data.create_transform(**data_config)

    def __call__(self, paths: list[str]) -> np.ndarray:
        from PIL import Image

        out = []
        for p in paths:
            with open(p, "rb") as f:  # timm's ImageDataset: open, then convert("RGB")
                img = Image.open(f).convert("RGB")
            out.append(self.transform(img).numpy())
        return np.stack(out)


class TimmClassifier(LevitClassifier):
    """The same actor with timm/PyTorch eager as the model, timm's transform in front."""

    def __init__(self, model_path: str, variant: str, state: str, data_config: dict, top: int = 5,
                 threads: int = 1):
        import timm
        import torch

        torch.set_num_threads(threads)
        self.torch = torch
        self.net = timm.create_model(variant, pretrained=False)
        self.net.load_state_dict(torch.load(state, weights_only=True))
        self.net.eval()
        self.timm_transform = TimmTransform(data_config, threads)
        self.top = top

    def tensors(self, paths: list[str]) -> np.ndarray:
        return self.timm_transform(paths)

    def logits(self, x: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.net(self.torch.from_numpy(x)).numpy()


class OrtClassifier(LevitClassifier):
    """The same actor with ONNX Runtime (CPU provider) as the model: timm's transform in
    front, or `levit.preprocess_batch` with `data_config=None`."""

    def __init__(self, model_path: str, onnx: str, data_config: dict | None, top: int = 5,
                 threads: int = 1):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.sess = ort.InferenceSession(onnx, so, providers=["CPUExecutionProvider"])
        self.name = self.sess.get_inputs()[0].name
        self.img_size, self.top = 224, top
        self.timm_transform = TimmTransform(data_config, threads) if data_config is not None else None

    def tensors(self, paths: list[str]) -> np.ndarray:
        if self.timm_transform is None:
            return super().tensors(paths)
        return self.timm_transform(paths)

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.sess.run(None, {self.name: x})[0]


class Timed:
    """Stamps each output row with the time its batch finished (steady-state rate)."""

    def __call__(self, batch: dict) -> dict:
        out = super().__call__(batch)
        out["t_done"] = np.full(len(out["path"]), time.time())
        return out


class TimedLevit(Timed, LevitClassifier):
    pass


class TimedTimm(Timed, TimmClassifier):
    pass


class TimedOrt(Timed, OrtClassifier):
    pass


def prepare(variant: str, dump: Path | None, work: Path) -> dict:
    import timm
    import torch

    net = timm.create_model(variant, pretrained=False)
    ckpt = dump / variant / "checkpoint_timm.safetensors" if dump else None
    if ckpt and ckpt.exists():
        from safetensors.torch import load_file

        net.load_state_dict(load_file(str(ckpt)))
        print(f"weights: {ckpt}", file=sys.stderr)
    else:
        print("weights: random (no --dump checkpoint)", file=sys.stderr)
    net.eval()
    # timm's eval transform for this model (what a timm user's pipeline runs); a plain
    # dict of numbers and strings, so it travels to the actors.
    data_config = dict(timm.data.resolve_data_config({}, model=net))
    state = work / "state.pth"
    torch.save(net.state_dict(), state)
    lvt = work / f"{variant}.lvt"
    levit.convert(net, lvt)
    onnx = work / f"{variant}.onnx"
    x = torch.zeros(1, 3, 224, 224)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        net(x)  # build timm's attention-bias cache before tracing
        torch.onnx.export(net, (x,), str(onnx), opset_version=17, do_constant_folding=True,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}}, dynamo=False)
    return {"lvt": str(lvt), "state": str(state), "onnx": str(onnx), "data_config": data_config}


def images(n: int, work: Path) -> Path:
    folder = work / "images"
    folder.mkdir()
    sources = sorted((REPO / "tests" / "fixtures" / "images").iterdir())
    for i in range(n):
        shutil.copy(sources[i % len(sources)], folder / f"{i:05d}_{sources[i % len(sources)].name}")
    return folder


def run(folder: Path, actor, kwargs: dict, actors: int, batch: int) -> tuple[float, float, list]:
    """(end-to-end images/s with actor start-up, steady-state images/s, rows). The
    steady rate counts the images finished after the first batch, over the time from the
    first batch's end to the last's (use enough images: thousands)."""
    t0 = time.perf_counter()
    rows = classify([str(folder)], actor, kwargs, actors=actors, batch_size=batch).take_all()
    wall = time.perf_counter() - t0
    done = np.sort(np.array([r["t_done"] for r in rows]))
    first = int(np.searchsorted(done, done[0], side="right"))
    steady = (len(rows) - first) / max(done[-1] - done[0], 1e-9)
    return len(rows) / wall, steady, rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", default="levit_128s")
    p.add_argument("--dump", type=Path, default=Path.home() / ".cache/levit-rs/peers/dump")
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--backends", default="levit,levit-bf16,timm,ort,ort-levit-pre")
    a = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="levit-ray-bench-"))
    try:
        files = prepare(a.variant, a.dump if a.dump.exists() else None, work)
        folder = images(a.images, work)
        ray.init(num_cpus=a.num_cpus, include_dashboard=False,
                 runtime_env={"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"]}})
        ray.data.DataContext.get_current().enable_progress_bars = False
        timm_cfg = files["data_config"]
        backends = {
            "levit": (TimedLevit, {"model_path": files["lvt"]}),
            "levit bf16": (TimedLevit, {"model_path": files["lvt"], "precision": "bf16"}),
            "timm (PyTorch eager)": (TimedTimm, {"model_path": "", "variant": a.variant,
                                                 "state": files["state"], "data_config": timm_cfg}),
            "ONNX Runtime": (TimedOrt, {"model_path": "", "onnx": files["onnx"], "data_config": timm_cfg}),
            "ONNX Runtime + levit.preprocess": (TimedOrt, {"model_path": "", "onnx": files["onnx"],
                                                           "data_config": None}),
        }
        chosen = {"levit": "levit", "levit-bf16": "levit bf16", "timm": "timm (PyTorch eager)",
                  "ort": "ONNX Runtime", "ort-levit-pre": "ONNX Runtime + levit.preprocess"}
        results, tops = {}, {}
        for key in a.backends.split(","):
            name = chosen[key]
            actor, kwargs = backends[name]
            run(folder, actor, kwargs, a.num_cpus, a.batch_size)  # warm-up
            runs = [run(folder, actor, kwargs, a.num_cpus, a.batch_size) for _ in range(a.repeats)]
            rows = runs[-1][2]
            tops[name] = {r["path"]: int(r["classes"][0]) for r in rows}
            results[name] = (max(r[0] for r in runs), max(r[1] for r in runs))
            print(f"{name}: {results[name][0]:.1f} images/s end to end, {results[name][1]:.1f} steady",
                  file=sys.stderr)
        print(f"\n{a.variant}, {a.images} images, ray.init(num_cpus={a.num_cpus}), {a.num_cpus} actors x 1 thread, "
              f"batch {a.batch_size}\n")
        print("| backend | preprocessing | images/s, end to end | images/s, steady state | steady vs ONNX Runtime "
              "| top-1 agrees with levit |")
        print("| --- | --- | ---: | ---: | ---: | ---: |")
        ort = results.get("ONNX Runtime")
        for name, (e2e, ips) in results.items():
            ratio = f"{ips / ort[1]:.2f}x" if ort else "-"
            agree = "-"
            if "levit" in tops:
                same = sum(tops[name][k] == v for k, v in tops["levit"].items())
                agree = f"{same}/{len(tops['levit'])}"
            pre = "levit.preprocess_batch" if name.startswith("levit") or "levit.pre" in name else "timm transform (PIL)"
            print(f"| {name} | {pre} | {e2e:.1f} | {ips:.1f} | {ratio} | {agree} |")
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
