"""Every error is a Python exception carrying the engine's message, never a crash."""

from __future__ import annotations

import numpy as np
import pytest

import levit
from conftest import IMAGES


def test_missing_model_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="cannot read weight file .*no-such.lvt: no such file"):
        levit.Model(tmp_path / "no-such.lvt")


def test_directory_is_an_os_error(tmp_path):
    with pytest.raises(OSError, match="not a regular file"):
        levit.Model(tmp_path)


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],
        lambda b: b[:7],
        lambda b: b"",
        lambda b: b"\x00" * 4096,
        lambda b: b"not a model at all, just some text\n" * 10,
        lambda b: bytes(b[:8]) + b"#" + bytes(b[9:]),
    ],
    ids=["truncated", "tiny", "empty", "zeros", "text", "header"],
)
def test_damaged_or_foreign_files_are_format_errors(damage, tiny_model, tmp_path):
    path = tmp_path / "bad.lvt"
    path.write_bytes(damage(tiny_model.read_bytes()))
    with pytest.raises(levit.FormatError):
        levit.Model(path)


def test_a_flipped_weight_bit_is_caught_by_verify(tiny_model, tmp_path):
    data = bytearray(tiny_model.read_bytes())
    data[len(data) - 1000] ^= 0x40
    path = tmp_path / "flipped.lvt"
    path.write_bytes(bytes(data))
    levit.Model(path)  # a plain load does not read every weight...
    with pytest.raises(levit.FormatError, match="checksum|CRC"):
        levit.Model(path, verify=True)  # ...a verified one does
    with pytest.raises(levit.FormatError):
        levit.Model(path).verify()


def test_format_error_is_a_value_error():
    assert issubclass(levit.FormatError, ValueError)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"isa": "sse9"}, "sse9"),
        ({"precision": "fp7"}, "fp7"),
        ({"threads": levit.MAX_THREADS + 1}, "intra-op threads"),
        ({"batch": 0}, "batch must be"),
        ({"batch": 1_000_000}, "batch must be"),
    ],
)
def test_bad_options_are_value_errors(kwargs, message, tiny_model):
    with pytest.raises(ValueError, match=message):
        levit.Model(tiny_model, **kwargs)


def test_negative_threads_are_refused(tiny_model):
    with pytest.raises(OverflowError):
        levit.Model(tiny_model, threads=-1)


def test_preprocess_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        levit.preprocess(tmp_path / "missing.jpg")
    with pytest.raises(OSError):
        levit.preprocess(tmp_path)
    (tmp_path / "fake.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(ValueError, match="cannot decode image"):
        levit.preprocess(tmp_path / "fake.jpg")
    with pytest.raises(ValueError, match="cannot decode image"):
        levit.preprocess(b"GIF89a....")
    truncated = (IMAGES / "rocket.jpg").read_bytes()
    with pytest.raises(ValueError, match="truncated"):
        levit.preprocess(truncated[: len(truncated) // 2])
    with pytest.raises(ValueError, match="uint8"):
        levit.preprocess(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(TypeError, match="preprocess takes"):
        levit.preprocess(12)
    with pytest.raises(ValueError):
        levit.preprocess(IMAGES / "chelsea.png", crop_pct=1.5)


def test_preprocess_batch_errors(tmp_path):
    good = IMAGES / "chelsea.png"
    (tmp_path / "fake.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    # The first failing file in path order is the error, whichever thread met it.
    for threads in (1, 3):
        with pytest.raises(FileNotFoundError, match="missing.jpg"):
            levit.preprocess_batch([good, tmp_path / "missing.jpg", good, tmp_path / "fake.jpg"], threads=threads)
        with pytest.raises(ValueError, match="fake.jpg"):
            levit.preprocess_batch([good, good, good, tmp_path / "fake.jpg"], threads=threads)
    with pytest.raises(OSError):
        levit.preprocess_batch([tmp_path])
    with pytest.raises(TypeError, match="list of paths"):
        levit.preprocess_batch(str(good))
    with pytest.raises(ValueError, match="threads"):
        levit.preprocess_batch([good], threads=0)
    with pytest.raises(ValueError):
        levit.preprocess_batch([good], crop_pct=0.0)


def test_classify_errors(tiny_model, tmp_path):
    with pytest.raises(FileNotFoundError):
        levit.classify([tmp_path / "missing.png"], tiny_model)
    with pytest.raises(FileNotFoundError):
        levit.classify([IMAGES / "chelsea.png"], tmp_path / "missing.lvt")


def test_top_k_errors():
    with pytest.raises(ValueError, match="shape"):
        levit.top_k(np.zeros((1, 2, 3), np.float32))
    with pytest.raises(ValueError, match="not a finite number"):
        levit.top_k(np.array([0.0, np.inf], np.float32))


def test_mutated_files_and_images_raise_or_run_never_crash(tiny_model, tmp_path):
    """Random byte flips anywhere in a model file, and random bytes as images: each call
    raises one of the documented exceptions or returns a result (the interpreter lives)."""
    rng = np.random.default_rng(13)
    original = tiny_model.read_bytes()
    x = np.zeros((1, 3, 224, 224), np.float32)
    header = int.from_bytes(original[:8], "little") + 8
    for i in range(60):
        data = bytearray(original)
        # Half the flips in the header (structure), half anywhere (mostly weights).
        limit = header if i % 2 == 0 else len(data)
        for pos in rng.integers(0, limit, size=int(rng.integers(1, 4))):
            data[pos] ^= int(rng.integers(1, 256))
        path = tmp_path / f"m{i}.lvt"
        path.write_bytes(bytes(data))
        for verify in (False, True):
            try:
                y = levit.Model(path, verify=verify)(x)
            except (ValueError, OSError, MemoryError):
                continue
            assert y.shape[0] == 1
    image = (IMAGES / "coffee_420.jpg").read_bytes()
    for i in range(60):
        data = bytearray(image if i % 2 else rng.integers(0, 256, 512, dtype=np.uint8).tobytes())
        for pos in rng.integers(0, len(data), size=8):
            data[pos] ^= 0xFF
        try:
            assert levit.preprocess(bytes(data)).shape == (3, 224, 224)
        except (ValueError, MemoryError):
            pass
