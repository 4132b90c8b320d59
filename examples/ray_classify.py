"""Classify a folder of images with levit on Ray Data, one levit.Model per actor.

    pip install ./crates/levit-py "ray[data]"
    python examples/ray_classify.py --model levit_128s.lvt --images photos/ --output top5.jsonl

The file listing becomes a Ray Dataset, and `map_batches` hands batches of paths to a
pool of actors; each actor loads the model once (the file is memory-mapped, so every
actor on a machine shares its pages), reads, decodes and preprocesses each batch with
`levit.preprocess_batch` (timm's eval transform, bit for bit, into one `[N, 3, 224, 224]`
array; the GIL is released while it and the model run) and classifies the batch with
the engine's batched inference. One row per image comes out: path, top-5 class ids, labels and probabilities, the same values
`levit classify --json` prints for that file.

Locally this starts Ray on `--num-cpus` cores. On a cluster only the address changes
(`--address auto` on a node of the cluster, or `ray://head:10001`); the model file and
images must then be readable from every node (shared storage, or an `s3://` prefix
Ray can read).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import ray

import levit


class LevitClassifier:
    """A Ray actor: one levit.Model, loaded when the actor starts, for all its batches."""

    def __init__(self, model_path: str, top: int = 5, threads: int = 1, batch: int = 8,
                 precision: str | None = None):
        # batch: the engine runs up to that many images of a map_batches batch at once,
        # reading each weight once per chunk (same logits as one at a time; past ~8
        # images the activations outgrow L2 and LeViT-128S gains nothing more).
        self.model = levit.Model(model_path, threads=threads, batch=batch, precision=precision)
        self.img_size = self.model.input_shape[1]
        self.top = top

    def tensors(self, paths: list[str]) -> np.ndarray:
        """The batch's `[N, 3, S, S]` input: one call decodes and preprocesses every file
        with the GIL released, straight into the array the model then reads in place."""
        return levit.preprocess_batch(paths, img_size=self.img_size)

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.model(x)

    def __call__(self, batch: dict) -> dict:
        x = self.tensors([str(p) for p in batch["path"]])
        ranked = levit.top_k(self.logits(x), self.top)
        return {
            "path": np.asarray(batch["path"]),
            "classes": [[c["class"] for c in r] for r in ranked],
            "labels": [[c["label"] for c in r] for r in ranked],
            "probabilities": [[c["probability"] for c in r] for r in ranked],
        }


def classify(images, actor_cls=LevitClassifier, actor_kwargs=None, *, actors: int = 2,
             batch_size: int = 16) -> "ray.data.Dataset":
    """The pipeline: image files (walked as `levit classify` walks them) -> batches of
    paths -> `actors` copies of `actor_cls`, one core each -> one row per image."""
    paths = levit.image_files(images)
    blocks = max(1, min(len(paths), 4 * actors))
    ds = ray.data.from_items([{"path": p} for p in paths], override_num_blocks=blocks)
    return ds.map_batches(
        actor_cls,
        fn_constructor_kwargs=actor_kwargs or {},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=1,
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a .lvt file (levit-weights convert / levit.convert)")
    p.add_argument("--images", required=True, nargs="+", help="image files or folders")
    p.add_argument("--output", required=True, help="JSON Lines file, one row per image")
    p.add_argument("--top", type=int, default=5)
    p.add_argument("--address", default=None, help="a Ray cluster (default: start Ray locally)")
    p.add_argument("--num-cpus", type=int, default=2, help="cores of the local Ray instance")
    p.add_argument("--actors", type=int, default=None, help="model actors (default: --num-cpus)")
    p.add_argument("--batch-size", type=int, default=16)
    a = p.parse_args(argv)

    if a.address:
        ray.init(address=a.address)
    else:
        ray.init(num_cpus=a.num_cpus, include_dashboard=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    model = os.path.abspath(a.model)
    images = [os.path.abspath(i) for i in a.images]
    t0 = time.perf_counter()
    ds = classify(images, LevitClassifier, {"model_path": model, "top": a.top},
                  actors=a.actors or a.num_cpus, batch_size=a.batch_size)
    rows = sorted(ds.iter_rows(), key=lambda r: r["path"])
    elapsed = time.perf_counter() - t0
    with open(a.output, "w") as f:
        for r in rows:
            top = [{"class": int(c), "label": str(l), "probability": float(p)}
                   for c, l, p in zip(r["classes"], r["labels"], r["probabilities"])]
            f.write(json.dumps({"path": str(r["path"]), "top": top}) + "\n")
    print(f"{len(rows)} images in {elapsed:.1f} s ({len(rows) / elapsed:.1f} images/s) -> {a.output}",
          file=sys.stderr)
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
