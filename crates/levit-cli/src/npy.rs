//! Reading and writing f32 `.npy` tensors with clear errors.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use anyhow::{bail, Context, Result};
use npyz::WriterBuilder;

/// A dense f32 tensor read from `.npy`: C-order data and its shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Row-major data.
    pub data: Vec<f32>,
}

/// Reads a little-endian f32, C-order `.npy` file.
pub fn read_f32(path: &Path) -> Result<Tensor> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let npy = npyz::NpyFile::new(BufReader::new(file))
        .with_context(|| format!("{} is not a valid .npy file", path.display()))?;
    let descr = npy.header().dtype().descr().trim_matches('\'').to_string();
    if !matches!(descr.as_str(), "<f4" | "=f4") {
        bail!(
            "{}: dtype is {descr}, expected float32 (<f4); convert with x.astype(np.float32)",
            path.display()
        );
    }
    if npy.order() != npyz::Order::C {
        bail!(
            "{}: Fortran-ordered arrays are not supported; save a C-contiguous array",
            path.display()
        );
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let data: Vec<f32> = npy
        .into_vec()
        .with_context(|| format!("{}: truncated or unreadable data", path.display()))?;
    if data.len() != shape.iter().product::<usize>() {
        bail!(
            "{}: data length does not match shape {shape:?}",
            path.display()
        );
    }
    Ok(Tensor { shape, data })
}

/// Writes `data` with `shape` as a little-endian f32 C-order `.npy` file.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(BufWriter::new(file))
        .begin_nd()
        .with_context(|| format!("cannot write {}", path.display()))?;
    writer
        .extend(data.iter().copied())
        .with_context(|| format!("cannot write {}", path.display()))?;
    writer
        .finish()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
