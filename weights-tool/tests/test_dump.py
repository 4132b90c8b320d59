"""dump: manifest structure, merging, and the committed tiny fixtures."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from levit_weights.dump import run_dump
from levit_weights.errors import LevitWeightsError
from levit_weights.lvt import read_lvt
from lvt_reference import forward

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "golden-tiny")


def test_dump_and_merge(tmp_path):
    out = str(tmp_path)
    run_dump(out, ["tiny_hswish"], seed=3, keep_checkpoints=True)
    run_dump(out, ["tiny_silu"], seed=3, keep_checkpoints=False)
    m = json.load(open(tmp_path / "manifest.json"))
    assert m["format"] == "levit-golden" and m["version"] == 1 and m["seed"] == 3
    assert set(m["versions"]) == {"torch", "timm", "numpy", "python"}
    assert [x["name"] for x in m["models"]] == ["tiny_hswish", "tiny_silu"]
    h, s = m["models"]
    assert "checkpoints" in h and "checkpoints" not in s
    assert os.path.exists(tmp_path / h["checkpoints"]["fb"])
    assert not os.path.exists(tmp_path / "tiny_silu" / "checkpoint_fb.pth")
    for k, rel in m["inputs"].items():
        x = np.load(tmp_path / rel)
        assert x.dtype == np.float32 and x.flags.c_contiguous and x.shape[1:] == (3, 224, 224)
    assert np.load(tmp_path / m["inputs"]["batch4"]).shape[0] == 4
    for model in m["models"]:
        assert model["f32_vs_f64_max_abs"] < 1e-4
        f = read_lvt(str(tmp_path / model["files"]["timm"]))
        assert f.config_json == model["config"]
        assert read_lvt(str(tmp_path / model["files"]["fb"])).data_bytes() == f.data_bytes()
        res = f.config.resolutions()
        for case in model["cases"]:
            n = np.load(tmp_path / m["inputs"][case["input"]]).shape[0]
            assert np.load(tmp_path / case["logits"]).shape == (n, f.config.num_classes)
            assert np.load(tmp_path / case["stages"]["stem"]).shape == (n, res[0] ** 2, f.config.embed_dim[0])
            for s_ in range(f.config.num_stages):
                assert np.load(tmp_path / case["stages"][f"stage{s_}"]).shape == \
                    (n, res[s_] ** 2, f.config.embed_dim[s_])
    with pytest.raises(LevitWeightsError, match="seed"):
        run_dump(out, ["tiny_silu"], seed=4)
    with pytest.raises(LevitWeightsError, match="cannot dump"):
        run_dump(str(tmp_path / "other"), ["levit_999"], seed=3)


@pytest.mark.skipif(not os.path.exists(os.path.join(FIXTURES, "manifest.json")),
                    reason="committed fixtures not present")
def test_committed_fixtures_are_consistent():
    """The .lvt files, read per the doc, reproduce the committed torch goldens."""
    m = json.load(open(os.path.join(FIXTURES, "manifest.json")))
    rel = m["tolerance"]["rel"]
    inputs = {k: np.load(os.path.join(FIXTURES, v)) for k, v in m["inputs"].items()}
    for model in m["models"]:
        f = read_lvt(os.path.join(FIXTURES, model["files"]["timm"]))
        assert read_lvt(os.path.join(FIXTURES, model["files"]["fb"])).data_bytes() == f.data_bytes()
        for case in model["cases"]:
            logits, taps = forward(f, inputs[case["input"]])
            taps["logits"] = logits
            files = dict(case["stages"], logits=case["logits"])
            assert set(case["compare"]) <= set(files)
            for t in case["compare"]:
                ref = np.load(os.path.join(FIXTURES, files[t]))
                err = np.abs(taps[t] - ref).max()
                assert err <= rel * max(1.0, np.abs(ref).max()), (model["name"], case["input"], t, err)
            if "logits" in case["compare"]:
                ref = np.load(os.path.join(FIXTURES, case["logits"]))
                assert (np.argsort(-logits, 1)[:, :5] == np.argsort(-ref, 1)[:, :5]).all()


def test_img_size_dump(tmp_path):
    """--img-sizes: logits-only cases at the given sizes, their own manifest kind."""
    from levit_weights.dump import parse_img_sizes, run_size_dump

    out = str(tmp_path / "sizes")
    m = run_size_dump(out, ["tiny_hswish"], [16, 32], seed=1)
    assert m["kind"] == "img-sizes"
    assert [(x["variant"], x["img_size"], x["resolutions"]) for x in m["models"]] == \
        [("tiny_hswish", 16, [1, 1, 1]), ("tiny_hswish", 32, [2, 1, 1])]
    for x in m["models"]:
        f = read_lvt(os.path.join(out, x["files"]["timm"]))
        assert f.config.img_size == x["img_size"]
        (case,) = x["cases"]
        assert case["compare"] == ["logits"] and case["stages"] == {}
        inp = np.load(os.path.join(out, m["inputs"][case["input"]]))
        assert inp.shape == (2, 3, x["img_size"], x["img_size"])
        y = np.load(os.path.join(out, case["logits"]))
        assert y.shape == (2, 10) and np.all(np.isfinite(y))
        # The converted file, read per the doc, reproduces torch's logits.
        ref, _ = forward(f, inp)
        assert np.max(np.abs(ref - y)) <= 1e-4 * max(1.0, float(np.max(np.abs(y))))
    with pytest.raises(LevitWeightsError, match="img_size sweep"):
        run_dump(out, ["tiny_hswish"], seed=1)
    with pytest.raises(LevitWeightsError, match="full golden dump"):
        run_dump(str(tmp_path / "full"), ["tiny_silu"], seed=1, keep_checkpoints=False)
        run_size_dump(str(tmp_path / "full"), ["tiny_silu"], [16], seed=1)
    assert parse_img_sizes("16, 48,512") == [16, 48, 512]
    for bad, why in [("40", "not a multiple of 16"), ("8", "below 16"), ("4096", "above levit's limit"),
                     ("x", "not an integer"), ("", "no sizes")]:
        with pytest.raises(LevitWeightsError, match=why):
            parse_img_sizes(bad)
