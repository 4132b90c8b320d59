"""How arrays reach the engine: C-contiguous float32 is read in place (the engine runs
on the array's own buffer), anything floating is converted once, the rest refused."""

from __future__ import annotations

import numpy as np
import pytest

import levit
from conftest import bits


def test_c_contiguous_float32_is_read_in_place(tiny_model, batch4):
    model = levit.Model(tiny_model)
    assert batch4.flags.c_contiguous and batch4.dtype == np.float32
    model(batch4)
    assert model._last_input_address() == batch4.ctypes.data
    one = np.ascontiguousarray(batch4[2])
    model.infer(one)
    assert model._last_input_address() == one.ctypes.data
    # A read-only array (e.g. np.load(mmap_mode="r"), a Ray block) is read in place too.
    frozen = batch4.copy()
    frozen.flags.writeable = False
    model(frozen)
    assert model._last_input_address() == frozen.ctypes.data


@pytest.mark.parametrize(
    "make",
    [
        lambda x: x.astype(np.float64),
        lambda x: x.astype(">f4"),
        lambda x: np.asfortranarray(x),
        lambda x: np.repeat(x, 2, axis=3)[:, :, :, ::2],
    ],
    ids=["float64", "big-endian", "fortran", "strided"],
)
def test_other_float_layouts_are_converted_once(make, tiny_model, batch4):
    model = levit.Model(tiny_model)
    ref = model(batch4)
    x = make(batch4)
    y = model(x)
    assert model._last_input_address() != x.ctypes.data
    expect = model(np.ascontiguousarray(x, dtype=np.float32))
    assert np.array_equal(bits(y), bits(expect))
    if x.dtype == np.float32 or x.dtype == np.dtype(">f4"):
        assert np.array_equal(bits(y), bits(ref))


def test_shapes(tiny_model, batch4):
    model = levit.Model(tiny_model)
    assert model(batch4[0]).shape == (1, model.num_classes)
    empty = model(np.zeros((0, *model.input_shape), np.float32))
    assert empty.shape == (0, model.num_classes) and empty.dtype == np.float32


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((3, 224, 223), np.float32), "expected [3, 224, 224]"),
        (np.zeros((2, 1, 224, 224), np.float32), "shape [2, 1, 224, 224]"),
        (np.zeros((224, 224), np.float32), "shape [224, 224]"),
        (np.zeros((1, 1, 3, 224, 224), np.float32), "shape"),
        (np.zeros((3, 224, 224), np.int64), "dtype int64"),
        (np.zeros((3, 224, 224), np.complex64), "dtype complex64"),
        (np.zeros((3, 224, 224), bool), "dtype bool"),
    ],
)
def test_bad_arrays_raise_value_error(bad, message, tiny_model):
    with pytest.raises(ValueError, match=None) as e:
        levit.Model(tiny_model)(bad)
    assert message in str(e.value)


@pytest.mark.parametrize("bad", [[1.0, 2.0], None, "x", 3.0, b"bytes"])
def test_non_arrays_raise_type_error(bad, tiny_model):
    with pytest.raises(TypeError, match="numpy.ndarray"):
        levit.Model(tiny_model)(bad)


def test_non_finite_inputs_do_not_crash(tiny_model, batch4):
    model = levit.Model(tiny_model)
    for value in (np.nan, np.inf, -np.inf, 3e38):
        y = model(np.full_like(batch4, value))
        assert y.shape == (4, model.num_classes)
    with pytest.raises(ValueError, match="not a finite number"):
        levit.top_k(model(np.full_like(batch4[0], np.nan))[0])
