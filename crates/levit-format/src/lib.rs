//! The levit-rs weight file (`.lvt`): a safetensors file whose tensors are 64-byte
//! aligned, typed (F32; BF16, I8 and I32 from format version 2), already packed for the
//! kernels, with a magic, a format version, the model config and CRC-32 checksums in
//! its metadata. See `docs/weight-format.md`.
//!
//! This crate knows bytes, not LeViT: it validates the container (bounds, alignment,
//! dtypes, byte sizes, checksums) and hands out typed views (`&[f32]`, bf16 `&[u16]`,
//! `&[i8]`, `&[i32]`) into the mapped or owned bytes. The graph crate decides which tensors,
//! dtypes and shapes a config needs.

mod bytes;
mod dtype;
mod error;
mod file;
mod writer;

pub use bytes::LoadMode;
use bytes::StorageBytes;
pub use dtype::Dtype;
pub use error::{os_reason, FormatError};
pub use file::{LoadOptions, TensorView, WeightFile};
pub use writer::{write_weight_file, TensorBytes, TensorData};

/// The `format` metadata value that marks a levit-rs file.
pub const MAGIC: &str = "levit-rs";
/// The newest format version this crate reads (and writes when a tensor is not F32).
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format version this crate reads: version 1, all tensors F32 (what the
/// writers still produce for all-F32 files, byte for byte as before version 2).
pub const MIN_FORMAT_VERSION: u32 = 1;
/// Every tensor's data starts at a multiple of this many bytes in the file.
pub const ALIGNMENT: usize = 64;
