//! The levit-rs weight file (`.lvt`): a safetensors file whose tensors are 64-byte
//! aligned, f32, already packed for the kernels, with a magic, a format version, the
//! model config and CRC-32 checksums in its metadata. See `docs/weight-format.md`.
//!
//! This crate knows bytes, not LeViT: it validates the container (bounds, alignment,
//! dtypes, checksums) and hands out `&[f32]` views into the mapped or owned bytes. The
//! graph crate decides which tensors and shapes a config needs.

mod bytes;
mod error;
mod file;
mod writer;

pub use bytes::LoadMode;
use bytes::StorageBytes;
pub use error::FormatError;
pub use file::{LoadOptions, TensorView, WeightFile};
pub use writer::{write_weight_file, TensorData};

/// The `format` metadata value that marks a levit-rs file.
pub const MAGIC: &str = "levit-rs";
/// The newest (and only) format version this crate reads and the tool writes.
pub const FORMAT_VERSION: u32 = 1;
/// Every tensor's data starts at a multiple of this many bytes in the file.
pub const ALIGNMENT: usize = 64;
