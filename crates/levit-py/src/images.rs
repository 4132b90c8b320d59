//! Images in, tensors out: timm's eval transform (the Rust preprocessing, bit-exact
//! with timm + PIL) from a file, encoded bytes or RGB pixels, and the top-k classes of
//! logits. The GIL is released while decoding and resizing.

use std::path::{Path, PathBuf};

use levit::preprocess::image::{DynamicImage, RgbImage};
use levit::preprocess::{
    decode_image_with, read_image_file, DecodeOptions, Preprocess, PreprocessError,
};
use numpy::{PyArray3, PyArray4, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::errors::{from_preprocess, to_py};

/// The eval transform for `img_size` with timm's or a given crop fraction, checked.
pub fn settings(img_size: u32, crop_pct: Option<f64>) -> PyResult<Preprocess> {
    let mut p = Preprocess::for_img_size(img_size);
    if let Some(c) = crop_pct {
        p.crop_pct = c;
    }
    p.validate().map_err(from_preprocess)?;
    Ok(p)
}

/// Reads and decodes an image file as PIL does (no EXIF rotation).
pub fn open(path: &Path) -> Result<DynamicImage, PreprocessError> {
    let options = DecodeOptions::default();
    let bytes = read_image_file(path, &options)?;
    decode(&bytes, path, &options)
}

fn decode(
    bytes: &[u8],
    path: &Path,
    options: &DecodeOptions,
) -> Result<DynamicImage, PreprocessError> {
    decode_image_with(bytes, options).map_err(|source| PreprocessError::Decode {
        path: path.to_path_buf(),
        source,
    })
}

/// Runs `make` (an image source) and the transform without the GIL into a new
/// `[3, S, S]` array.
fn tensor<'py>(
    py: Python<'py>,
    preprocess: Preprocess,
    make: impl FnOnce() -> Result<DynamicImage, PreprocessError> + Send,
) -> PyResult<Bound<'py, PyArray3<f32>>> {
    let s = preprocess.img_size as usize;
    let out = PyArray3::<f32>::zeros(py, [3, s, s], false);
    {
        let mut guard = out.readwrite();
        let buf = guard.as_slice_mut().expect("a new array is contiguous");
        py.detach(|| preprocess.run_into(&make()?, buf))
            .map_err(from_preprocess)?;
    }
    Ok(out)
}

/// `_preprocess_file(path, img_size=224, crop_pct=None)`: timm's eval tensor of a file.
#[pyfunction]
#[pyo3(name = "_preprocess_file", signature = (path, img_size=224, crop_pct=None))]
pub fn preprocess_file<'py>(
    py: Python<'py>,
    path: PathBuf,
    img_size: u32,
    crop_pct: Option<f64>,
) -> PyResult<Bound<'py, PyArray3<f32>>> {
    tensor(py, settings(img_size, crop_pct)?, || open(&path))
}

/// `_preprocess_files(paths, img_size=224, crop_pct=None, threads=1)`: the tensors of
/// several files stacked into one new `[N, 3, S, S]` array, ready for `Model(x)` as a
/// batch: one call and one GIL release for the whole batch (a Ray `map_batches` actor
/// or a data loader otherwise pays Python's per-image call, `np.stack` and a copy of
/// every tensor). `threads` > 1 splits the files over that many scoped threads, each
/// writing its own images' slices of the output; the tensors do not depend on it. The
/// first file that fails (in path order) is the error, naming its path.
#[pyfunction]
#[pyo3(name = "_preprocess_files", signature = (paths, img_size=224, crop_pct=None, threads=1))]
pub fn preprocess_files<'py>(
    py: Python<'py>,
    paths: Vec<PathBuf>,
    img_size: u32,
    crop_pct: Option<f64>,
    threads: usize,
) -> PyResult<Bound<'py, PyArray4<f32>>> {
    let preprocess = settings(img_size, crop_pct)?;
    if threads == 0 || threads > levit::MAX_THREADS {
        return Err(PyValueError::new_err(format!(
            "threads must be in 1..={}, got {threads}",
            levit::MAX_THREADS
        )));
    }
    let s = preprocess.img_size as usize;
    let per_image = preprocess.output_len();
    let out = PyArray4::<f32>::zeros(py, [paths.len(), 3, s, s], false);
    {
        let mut guard = out.readwrite();
        let buf = guard.as_slice_mut().expect("a new array is contiguous");
        py.detach(|| run_files(&preprocess, &paths, buf, per_image, threads))
            .map_err(from_preprocess)?;
    }
    Ok(out)
}

/// Preprocesses `paths[i]` into `buf[i * per_image..][..per_image]`, on `threads`
/// threads (contiguous runs of files each); the error of the first failing file.
fn run_files(
    preprocess: &Preprocess,
    paths: &[PathBuf],
    buf: &mut [f32],
    per_image: usize,
    threads: usize,
) -> Result<(), PreprocessError> {
    let one = |path: &PathBuf, dst: &mut [f32]| preprocess.run_into(&open(path)?, dst);
    let run = |paths: &[PathBuf], buf: &mut [f32]| -> Result<(), PreprocessError> {
        paths
            .iter()
            .zip(buf.chunks_exact_mut(per_image))
            .try_for_each(|(p, dst)| one(p, dst))
    };
    let threads = threads.min(paths.len()).max(1);
    if threads == 1 {
        return run(paths, buf);
    }
    let per_thread = paths.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = paths
            .chunks(per_thread)
            .zip(buf.chunks_mut(per_thread * per_image))
            .map(|(p, b)| scope.spawn(move || run(p, b)))
            .collect();
        // Joined in path order: the first failing chunk's error is the first file's.
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect::<Result<Vec<()>, _>>()
            .map(|_| ())
    })
}

/// `_preprocess_bytes(data, img_size=224, crop_pct=None)`: the same from an encoded
/// JPEG/PNG/WebP file held in memory.
#[pyfunction]
#[pyo3(name = "_preprocess_bytes", signature = (data, img_size=224, crop_pct=None))]
pub fn preprocess_bytes<'py>(
    py: Python<'py>,
    data: &[u8],
    img_size: u32,
    crop_pct: Option<f64>,
) -> PyResult<Bound<'py, PyArray3<f32>>> {
    let options = DecodeOptions::default();
    tensor(py, settings(img_size, crop_pct)?, || {
        decode(data, Path::new("<bytes>"), &options)
    })
}

/// `_preprocess_rgb(pixels, width, height, img_size=224, crop_pct=None)`: the same from
/// 8-bit RGB pixels, row-major (what PIL's `image.convert("RGB").tobytes()` gives).
#[pyfunction]
#[pyo3(name = "_preprocess_rgb", signature = (pixels, width, height, img_size=224, crop_pct=None))]
pub fn preprocess_rgb<'py>(
    py: Python<'py>,
    pixels: &[u8],
    width: u32,
    height: u32,
    img_size: u32,
    crop_pct: Option<f64>,
) -> PyResult<Bound<'py, PyArray3<f32>>> {
    let need = u64::from(width) * u64::from(height) * 3;
    if need != pixels.len() as u64 {
        return Err(PyValueError::new_err(format!(
            "{} bytes of pixels, but a {width}x{height} RGB image has {need}",
            pixels.len()
        )));
    }
    let preprocess = settings(img_size, crop_pct)?;
    tensor(py, preprocess, || {
        let rgb = RgbImage::from_raw(width, height, pixels.to_vec()).expect("length checked");
        Ok(DynamicImage::ImageRgb8(rgb))
    })
}

/// One ranked class as a dict: what `levit classify --json` prints per class.
pub fn prediction<'py>(
    py: Python<'py>,
    p: &levit::imagenet::Prediction,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("class", p.class)?;
    d.set_item("label", p.label())?;
    d.set_item("synset", p.synset())?;
    d.set_item("probability", p.probability)?;
    d.set_item("logit", p.logit)?;
    Ok(d)
}

/// The top `k` of one row of logits, as dicts.
pub fn ranked<'py>(py: Python<'py>, logits: &[f32], k: usize) -> PyResult<Bound<'py, PyList>> {
    let top = levit::imagenet::top_k(logits, k).map_err(to_py)?;
    let rows = top
        .iter()
        .map(|p| prediction(py, p))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, rows)
}

/// `top_k(logits, k=5)`: softmax and the `k` best classes of `[classes]` logits (a list
/// of dicts) or of `[N, classes]` logits (a list of such lists), as the engine ranks
/// them (ties: lower class first; NaN or infinite logits are a ValueError).
#[pyfunction]
#[pyo3(signature = (logits, k=5))]
pub fn top_k<'py>(
    py: Python<'py>,
    logits: PyReadonlyArrayDyn<'py, f32>,
    k: usize,
) -> PyResult<Bound<'py, PyList>> {
    let shape = logits.shape().to_vec();
    let owned;
    let values = match logits.as_slice() {
        Ok(s) => s,
        Err(_) => {
            owned = logits.as_array().iter().copied().collect::<Vec<f32>>();
            &owned[..]
        }
    };
    match shape.as_slice() {
        [_] => ranked(py, values, k),
        [n, classes] if *classes > 0 => {
            let rows = values
                .chunks_exact(*classes)
                .take(*n)
                .map(|row| ranked(py, row, k))
                .collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, rows)
        }
        [_, _] => PyList::new(py, Vec::<Bound<PyList>>::new()),
        _ => Err(PyValueError::new_err(format!(
            "logits have shape {shape:?}, expected [classes] or [N, classes]"
        ))),
    }
}
