//! `levit._levit`: the native half of the Python package `levit` (the pure-Python
//! half, `python/levit/`, re-exports it with docstrings, `convert` and `classify`).
//!
//! Files: `model.rs` holds `levit.Model` (one loaded model, a pool of engines, numpy in
//! and out), `input.rs` how an array argument becomes the engine's `&[f32]` (in place
//! when it can), `images.rs` preprocessing and top-k, `errors.rs` which Python
//! exception each engine error becomes.

use pyo3::prelude::*;
use pyo3::types::PyTuple;

mod errors;
mod images;
mod input;
mod model;

#[pymodule]
fn _levit(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("FormatError", py.get_type::<errors::FormatError>())?;
    m.add_class::<model::Model>()?;
    m.add_function(wrap_pyfunction!(images::preprocess_file, m)?)?;
    m.add_function(wrap_pyfunction!(images::preprocess_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(images::preprocess_files, m)?)?;
    m.add_function(wrap_pyfunction!(images::preprocess_rgb, m)?)?;
    m.add_function(wrap_pyfunction!(images::top_k, m)?)?;
    let names = (0..levit::imagenet::NUM_CLASSES).map(|c| levit::imagenet::name(c).unwrap_or(""));
    m.add("IMAGENET_CLASSES", PyTuple::new(py, names)?)?;
    let synsets =
        (0..levit::imagenet::NUM_CLASSES).map(|c| levit::imagenet::synset(c).unwrap_or(""));
    m.add("IMAGENET_SYNSETS", PyTuple::new(py, synsets)?)?;
    m.add("MAX_THREADS", levit::MAX_THREADS)?;
    m.add(
        "SUPPORTED_ISAS",
        PyTuple::new(py, levit::Isa::supported().iter().map(|i| i.name()))?,
    )?;
    Ok(())
}
