"""natural.py: BatchNorm statistics fitted to photo crops, and the range report."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch
from torch import nn

from levit_weights import natural
from levit_weights.dump import run_dump
from levit_weights.errors import LevitWeightsError

PHOTOS = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "images")


def test_crops_are_seeded_normalised_and_vary():
    a = natural.natural_images(PHOTOS, 6, seed=3, img_size=32)
    b = natural.natural_images(PHOTOS, 6, seed=3, img_size=32)
    c = natural.natural_images(PHOTOS, 6, seed=4, img_size=32)
    assert a.shape == (6, 3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    # The eval normalisation: pixels in [0, 1] map into [-mean/std, (1-mean)/std].
    lo = -np.array(natural.MEAN) / np.array(natural.STD)
    hi = (1 - np.array(natural.MEAN)) / np.array(natural.STD)
    per_chan = a.permute(1, 0, 2, 3).reshape(3, -1)
    assert np.all(per_chan.min(1).values.numpy() >= lo - 1e-5)
    assert np.all(per_chan.max(1).values.numpy() <= hi + 1e-5)
    assert not torch.equal(a[0], a[1])


def test_refit_statistics_are_the_images_own(tiny_models):
    """After calibrate_bn_on_, every BatchNorm's running mean / var equal the mean and
    (unbiased) variance of what it saw over all the images in one big batch."""
    model = copy.deepcopy(tiny_models["tiny_hswish"])
    x = natural.natural_images(PHOTOS, 8, seed=0, img_size=224)
    natural.calibrate_bn_on_(model, x, batch_size=8)  # one batch: stats of exactly x
    seen = {}
    hooks = [m.register_forward_pre_hook(lambda m, inp, n=n: seen.__setitem__(n, inp[0].detach().clone()))
             for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.train()
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
            bn.momentum = 0.0  # keep the fitted stats while recording the inputs
        model(x)
    for h in hooks:
        h.remove()
    assert seen
    for name, bn in ((n, m) for n, m in model.named_modules() if n in seen):
        t = seen[name].double()
        dims = [0] + list(range(2, t.dim()))
        torch.testing.assert_close(bn.running_mean.double(), t.mean(dims), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(bn.running_var.double(), t.var(dims, unbiased=True), rtol=1e-3, atol=1e-5)


def test_range_report_fractions():
    ranges = {"stem.conv1.linear": np.array([1.0, 2.0, 4.0]),
              "stages.0.blocks.0.mlp.ln1.linear": np.array([1.0, 1.0, 10.0]),
              "stages.0.blocks.1.mlp.ln1.linear": np.array([5.0, 5.0, 5.0]),
              "head.linear": np.array([3.0])}
    r = natural.range_report(ranges)
    assert r["stem"] == {"layers": 1, "median_used": 0.5, "min_used": 0.5, "median_spread": 4.0}
    assert r["stage0"]["layers"] == 2
    assert r["stage0"]["min_used"] == pytest.approx(0.1)
    assert r["stage0"]["median_used"] == pytest.approx(0.55)
    assert r["stage0"]["median_spread"] == pytest.approx(5.5)
    assert r["head"]["median_used"] == 1.0


def test_dump_with_bn_images_records_the_ranges(tmp_path):
    m = run_dump(str(tmp_path), ["tiny_hswish"], seed=0, keep_checkpoints=False, bn_images=PHOTOS, bn_count=16)
    entry = m["models"][0]["bn_natural"]
    assert entry["count"] == 16 and set(entry["ranges_after"]) >= {"stem", "stage0"}
    for stage, r in entry["ranges_after"].items():
        assert 0 < r["min_used"] <= r["median_used"] <= 1, stage


def test_bad_bn_images_are_clear_errors(tmp_path):
    with pytest.raises(LevitWeightsError, match="not a directory"):
        run_dump(str(tmp_path), ["tiny_hswish"], keep_checkpoints=False, bn_images=str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(LevitWeightsError, match="no .* files"):
        run_dump(str(tmp_path), ["tiny_hswish"], keep_checkpoints=False, bn_images=str(tmp_path / "empty"))
    with pytest.raises(LevitWeightsError, match="at least 16"):
        run_dump(str(tmp_path), ["tiny_hswish"], keep_checkpoints=False, bn_images=PHOTOS, bn_count=4)
