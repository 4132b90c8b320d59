//! How an array argument becomes the engine's input: a C-contiguous float32 array is
//! read in place (its own buffer is the `&[f32]` the engine runs on); any other real
//! floating array (float16/float64, another byte order, strided) is converted once by
//! `numpy.ascontiguousarray(x, dtype=float32)`; everything else is refused.

use numpy::{
    PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The images of one call, borrowed from a float32 C-contiguous array.
pub struct Images<'py> {
    /// The array whose buffer is the input (the caller's own, or the one conversion).
    pub array: PyReadonlyArrayDyn<'py, f32>,
    /// Images in it (`N` of `[N, C, H, W]`, 1 for `[C, H, W]`; may be 0).
    pub count: usize,
}

/// `x` as `[N, channels, size, size]` float32 images, read in place when it already is
/// one C-contiguous float32 array of that shape.
pub fn images<'py>(x: &Bound<'py, PyAny>, channels: usize, size: usize) -> PyResult<Images<'py>> {
    let py = x.py();
    let array = x.cast::<PyUntypedArray>().map_err(|_| {
        let kind = x
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default();
        PyTypeError::new_err(format!(
            "expected a numpy.ndarray of float32 images, got {kind} (use numpy.asarray(x, dtype=numpy.float32))"
        ))
    })?;
    let shape = array.shape().to_vec();
    let expected = format!("[{channels}, {size}, {size}] or [N, {channels}, {size}, {size}]");
    let count = match shape.as_slice() {
        [c, h, w] if (*c, *h, *w) == (channels, size, size) => 1,
        [n, c, h, w] if (*c, *h, *w) == (channels, size, size) => *n,
        _ => {
            return Err(PyValueError::new_err(format!(
                "input has shape {shape:?}, expected {expected} (CHW, normalized: see levit.preprocess)"
            )))
        }
    };
    let dtype = array.dtype();
    let float32 = numpy::dtype::<f32>(py);
    let converted;
    let typed = if dtype.is_equiv_to(&float32) && array.is_c_contiguous() {
        x.cast::<PyArrayDyn<f32>>()?
    } else if dtype.kind() == b'f' {
        let kwargs = PyDict::new(py);
        kwargs.set_item("dtype", float32)?;
        converted = PyModule::import(py, "numpy")?
            .getattr("ascontiguousarray")?
            .call((x,), Some(&kwargs))?;
        converted.cast::<PyArrayDyn<f32>>()?
    } else {
        return Err(PyValueError::new_err(format!(
            "input has dtype {}, expected float32 (or another floating type, converted once)",
            dtype.str()?
        )));
    };
    let array = typed
        .try_readonly()
        .map_err(|e| PyValueError::new_err(format!("input array cannot be read: {e}")))?;
    Ok(Images { array, count })
}
