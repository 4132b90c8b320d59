"""`levit.preprocess` gives timm's eval tensor bit for bit (the committed timm tensors),
from a path, bytes, a PIL image or an RGB array; `levit.classify` and `Model.classify`
give the rows `levit classify --json` prints."""

from __future__ import annotations

import numpy as np
import pytest

import levit
from conftest import FIXTURES, IMAGES, bits, cli_classify

REFERENCE = FIXTURES / "preprocess"
NAMES = sorted(p.name for p in IMAGES.iterdir())


@pytest.mark.parametrize("name", NAMES)
def test_preprocess_equals_timm_bitwise(name):
    ref = REFERENCE / f"{name}.npy"
    assert ref.exists(), ref
    x = levit.preprocess(IMAGES / name)
    expect = np.load(ref).reshape(x.shape)
    assert x.dtype == np.float32 and x.shape == (3, 224, 224)
    assert np.array_equal(bits(x), bits(expect))
    assert np.array_equal(bits(levit.preprocess((IMAGES / name).read_bytes())), bits(expect))
    assert np.array_equal(bits(levit.preprocess(str(IMAGES / name))), bits(expect))


def test_fb_crop_matches_its_timm_tensor():
    x = levit.preprocess(IMAGES / "chelsea.png", crop_pct=0.875)
    expect = np.load(REFERENCE / "chelsea.png.crop0875.npy").reshape(x.shape)
    assert np.array_equal(bits(x), bits(expect))


@pytest.mark.parametrize("name", NAMES)
def test_pil_images_and_rgb_arrays_give_timms_tensor(name):
    Image = pytest.importorskip("PIL.Image")
    with Image.open(IMAGES / name) as im:
        im.load()
        if name.startswith("chelsea_exif"):
            pass  # PIL ignores EXIF orientation, as timm and levit do
        from_pil = levit.preprocess(im)
        rgb = np.asarray(im.convert("RGB"))
    expect = np.load(REFERENCE / f"{name}.npy").reshape(from_pil.shape)
    assert np.array_equal(bits(from_pil), bits(expect))
    assert np.array_equal(bits(levit.preprocess(rgb)), bits(expect))


def test_model_preprocess_uses_its_input_size(tiny_model):
    model = levit.Model(tiny_model)
    assert np.array_equal(model.preprocess(IMAGES / "rocket.jpg"), levit.preprocess(IMAGES / "rocket.jpg"))


def test_imagenet_classes():
    assert len(levit.IMAGENET_CLASSES) == 1000
    assert levit.IMAGENET_CLASSES[281] == "tabby, tabby cat"
    assert levit.IMAGENET_SYNSETS[281] == "n02123045"


def test_top_k_ranks_like_a_softmax():
    logits = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    top = levit.top_k(logits, 5)
    p = np.exp(logits.astype(np.float64) - logits.max())
    p /= p.sum()
    assert [c["class"] for c in top] == list(np.argsort(-logits, kind="stable")[:5])
    for c in top:
        assert c["label"] == levit.IMAGENET_CLASSES[c["class"]]
        assert abs(c["probability"] - p[c["class"]]) < 1e-6
    rows = levit.top_k(np.stack([logits, -logits]), 3)
    assert [r[0]["class"] for r in rows] == [int(np.argmax(logits)), int(np.argmin(logits))]


def same_rows(ours: list[dict], cli: list[dict]) -> None:
    assert len(ours) == len(cli)
    for a, b in zip(ours, cli):
        assert a["path"] == b["path"]
        assert [(c["class"], c["label"], c["synset"]) for c in a["top"]] == [
            (c["class"], c["label"], c["synset"]) for c in b["top"]
        ]
        # The CLI prints the shortest decimal that round-trips an f32: equal f32 bits.
        assert [np.float32(c["probability"]) for c in a["top"]] == [np.float32(c["probability"]) for c in b["top"]]


def test_classify_equals_the_cli(tiny_model, levit_cli):
    paths = [str(IMAGES / n) for n in NAMES]
    ours = levit.classify(paths, tiny_model, top=3)
    same_rows(ours, cli_classify(levit_cli, tiny_model, paths, top=3))
    # A directory is walked as the CLI walks it.
    same_rows(levit.classify(str(IMAGES), levit.Model(tiny_model), top=3),
              cli_classify(levit_cli, tiny_model, [str(IMAGES)], top=3))


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_preprocess_batch_stacks_the_single_image_tensors(threads):
    # Every committed image (all formats and layouts) in one batch, in a shuffled order
    # so each thread's run of files mixes them: image i must equal preprocess(paths[i]).
    paths = [IMAGES / n for n in NAMES]
    paths = paths[1::2] + paths[::2]
    x = levit.preprocess_batch(paths, threads=threads)
    assert x.dtype == np.float32 and x.shape == (len(paths), 3, 224, 224) and x.flags.c_contiguous
    for i, p in enumerate(paths):
        assert np.array_equal(bits(x[i]), bits(levit.preprocess(p))), p.name
    fb = levit.preprocess_batch([str(IMAGES / "chelsea.png")], crop_pct=0.875, img_size=160)
    assert np.array_equal(bits(fb[0]), bits(levit.preprocess(IMAGES / "chelsea.png", crop_pct=0.875, img_size=160)))
    assert levit.preprocess_batch([]).shape == (0, 3, 224, 224)


def test_batched_engine_equals_one_image_at_a_time(tiny_model):
    x = levit.preprocess_batch([IMAGES / n for n in NAMES])  # 21: chunks of 8, 8 and 5
    ref = levit.Model(tiny_model)(x)
    for batch in (2, 8, 32):
        model = levit.Model(tiny_model, batch=batch)
        assert model.batch == batch and model.info["batch"] == batch
        assert np.array_equal(bits(model(x)), bits(ref)), batch
        assert np.array_equal(bits(model(x[3])), bits(ref[3:4])), batch
    assert levit.Model(tiny_model, batch=8).info["engine_bytes"] > levit.Model(tiny_model).info["engine_bytes"]
