"""examples/ray_classify.py on ~50 images (the committed ones, copied under new names):
every row equals `levit classify --json` for the same file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np

from conftest import IMAGES, REPO, cli_classify, require

IMAGE_COUNT = 50


def test_ray_example_rows_equal_the_cli(tiny_model, levit_cli, tmp_path):
    try:
        import ray  # noqa: F401
    except ImportError:
        require('ray (pip install "ray[data]")')
    folder = tmp_path / "images"
    folder.mkdir()
    sources = sorted(IMAGES.iterdir())
    for i in range(IMAGE_COUNT):
        src = sources[i % len(sources)]
        shutil.copy(src, folder / f"{i:03d}_{src.name}")
    out = tmp_path / "rows.jsonl"
    r = subprocess.run(
        [sys.executable, str(REPO / "examples" / "ray_classify.py"), "--model", str(tiny_model),
         "--images", str(folder), "--output", str(out), "--num-cpus", "2", "--batch-size", "8"],
        capture_output=True, text=True, env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0"),
    )
    assert r.returncode == 0, r.stderr[-4000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == IMAGE_COUNT
    paths = sorted(str(p) for p in folder.iterdir())
    cli = {row["path"]: row for row in cli_classify(levit_cli, tiny_model, paths, top=5)}
    for row in rows:
        expect = cli[row["path"]]["top"]
        assert [(c["class"], c["label"]) for c in row["top"]] == [(c["class"], c["label"]) for c in expect]
        assert [np.float32(c["probability"]) for c in row["top"]] == [np.float32(c["probability"]) for c in expect]
