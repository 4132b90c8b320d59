#!/usr/bin/env python3
"""levit-rs (f32, bf16, int8) against its peers: ONNX Runtime, OpenVINO (f32, default bf16), PyTorch eager, int8 peers.

Same weights, same input, same run. For every variant it takes a seeded trained-like
random checkpoint from `levit-weights dump`, builds the timm model from the timm-layout
checkpoint (the PyTorch eager peer and the f32 reference), exports it to ONNX (ORT and
OpenVINO) and uses the converted `.lvt` for levit-bench, once in f32 and once with
`--precision bf16` (the f32 file repacked to bf16 at load). Every engine's logits on one
fixed input are checked against PyTorch eager f32; latency is batch 1, 3x224x224,
measured as the best median of `--rounds` interleaved runs (levit, levit-bf16, ort,
ov-f32, ov-bf16, torch, levit, ...), per thread count. `levit int8` (`--precision int8`:
the f32 file quantized at load, the same bits as its int8 file) is measured by default;
`--int8` adds the int8 peers, OpenVINO with NNCF post-training quantization and ONNX
Runtime QDQ, each in its most accurate config measured here (int8_peers.py: exported
after timm's `.fuse()`, calibrated on random crops of the committed photos; each takes
tens of seconds to quantize per variant and thread count, hence the flag).

Each Python peer runs in its own spawned worker process (its own peak RSS, no thread
pools shared with the other peers); only one process computes at a time. levit runs as
`levit-bench --json`, a fresh process per round.

    python benches/peers/compare.py                          # defaults: all 5 variants, 1,2 threads
    python benches/peers/compare.py --variants 128s --threads 1 --iters 50 --rounds 1
    python benches/peers/compare.py --iters 1000 --markdown --out results.json
    python benches/peers/compare.py --throughput --variants 128s,384   # batch-8 images/s per core only
    python benches/peers/compare.py --int8 --engines levit,levit-bf16,levit-int8   # + the int8 peers

`--throughput` measures only the batch-8 throughput table (throughput.py): levit against
OpenVINO f32 (PERFORMANCE_HINT=THROUGHPUT) and ONNX Runtime on 1 and 2 cores.

See benches/peers/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
VARIANTS = ("128s", "128", "192", "256", "384")
ENGINES = ("levit", "levit-bf16", "levit-int8", "ort", "ov-f32", "ov-bf16", "torch", "ov-int8", "ort-int8")
DEFAULT_ENGINES = ENGINES[:7]
INT8_PEERS = ("ov-int8", "ort-int8")  # slow to build (post-training quantization): only with --int8
LABEL = {"levit": "levit", "levit-bf16": "levit bf16", "levit-int8": "levit int8", "ort": "ORT", "ov-f32": "OV f32",
         "ov-bf16": "OV bf16", "torch": "torch", "ov-int8": "OV int8 (NNCF)", "ort-int8": "ORT int8 (QDQ)"}
# levit rows: engine -> the --precision it runs with (None: the file's own, f32 here; so a
# levit build from before the precision axis still runs the f32 row)
LEVIT_ENGINES = {"levit": None, "levit-bf16": "bf16", "levit-int8": "int8"}
PY_ENGINES = ("ort", "ov-f32", "ov-bf16", "torch") + INT8_PEERS
# levit-bench JSON keys kept per round (the kernel and peak keys are absent in older builds)
LEVIT_ROUND_KEYS = ("median_ms", "p90_ms", "p99_ms", "min_ms", "iters", "peak_pct")
LEVIT_INFO_KEYS = ("isa", "gmac", "precision", "gemm_kernel", "repacked_bytes", "peak_gmacs")
INPUT_SHAPE = (1, 3, 224, 224)
MIN_ITERS = 20  # timed runs a round keeps even past --max-round-s


# --------------------------------------------------------------------------------------
# small helpers


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def proc_status_bytes(field: str) -> int | None:
    """VmHWM / VmRSS of this process in bytes (Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def stats(times_ns: list[int]) -> dict:
    import numpy as np

    t = np.sort(np.asarray(times_ns, dtype=np.float64) / 1e6)
    n = len(t)

    def pct(p: float) -> float:  # same rule as levit-bench: nearest rank, rounded
        return float(t[min(n - 1, int(round((n - 1) * p)))])

    return {"median_ms": pct(0.5), "p90_ms": pct(0.9), "p99_ms": pct(0.99), "min_ms": float(t[0]),
            "mean_ms": float(t.mean()), "iters": n}


def variant_name(v: str) -> str:
    v = v.strip().lower()
    return v if v.startswith("levit_") else f"levit_{v}"


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [x for x in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni",
                                        "amx_bf16", "amx_tile") if x in have]
    except OSError:
        pass
    return []


def git_describe(root: Path) -> str | None:
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=root, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def compare_logits(ref, y) -> dict:
    import numpy as np

    ref = np.asarray(ref, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if ref.shape != y.shape:
        return {"ok": False, "error": f"shape {y.shape} != reference {ref.shape}"}
    if not np.all(np.isfinite(y)):
        return {"ok": False, "error": "non-finite logits"}
    d = float(np.max(np.abs(y - ref)))
    top_ref = [int(i) for i in np.argsort(-ref, kind="stable")[:5]]
    top_y = [int(i) for i in np.argsort(-y, kind="stable")[:5]]
    return {"max_abs": d, "rel": d / max(1.0, float(np.max(np.abs(ref)))),
            "top5_equal": top_ref == top_y, "top5_set_equal": set(top_ref) == set(top_y),
            "top5": top_y, "top5_ref": top_ref}


# --------------------------------------------------------------------------------------
# peer workers (spawned processes; module top level must stay import-light)


def _load_peer(kind: str, spec: dict):
    """Returns (run, info): `run()` does one inference and returns the logits."""
    import numpy as np

    threads = spec["threads"]
    x = np.load(spec["input"])
    info: dict = {}
    if kind in INT8_PEERS:
        import int8_peers  # this directory is on sys.path of the spawned worker (see peer_worker)

        calib = list(np.load(spec["calib"]))
        run_x, info = int8_peers.build(kind.split("-")[0], "best", Path(spec["fused_onnx"]), calib,
                                       Path(spec["work"]), threads)

        def run():
            return run_x(x)
    elif kind == "ort":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        sess = ort.InferenceSession(spec["onnx"], so, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: x}
        info.update(version=ort.__version__, providers=sess.get_providers())

        def run():
            return sess.run(None, feed)[0]
    elif kind in ("ov-f32", "ov-bf16"):
        import openvino as ov

        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        if kind == "ov-f32":
            config["INFERENCE_PRECISION_HINT"] = "f32"
        compiled = core.compile_model(core.read_model(spec["onnx"]), "CPU", config)
        req = compiled.create_infer_request()
        x_ov = ov.Tensor(x, shared_memory=True)  # wraps x's buffer: keep both alive in run()
        req.set_input_tensor(x_ov)
        out = compiled.output(0)

        def prop(name):
            try:
                v = compiled.get_property(name)
                return v.get_type_name() if hasattr(v, "get_type_name") else str(v)  # ov.Type -> "bf16"
            except Exception:  # noqa: BLE001 - a property this version lacks
                return None

        info.update(version=ov.__version__, config_requested={k: str(v) for k, v in config.items()},
                    precision=prop("INFERENCE_PRECISION_HINT"), threads_actual=prop("INFERENCE_NUM_THREADS"),
                    streams_actual=prop("NUM_STREAMS"), pinning=prop("ENABLE_CPU_PINNING"),
                    device=str(core.get_property("CPU", "FULL_DEVICE_NAME")),
                    capabilities=[str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")])

        def run(_keep=(x, x_ov)):
            req.infer()
            return req.get_tensor(out).data
    elif kind == "torch":
        import timm
        import torch
        from safetensors.torch import load_file

        torch.set_num_threads(threads)
        model = timm.create_model(spec["timm_name"], pretrained=False)
        model.load_state_dict(load_file(spec["checkpoint"]), strict=True)
        model.train()  # timm caches the attention biases on the first eval forward:
        model.eval()   # make sure that cache is built from the loaded weights
        xt = torch.from_numpy(x)
        info.update(version=torch.__version__, timm=timm.__version__, threads_actual=torch.get_num_threads())

        def run():
            with torch.inference_mode():
                return model(xt).numpy()
    else:
        raise ValueError(kind)
    return run, info


def peer_worker(conn, kind: str, spec: dict) -> None:
    try:
        import numpy as np  # noqa: F401 - part of the import baseline

        sys.path.insert(0, str(HERE))  # int8_peers
        if kind == "torch":
            import safetensors.torch  # noqa: F401
            import timm  # noqa: F401
            import torch  # noqa: F401
        elif kind in INT8_PEERS:
            import nncf  # noqa: F401
            import onnxruntime  # noqa: F401
            import openvino  # noqa: F401
        elif kind == "ort":
            import onnxruntime  # noqa: F401
        else:
            import openvino  # noqa: F401
        rss_base = proc_status_bytes("VmRSS")
        t0 = time.perf_counter_ns()
        run, info = _load_peer(kind, spec)
        load_ms = (time.perf_counter_ns() - t0) / 1e6
        t0 = time.perf_counter_ns()
        y = run()
        first_ms = (time.perf_counter_ns() - t0) / 1e6
        import numpy as np

        conn.send(("ready", {"load_ms": load_ms, "first_ms": first_ms, "rss_base_bytes": rss_base,
                             "info": info, "logits": np.array(y, dtype=np.float32, copy=True)}))
        while True:
            msg = conn.recv()
            if msg[0] == "quit":
                break
            _, warmup, iters, max_ns = msg
            for _ in range(warmup):
                run()
            times = []
            clock = time.perf_counter_ns
            start = clock()
            for i in range(iters):
                t = clock()
                run()
                times.append(clock() - t)
                # a round on an overloaded machine can take minutes: cut it short
                if i + 1 >= MIN_ITERS and t - start > max_ns:
                    break
            conn.send(("times", {"times_ns": times, "peak_rss_bytes": proc_status_bytes("VmHWM")}))
    except Exception:  # noqa: BLE001 - reported to the parent, which carries on
        try:
            conn.send(("error", traceback.format_exc()))
        except Exception:  # noqa: BLE001
            pass
    finally:
        conn.close()


class Peer:
    def __init__(self, ctx, kind: str, spec: dict):
        self.kind = kind
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=peer_worker, args=(child, kind, spec), daemon=True)
        self.proc.start()
        child.close()
        self.dead = False

    def recv(self):
        try:
            tag, payload = self.conn.recv()
        except EOFError:
            tag, payload = "error", f"worker exited with code {self.proc.exitcode}"
        if tag == "error":
            self.dead = True
        return tag, payload

    def bench(self, warmup: int, iters: int, max_s: float):
        self.conn.send(("bench", warmup, iters, int(max_s * 1e9)))
        return self.recv()

    def close(self):
        if not self.dead:
            try:
                self.conn.send(("quit",))
            except (BrokenPipeError, OSError):
                pass
        self.proc.join(timeout=30)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


# --------------------------------------------------------------------------------------
# preparation: build, dump, input, reference, ONNX, levit logits


def cargo_build(root: Path) -> None:
    cmd = ["cargo", "build", "--release", "-p", "levit-cli", "-p", "levit-bench"]
    log(f"$ {' '.join(cmd)}   (in {root})")
    if subprocess.run(cmd, cwd=root).returncode != 0:
        sys.exit(f"compare.py: cargo build failed in {root} (use --levit-root for another checkout, "
                 "or --no-build to use the binaries already in its target/release)")


def bin_dir(root: Path) -> Path:
    target = os.environ.get("CARGO_TARGET_DIR")
    t = Path(target) if target else root / "target"
    return (t if t.is_absolute() else root / t) / "release"


def ensure_dump(dump_dir: Path, names: list[str]) -> None:
    missing = [n for n in names if not (dump_dir / n / "checkpoint_timm.safetensors").exists()
               or not (dump_dir / n / "model_timm.lvt").exists()]
    if not missing:
        log(f"reusing dump {dump_dir} for {', '.join(names)}")
        return
    cmd = [sys.executable, "-m", "levit_weights", "dump", "--out", str(dump_dir), "--variants", ",".join(missing)]
    log(f"$ {' '.join(cmd)}")
    subprocess.run(cmd, check=True)
    for n in missing:
        if not (dump_dir / n / "checkpoint_timm.safetensors").exists():
            sys.exit(f"compare.py: {dump_dir / n} has no checkpoint_timm.safetensors "
                     "(was it dumped with --no-checkpoints? pass another --dump)")


def load_timm(name: str, ckpt: Path):
    """The timm model of a variant with the dump's weights, in eval mode."""
    import timm
    from safetensors.torch import load_file

    model = timm.create_model(name, pretrained=False)
    model.load_state_dict(load_file(str(ckpt)), strict=True)
    model.train()
    model.eval()  # timm's attention-bias cache is (re)built on the first eval forward
    return model


def export_onnx(model, xt, onnx_path: Path, opset: int) -> dict:
    """torch.onnx.export with a static input shape (xt's); returns the export's record."""
    import torch

    t0 = time.time()
    exporter, errors = None, []
    import warnings

    for dynamo in (False, True):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (xt,), str(onnx_path), opset_version=opset, do_constant_folding=True,
                                  input_names=["input"], output_names=["logits"], dynamo=dynamo)
            exporter = "dynamo" if dynamo else "torchscript (legacy)"
            break
        except Exception as e:  # noqa: BLE001 - try the other exporter, report both
            errors.append(f"{'dynamo' if dynamo else 'legacy'} exporter: {type(e).__name__}: {str(e)[:300]}")
    if exporter is None:
        raise RuntimeError(f"{onnx_path.name}: ONNX export failed: " + " | ".join(errors))
    export_s = time.time() - t0
    import onnx

    m = onnx.load(str(onnx_path), load_external_data=False)
    onnx_info = {"path": str(onnx_path), "exporter": exporter, "export_s": export_s, "opset": opset,
                 "nodes": len(m.graph.node), "bytes": onnx_path.stat().st_size,
                 "input_shape": [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim],
                 "export_errors": errors}
    del m
    return onnx_info


def levit_infer(levit_bin: Path, lvt, x_path: Path, out: Path, isa: str | None = None,
                precision: str | None = None):
    """`levit infer` on an .npy input; returns (logits, None) or (None, error line)."""
    import numpy as np

    cmd = [str(levit_bin / "levit"), "infer", "--model", str(lvt), "--input", str(x_path), "--output", str(out)]
    cmd += (["--isa", isa] if isa else []) + (["--precision", precision] if precision else [])
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, RUST_BACKTRACE="0"))
    if r.returncode != 0:
        lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
        return None, (lines[0] if lines else f"exit {r.returncode}").removeprefix("Error: ")
    return np.load(out), None


def prepare_variant(name: str, dump_dir: Path, work: Path, x, opset: int, levit_bin: Path, isa: str | None,
                    engines: list[str]) -> dict:
    """Reference logits, ONNX export, levit logits (f32 and bf16); returns the variant's record."""
    import numpy as np
    import torch

    ckpt = dump_dir / name / "checkpoint_timm.safetensors"
    lvt = dump_dir / name / "model_timm.lvt"
    model = load_timm(name, ckpt)
    xt = torch.from_numpy(x)
    with torch.inference_mode():
        ref = model(xt).numpy().astype(np.float32)
    np.save(work / f"{name}.reference.npy", ref)
    onnx_info = export_onnx(model, xt, work / f"{name}.onnx", opset)
    int8_info = {}
    if any(e in INT8_PEERS for e in engines):
        # the int8 peers' recipe (int8_peers.py): the fused export, calibrated on random
        # crops of the committed photos (accuracy.py's calibration set)
        sys.path.insert(0, str(HERE))
        import accuracy
        import int8_peers

        fused = work / f"{name}.fused.onnx"
        int8_info["onnx_fused"] = export_onnx(int8_peers.fused_copy(model), xt, fused, opset)
        crops, _ = accuracy.photo_inputs(model, REPO / "tests" / "fixtures" / "images", 3, 1)
        calib = np.stack([im for n, im in crops if "#crop" in n]).astype(np.float32)
        np.save(work / f"{name}.calib.npy", calib)
        int8_info.update(fused_onnx=str(fused), calib=str(work / f"{name}.calib.npy"), calib_images=len(calib))

    checks = {}
    for e, precision in LEVIT_ENGINES.items():
        if e not in engines and e != "levit":  # levit f32 is always checked: it sets the exit code
            continue
        y, err = levit_infer(levit_bin, lvt, work / "input.npy", work / f"{name}.{e}.npy", isa, precision)
        checks[e] = {"ok": False, "error": err} if err else compare_logits(ref, y)
    return {"name": name, "checkpoint": str(ckpt), "lvt": str(lvt), "onnx": onnx_info,
            "reference_max_abs": float(np.max(np.abs(ref))), "reference_top5": [int(i) for i in np.argsort(-ref[0])[:5]],
            "levit_check": checks["levit"], "levit_checks": checks, "int8_peers": int8_info}


# --------------------------------------------------------------------------------------
# measurement


def run_levit(levit_bin: Path, lvt: str, threads: int, warmup: int, iters: int, isa: str | None,
              precision: str | None = None) -> dict:
    cmd = [str(levit_bin / "levit-bench"), "--model", lvt, "--threads", str(threads), "--warmup", str(warmup),
           "--iters", str(iters), "--json"] + (["--isa", isa] if isa else [])
    cmd += ["--precision", precision] if precision else []
    env = dict(os.environ, RUST_BACKTRACE="0")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
        return {"error": (lines[0] if lines else f"exit {r.returncode}").removeprefix("Error: ")}
    return json.loads(r.stdout.strip().splitlines()[-1])


def measure(args, prepared: dict, threads: int, name: str, levit_bin: Path) -> dict:
    ctx = mp.get_context("spawn")
    p = prepared[name]
    spec = {"threads": threads, "input": str(Path(args.work) / "input.npy"), "onnx": p["onnx"]["path"],
            "checkpoint": p["checkpoint"], "timm_name": name, "work": str(args.work),
            "fused_onnx": p.get("int8_peers", {}).get("fused_onnx"), "calib": p.get("int8_peers", {}).get("calib")}
    ref = __import__("numpy").load(Path(args.work) / f"{name}.reference.npy")
    res: dict = {e: {"engine": e, "rounds": []} for e in args.engines}
    peers: dict[str, Peer] = {}
    try:
        for e in args.engines:  # load one at a time: load times are not contended
            if e in LEVIT_ENGINES:
                res[e]["check"] = p["levit_checks"][e]
                continue
            peer = Peer(ctx, e, spec)
            tag, payload = peer.recv()
            if tag == "error":
                res[e]["error"] = payload.strip().splitlines()[-1]
                res[e]["traceback"] = payload
                log(f"  {name} T={threads} {e}: FAILED to load: {res[e]['error']}")
                peer.close()
                continue
            peers[e] = peer
            logits = payload.pop("logits")
            res[e].update(payload)
            res[e]["check"] = compare_logits(ref, logits)
        for rnd in range(args.rounds):
            for e in args.engines:
                r = res[e]
                if "error" in r:
                    continue
                if e in LEVIT_ENGINES:
                    out = run_levit(levit_bin, p["lvt"], threads, args.warmup, args.iters, args.isa,
                                    LEVIT_ENGINES[e])
                    if "error" in out:
                        r["error"] = out["error"]
                        log(f"  {name} T={threads} {e}: n/a ({out['error']})")
                        continue
                    r.setdefault("load_ms", out.get("load_ms"))  # bf16: includes the repack
                    r.setdefault("first_ms", out.get("first_ms"))
                    r.update({k: out.get(k) for k in LEVIT_INFO_KEYS})
                    r["peak_rss_bytes"] = max(r.get("peak_rss_bytes") or 0, out.get("peak_rss_bytes") or 0) or None
                    r["rounds"].append({k: out.get(k) for k in LEVIT_ROUND_KEYS})
                else:
                    tag, payload = peers[e].bench(args.warmup, args.iters, args.max_round_s)
                    if tag == "error":
                        r["error"] = payload.strip().splitlines()[-1]
                        r["traceback"] = payload
                        log(f"  {name} T={threads} {e}: FAILED: {r['error']}")
                        continue
                    r["peak_rss_bytes"] = payload["peak_rss_bytes"]
                    r["rounds"].append(stats(payload["times_ns"]))
                last = r["rounds"][-1]
                cut = f"  (cut at {last['iters']} runs)" if last.get("iters", args.iters) < args.iters else ""
                log(f"  {name} T={threads} round {rnd + 1}/{args.rounds} {e:<10} "
                    f"median {last['median_ms']:8.3f} ms  min {last['min_ms']:8.3f}{cut}")
    finally:
        for peer in peers.values():
            peer.close()
    for r in res.values():
        if r["rounds"]:
            best = min(r["rounds"], key=lambda s: s["median_ms"])
            r.update(best=best, median_ms=best["median_ms"], p90_ms=best["p90_ms"], min_ms=min(
                s["min_ms"] for s in r["rounds"]))
            if best.get("peak_pct") is not None:  # levit: % of the dot peak at the best median
                r["peak_pct"] = best["peak_pct"]
        else:
            r.setdefault("error", "not measured")
    ratios = {}
    lv = res.get("levit", {}).get("median_ms")
    for e in args.engines:
        if e not in LEVIT_ENGINES and lv and res[e].get("median_ms"):
            ratios[f"levit/{e}"] = lv / res[e]["median_ms"]
    lv16, ov16 = res.get("levit-bf16", {}).get("median_ms"), res.get("ov-bf16", {}).get("median_ms")
    if lv16 and ov16:  # the like-for-like bf16 comparison
        ratios["levit-bf16/ov-bf16"] = lv16 / ov16
    lv8 = res.get("levit-int8", {}).get("median_ms")
    peers8 = [res[e]["median_ms"] for e in INT8_PEERS if res.get(e, {}).get("median_ms")]
    if lv8 and peers8:  # the target: <= 0.85 x the faster int8 peer
        ratios["levit-int8/best-int8-peer"] = lv8 / min(peers8)
    if lv8 and lv:
        ratios["levit-int8/levit"] = lv8 / lv
    return {"threads": threads, "variant": name, "iters": args.iters, "engines": res, "ratios": ratios}


# --------------------------------------------------------------------------------------
# report


def render(headers: list[str], rows: list[list[str]], markdown: bool, right_from: int = 1) -> str:
    if markdown:
        lines = ["| " + " | ".join(headers) + " |",
                 "|" + "|".join(("---" if i < right_from else "---:") for i in range(len(headers))) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    w = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def fmt(cells):
        return "  ".join(c.ljust(w[i]) if i < right_from else c.rjust(w[i]) for i, c in enumerate(cells))

    return "\n".join([fmt(headers), "  ".join("-" * x for x in w)] + [fmt(r) for r in rows])


def ms_cell(r: dict) -> str:
    return f"{r['median_ms']:.2f}" if r.get("median_ms") is not None else "n/a"


def diff_cell(check: dict | None) -> str:
    if not check:
        return "n/a"
    if "rel" not in check:
        return "ERR"
    return f"{check['rel']:.1e}" + ("" if check["top5_equal"] else "*")


def report(results: list[dict], engines: list[str], markdown: bool) -> str:
    out = []
    for threads in sorted({r["threads"] for r in results}):
        rows_t = [r for r in results if r["threads"] == threads]
        headers = ["variant"] + [f"{LABEL[e]} ms" for e in engines]
        # levit f32 against the first two f32 peers present; levit bf16 against OV bf16
        ratio_keys = [f"levit/{k}" for k in ("ov-f32", "ort", "ov-bf16", "torch")
                      if k in engines and "levit" in engines][:2]
        if "levit-bf16" in engines and "ov-bf16" in engines:
            ratio_keys.append("levit-bf16/ov-bf16")
        if "levit-int8" in engines and any(e in engines for e in INT8_PEERS):
            ratio_keys.append("levit-int8/best-int8-peer")
        if "levit-int8" in engines and "levit" in engines:
            ratio_keys.append("levit-int8/levit")
        label = dict(LABEL, **{"best-int8-peer": "best int8 peer"})
        headers += ["/".join(label[e] for e in k.split("/")) for k in ratio_keys]
        headers += [f"Δ {LABEL[e]}" for e in engines if e != "torch"]
        rows = []
        for r in rows_t:
            eng = r["engines"]
            row = [r["variant"].removeprefix("levit_")] + [ms_cell(eng[e]) for e in engines]
            row += [f"{r['ratios'][k]:.2f}" if k in r["ratios"] else "n/a" for k in ratio_keys]
            row += [diff_cell(eng[e].get("check")) for e in engines if e != "torch"]
            rows.append(row)
        title = f"{threads} thread{'s' if threads > 1 else ''}: median ms, batch 1 (best of the interleaved rounds)"
        out += [("### " if markdown else "") + title, "", render(headers, rows, markdown), ""]
        headers = ["variant"] + [f"{LABEL[e]} load ms" for e in engines] + [f"{LABEL[e]} RSS MiB" for e in engines]
        rows = []
        for r in rows_t:
            eng = r["engines"]
            row = [r["variant"].removeprefix("levit_")]
            row += [f"{eng[e]['load_ms']:.0f}" if eng[e].get("load_ms") is not None else "n/a" for e in engines]
            row += [f"{eng[e]['peak_rss_bytes'] / 2**20:.0f}" if eng[e].get("peak_rss_bytes") else "n/a"
                    for e in engines]
            rows.append(row)
        out += [("#### " if markdown else "") + f"{threads} thread{'s' if threads > 1 else ''}: load time and peak RSS",
                "", render(headers, rows, markdown), ""]
    notes = ["Δ = max|logits - torch| / max(1, max|torch|) on the fixed input; * = top-5 differs from torch.",
             "levit/X < 1: levit is faster. RSS is each process's peak (Python peers include the interpreter)."]
    notes += levit_kernel_notes(results, engines)
    prec = sorted({str(r["engines"]["ov-bf16"].get("info", {}).get("precision"))
                   for r in results if "ov-bf16" in r["engines"] and r["engines"]["ov-bf16"].get("info")})
    if prec:
        notes.append(f"OV bf16 = OpenVINO's default INFERENCE_PRECISION_HINT, which resolved to: {', '.join(prec)}.")
    cut = [f"{LABEL[e]} {r['variant'].removeprefix('levit_')} {r['threads']}T ({r['engines'][e]['best']['iters']} runs)"
           for r in results for e in engines
           if r["engines"][e].get("best", {}).get("iters", r["iters"]) < r["iters"]]
    if cut:
        notes.append("best round cut short by --max-round-s: " + ", ".join(cut))
    errs = sorted({f"{LABEL[e]}: {r['engines'][e]['error']}" for r in results for e in engines
                   if r["engines"][e].get("error")})
    if errs:
        notes.append("n/a: " + "; ".join(errs))
    out += [("- " if markdown else "") + n for n in notes]
    return "\n".join(out)


def levit_kernel_notes(results: list[dict], engines: list[str]) -> list[str]:
    """Per levit row: the GEMM kernel levit-bench chose, the measured dot peak, and the
    share of it each variant reached at its best median (levit-bench's peak_pct)."""
    notes = []
    for e in (x for x in LEVIT_ENGINES if x in engines):
        rs = [r for r in results if r["engines"][e].get("rounds")]
        if not rs:
            continue
        eng = [r["engines"][e] for r in rs]
        kernels = sorted({f"{x.get('gemm_kernel') or '?'} (ISA {x.get('isa') or '?'})" for x in eng})
        peaks = [x["peak_gmacs"] for x in eng if x.get("peak_gmacs")]
        line = f"{LABEL[e]}: GEMM kernel {', '.join(kernels)}"
        if peaks:
            line += (f"; measured dot peak {min(peaks):.0f}-{max(peaks):.0f} GMAC/s per core"
                     if max(peaks) > 1.05 * min(peaks) else f"; measured dot peak {max(peaks):.0f} GMAC/s per core")
        pct = [f"{r['variant'].removeprefix('levit_')} {r['threads']}T {r['engines'][e]['peak_pct']:.1f}%"
               for r in rs if r["engines"][e].get("peak_pct") is not None]
        if pct:
            line += "; % of peak (threads x peak) at the best median: " + ", ".join(pct)
        notes.append(line + ".")
    return notes


# --------------------------------------------------------------------------------------


def main(argv=None) -> int:
    default_cache = Path(os.environ.get("LEVIT_PEERS_CACHE", Path.home() / ".cache" / "levit-rs" / "peers"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma list of 128s,128,192,256,384 (default all)")
    ap.add_argument("--threads", default="1,2", help="comma list of intra-op thread counts (default 1,2)")
    ap.add_argument("--iters", type=int, default=100, help="timed runs per engine per round (default 100; "
                                                            "the issue's protocol is ~1000)")
    ap.add_argument("--warmup", type=int, default=10, help="untimed runs before each round (default 10)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best median counts (default 3)")
    ap.add_argument("--max-round-s", type=float, default=15.0,
                    help="a Python peer's timed loop stops after this many seconds (keeping at least "
                         f"{MIN_ITERS} runs): bounds the run time when a machine is overloaded (default 15)")
    ap.add_argument("--engines", default=",".join(DEFAULT_ENGINES),
                    help=f"subset of {','.join(ENGINES)} (default {','.join(DEFAULT_ENGINES)})")
    ap.add_argument("--int8", action="store_true",
                    help=f"add the int8 peers ({', '.join(LABEL[e] for e in INT8_PEERS)}) and levit int8 to --engines")
    ap.add_argument("--dump", type=Path, help="levit-weights dump dir with checkpoints to reuse (missing variants "
                                              "are dumped into it); default <cache>/dump")
    ap.add_argument("--cache", type=Path, default=default_cache, help=f"cache dir (default {default_cache})")
    ap.add_argument("--work", type=Path, help="where the input, ONNX files and logits go (default <cache>/work)")
    ap.add_argument("--out", type=Path, help="results JSON (default <work>/results.json)")
    ap.add_argument("--markdown", action="store_true", help="print the tables as GitHub markdown")
    ap.add_argument("--seed", type=int, default=0, help="seed of the input image (default 0)")
    ap.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    ap.add_argument("--isa", help="force levit's SIMD path for both levit rows (amx, avx512bf16, avx512, avx2, "
                                  "portable)")
    ap.add_argument("--levit-root", type=Path, default=REPO, help="levit-rs workspace to build and run (default: "
                                                                  "the one holding this script)")
    ap.add_argument("--no-build", action="store_true", help="skip `cargo build --release` (binaries must exist)")
    ap.add_argument("--throughput", action="store_true",
                    help="measure only the batch-8 throughput table (images/s per core on 1 and 2 cores: levit, "
                         "OpenVINO f32 THROUGHPUT, ORT; see throughput.py); --iters is then images per round")
    args = ap.parse_args(argv)

    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if args.int8:
        args.engines += ["levit-int8", *INT8_PEERS]
    bad = [e for e in args.engines if e not in ENGINES]
    if bad:
        ap.error(f"unknown engine(s) {bad}; choose from {ENGINES}")
    args.engines = [e for e in ENGINES if e in args.engines]  # fixed interleaving order
    names = [variant_name(v) for v in args.variants.split(",") if v.strip()]
    bad = [n for n in names if n.removeprefix("levit_") not in VARIANTS]
    if bad:
        ap.error(f"unknown variant(s) {bad}; choose from {','.join(VARIANTS)}")
    thread_counts = [int(t) for t in args.threads.split(",") if t.strip()]
    if args.iters < 1 or args.rounds < 1 or args.warmup < 0 or any(t < 1 for t in thread_counts):
        ap.error("--iters, --rounds and --threads must be >= 1, --warmup >= 0")
    args.work = args.work or args.cache / "work"
    args.out = args.out or args.work / "results.json"
    dump_dir = args.dump or args.cache / "dump"
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    levit_root = args.levit_root.resolve()
    if not args.no_build:
        cargo_build(levit_root)
    levit_bin = bin_dir(levit_root)
    for b in ("levit", "levit-bench"):
        if not (levit_bin / b).exists():
            sys.exit(f"compare.py: {levit_bin / b} not found (build with cargo build --release -p levit-cli -p levit-bench)")

    ensure_dump(dump_dir, names)

    if args.throughput:
        import throughput

        if args.out == args.work / "results.json":
            args.out = args.work / "throughput.json"
        results = throughput.run(args, names, dump_dir, levit_bin, sys.modules[__name__])
        doc = {"meta": {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                        "cpu": cpu_model(), "logical_cpus": os.cpu_count(), "levit_git": git_describe(levit_root),
                        "argv": sys.argv, "runtime_s": time.time() - t_start},
               "results": results}
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"{doc['meta']['cpu']} ({doc['meta']['logical_cpus']} logical CPUs), {doc['meta']['date']}, "
              f"levit {doc['meta']['levit_git'] or levit_root}; {args.rounds} rounds")
        print()
        print(throughput.report(results, render, args.markdown))
        log(f"wrote {args.out} ({time.time() - t_start:.0f}s)")
        return 0

    import numpy as np

    x = np.random.default_rng(args.seed).standard_normal(INPUT_SHAPE, dtype=np.float32)
    np.save(args.work / "input.npy", x)
    prepared = {}
    for n in names:
        t0 = time.time()
        prepared[n] = prepare_variant(n, dump_dir, args.work, x, args.opset, levit_bin, args.isa, args.engines)
        checks = ", ".join(f"{LABEL[e]} {diff_cell(c)}" for e, c in prepared[n]["levit_checks"].items())
        log(f"prepared {n}: ONNX via {prepared[n]['onnx']['exporter']} ({prepared[n]['onnx']['nodes']} nodes), "
            f"vs torch: {checks}; {time.time() - t0:.1f}s")

    import importlib.metadata as md

    def ver(pkg):
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return None

    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(), "cpu_flags": cpu_flags(), "logical_cpus": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(), "python": platform.python_version(),
        "versions": {p: ver(p) for p in ("torch", "timm", "onnx", "onnxruntime", "openvino", "numpy")},
        "levit_git": git_describe(levit_root), "levit_root": str(levit_root), "script_git": git_describe(REPO),
        "argv": sys.argv, "runtime_s": None, "complete": False,
        "protocol": {"batch": 1, "input_shape": list(INPUT_SHAPE), "input_seed": args.seed, "iters": args.iters,
                     "warmup": args.warmup, "rounds": args.rounds, "threads": thread_counts,
                     "engines_order": args.engines, "dump": str(dump_dir), "opset": args.opset,
                     "max_round_s": args.max_round_s},
    }
    results: list[dict] = []
    doc = {"meta": meta, "variants": prepared, "results": results}

    def save():  # after every variant, so an interrupted run keeps what it measured
        meta["runtime_s"] = time.time() - t_start
        tmp = args.out.with_name(args.out.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        os.replace(tmp, args.out)

    for threads in thread_counts:
        for n in names:
            log(f"measuring {n} with {threads} thread(s): {args.rounds} rounds x {args.iters} iters")
            results.append(measure(args, prepared, threads, n, levit_bin))
            save()
    meta["complete"] = True
    save()
    print(f"{meta['cpu']} ({meta['logical_cpus']} logical CPUs), {meta['date']}, levit {meta['levit_git'] or levit_root}, "
          f"onnxruntime {meta['versions']['onnxruntime']}, openvino {meta['versions']['openvino']}, "
          f"torch {meta['versions']['torch']}; {args.rounds} rounds x {args.iters} iters")
    print()
    print(report(results, args.engines, args.markdown))
    log(f"wrote {args.out} ({time.time() - t_start:.0f}s)")
    failed = [n for n, p in prepared.items() if not p["levit_check"].get("top5_equal")]
    if failed:
        log(f"levit's logits do not match torch (top-5) for {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
