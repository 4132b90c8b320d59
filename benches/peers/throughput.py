"""Throughput table of compare.py (`--throughput`): images/s per core at batch 8.

levit f32 batch 8 against OpenVINO f32 and ONNX Runtime at the same batch, same weights,
same run (issue 14's targets):

- 1 core: `levit-bench --batch 8 --threads 1`; OpenVINO with PERFORMANCE_HINT=THROUGHPUT,
  1 thread, 1 stream; ORT with 1 intra-op thread.
- 2 cores: levit the faster of one engine with `--threads 2` and two single-thread
  engines (two levit-bench processes at once, images/s summed); OpenVINO with
  PERFORMANCE_HINT=THROUGHPUT, 2 threads, 2 streams (an AsyncInferQueue of 2 requests,
  each a batch of 8); ORT with 2 intra-op threads.

images/s: levit-bench's batch / median batch time; a Python peer's batches x 8 / wall
time of its timed loop (the only measure that counts OpenVINO's streams). The best of
`--rounds` interleaved rounds counts. Every peer's batch-8 logits are checked against
PyTorch eager on the same 8 images (levit-bench checks its own batch bit for bit
against single-image inference).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import threading
import time
import traceback
from pathlib import Path

BATCH = 8
# (row, engine, cores, extra settings)
PEER_ROWS = (
    ("ov-f32-tput", "ov", 1, {"streams": 1}),
    ("ort", "ort", 1, {}),
    ("ov-f32-tput", "ov", 2, {"streams": 2}),
    ("ort", "ort", 2, {}),
)
LABEL = {"levit": "levit", "ov-f32-tput": "OV f32 THROUGHPUT", "ort": "ORT"}


def log(msg: str) -> None:
    print(msg, file=__import__("sys").stderr, flush=True)


# --------------------------------------------------------------------------------------
# peers (spawned processes)


def _load(kind: str, spec: dict):
    """Returns (submit_all, logits): `submit_all(n)` runs n batches and returns when all
    are done."""
    import numpy as np

    x = np.load(spec["input"])
    threads = spec["threads"]
    if kind == "ort":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        sess = ort.InferenceSession(spec["onnx"], so, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: x}
        logits = sess.run(None, feed)[0]

        def run_batches(n: int) -> None:
            for _ in range(n):
                sess.run(None, feed)

        return run_batches, logits, {"version": ort.__version__}
    import openvino as ov

    core = ov.Core()
    streams = spec["streams"]
    config = {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": streams,
              "INFERENCE_PRECISION_HINT": "f32"}
    compiled = core.compile_model(core.read_model(spec["onnx"]), "CPU", config)
    queue = ov.AsyncInferQueue(compiled, streams)
    out = compiled.output(0)
    req = compiled.create_infer_request()
    logits = np.array(req.infer({0: x})[out], copy=True)

    def run_batches(n: int) -> None:
        for _ in range(n):
            queue.start_async({0: x})
        queue.wait_all()

    def prop(name):
        try:
            return str(compiled.get_property(name))
        except Exception:  # noqa: BLE001 - a property this version lacks
            return None

    info = {"version": ov.__version__, "config_requested": {k: str(v) for k, v in config.items()},
            "streams_actual": prop("NUM_STREAMS"), "threads_actual": prop("INFERENCE_NUM_THREADS"),
            "precision": prop("INFERENCE_PRECISION_HINT")}
    return run_batches, logits, info


def peer_worker(conn, kind: str, spec: dict) -> None:
    try:
        run_batches, logits, info = _load(kind, spec)
        conn.send(("ready", {"logits": logits, "info": info}))
        while True:
            msg = conn.recv()
            if msg[0] == "quit":
                break
            _, warmup, batches = msg
            run_batches(warmup)
            t0 = time.perf_counter()
            run_batches(batches)
            conn.send(("wall_s", time.perf_counter() - t0))
    except Exception:  # noqa: BLE001 - reported to the parent, which carries on
        try:
            conn.send(("error", traceback.format_exc()))
        except Exception:  # noqa: BLE001
            pass
    finally:
        conn.close()


class Peer:
    def __init__(self, ctx, kind: str, spec: dict):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=peer_worker, args=(child, kind, spec), daemon=True)
        self.proc.start()
        child.close()

    def recv(self):
        try:
            return self.conn.recv()
        except EOFError:
            return "error", f"worker exited with code {self.proc.exitcode}"

    def close(self):
        try:
            self.conn.send(("quit",))
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(timeout=30)
        if self.proc.is_alive():
            self.proc.kill()


# --------------------------------------------------------------------------------------
# levit


def levit_bench(levit_bin: Path, lvt: str, threads: int, warmup: int, iters: int) -> dict:
    cmd = [str(levit_bin / "levit-bench"), "--model", lvt, "--batch", str(BATCH), "--threads", str(threads),
           "--warmup", str(warmup), "--iters", str(iters), "--no-peak", "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, RUST_BACKTRACE="0"))
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[0]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def levit_two_engines(levit_bin: Path, lvt: str, warmup: int, iters: int) -> dict:
    """Two single-thread engines at once (two processes): their images/s summed."""
    results: list[dict] = [{}, {}]

    def one(i: int) -> None:
        results[i] = levit_bench(levit_bin, lvt, 1, warmup, iters)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errs = [r["error"] for r in results if "error" in r]
    if errs:
        return {"error": errs[0]}
    return {"images_per_s": sum(r["images_per_s"] for r in results)}


# --------------------------------------------------------------------------------------


def run(args, names: list[str], dump_dir: Path, levit_bin: Path, helpers) -> list[dict]:
    """Measures every variant; `helpers` is compare.py (load_timm, export_onnx, compare_logits)."""
    import numpy as np
    import torch

    ctx = mp.get_context("spawn")
    x = np.random.default_rng(args.seed).standard_normal((BATCH, 3, 224, 224), dtype=np.float32)
    x_path = args.work / f"input_batch{BATCH}.npy"
    np.save(x_path, x)
    results = []
    for name in names:
        model = helpers.load_timm(name, dump_dir / name / "checkpoint_timm.safetensors")
        xt = torch.from_numpy(x)
        with torch.inference_mode():
            ref = model(xt).numpy()
        onnx_path = args.work / f"{name}.batch{BATCH}.onnx"
        helpers.export_onnx(model, xt, onnx_path, args.opset)
        lvt = str(dump_dir / name / "model_timm.lvt")
        rows: dict = {}
        peers = {}
        try:
            for row, kind, cores, extra in PEER_ROWS:
                if not any(e in args.engines for e in (("ort",) if kind == "ort" else ("ov-f32",))):
                    continue
                key = f"{row}/{cores}"
                spec = {"input": str(x_path), "onnx": str(onnx_path), "threads": cores, **extra}
                peer = Peer(ctx, kind, spec)
                tag, payload = peer.recv()
                if tag == "error":
                    rows[key] = {"error": payload.strip().splitlines()[-1]}
                    peer.close()
                    continue
                check = [helpers.compare_logits(ref[i], payload["logits"][i]) for i in range(BATCH)]
                rows[key] = {"info": payload["info"], "rel": max(c.get("rel", float("inf")) for c in check),
                             "rounds": []}
                peers[key] = peer
            for key in ("levit/1", "levit/2"):
                rows[key] = {"rounds": []}
            batches = max(1, args.iters // BATCH)
            for rnd in range(args.rounds):
                r1 = levit_bench(levit_bin, lvt, 1, args.warmup, batches)
                r2 = levit_bench(levit_bin, lvt, 2, args.warmup, batches)
                r2e = levit_two_engines(levit_bin, lvt, args.warmup, batches)
                for key, r in (("levit/1", r1), ("levit/2", r2), ("levit/2e", r2e)):
                    if "error" in r:
                        rows.setdefault(key, {})["error"] = r["error"]
                    else:
                        rows.setdefault(key, {"rounds": []}).setdefault("rounds", []).append(r["images_per_s"])
                for key, peer in peers.items():
                    peer.conn.send(("bench", args.warmup, batches))
                    tag, payload = peer.recv()
                    if tag == "error":
                        rows[key]["error"] = payload.strip().splitlines()[-1]
                        continue
                    rows[key]["rounds"].append(BATCH * batches / payload)
                log(f"  {name} round {rnd + 1}/{args.rounds}: " + ", ".join(
                    f"{k} {v['rounds'][-1]:.1f}" for k, v in rows.items() if v.get("rounds")))
        finally:
            for peer in peers.values():
                peer.close()
        for r in rows.values():
            if r.get("rounds"):
                r["images_per_s"] = max(r["rounds"])
        # levit on 2 cores: the faster of 2 threads and 2 engines
        two = [(k, rows[k]["images_per_s"]) for k in ("levit/2", "levit/2e") if rows.get(k, {}).get("images_per_s")]
        if two:
            best = max(two, key=lambda kv: kv[1])
            rows["levit/2best"] = {"images_per_s": best[1], "how": "2 threads" if best[0] == "levit/2" else "2 engines"}
        results.append({"variant": name, "batch": BATCH, "rows": rows})
    return results


def report(results: list[dict], render, markdown: bool) -> str:
    headers = ["variant", "cores", "levit img/s/core", "OV f32 TPUT img/s/core", "ORT img/s/core",
               "levit/OV", "levit/ORT", "levit on 2 cores", "Δ OV", "Δ ORT"]
    rows = []

    def per_core(r: dict | None, cores: int) -> float | None:
        return r["images_per_s"] / cores if r and r.get("images_per_s") else None

    def cell(v):
        return f"{v:.1f}" if v is not None else "n/a"

    for res in results:
        rr = res["rows"]
        for cores in (1, 2):
            lv = per_core(rr.get("levit/1" if cores == 1 else "levit/2best"), cores)
            ov = per_core(rr.get(f"ov-f32-tput/{cores}"), cores)
            ort = per_core(rr.get(f"ort/{cores}"), cores)
            how = rr.get("levit/2best", {}).get("how", "n/a") if cores == 2 else "-"
            rows.append([res["variant"].removeprefix("levit_"), str(cores), cell(lv), cell(ov), cell(ort),
                         f"{lv / ov:.2f}" if lv and ov else "n/a", f"{lv / ort:.2f}" if lv and ort else "n/a", how,
                         f"{rr.get(f'ov-f32-tput/{cores}', {}).get('rel', float('nan')):.1e}",
                         f"{rr.get(f'ort/{cores}', {}).get('rel', float('nan')):.1e}"])
    title = f"Throughput, batch {BATCH}, f32: images/s per core (best of the interleaved rounds)"
    notes = ["levit/X > 1: levit is faster. levit on 2 cores is the faster of one engine with 2 threads and "
             "two single-thread engines at once. OV = OpenVINO PERFORMANCE_HINT=THROUGHPUT with "
             "INFERENCE_NUM_THREADS = cores and NUM_STREAMS = cores, f32.",
             "Δ = max over the 8 images of max|logits - torch| / max(1, max|torch|)."]
    errs = sorted({f"{k}: {v['error']}" for res in results for k, v in res["rows"].items() if v.get("error")})
    if errs:
        notes.append("n/a: " + "; ".join(errs))
    return "\n".join([("### " if markdown else "") + title, "", render(headers, rows, markdown), ""]
                     + [("- " if markdown else "") + n for n in notes])
