//! Everything that can be wrong with a weight file, as values.

use std::path::PathBuf;

use crate::Dtype;

/// Why a weight file was refused. Every variant names what and where.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The file could not be opened or read.
    #[error("cannot read weight file {}: {}", .path.display(), os_reason(.source))]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The path is a directory or another non-regular file.
    #[error("{path} is not a regular file")]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// The container itself (safetensors header, offsets) is malformed.
    #[error("malformed weight file: {0}")]
    Container(String),
    /// The file is a safetensors file but not one written by `levit-weights`.
    #[error("not a levit-rs weight file: {0} (convert checkpoints with `levit-weights convert`)")]
    NotLevit(String),
    /// The file was written by a newer (or unknown) format version.
    #[error("weight file format version {found} is not supported (this build reads versions {} to {supported}); re-convert the checkpoint with a matching levit-weights", crate::MIN_FORMAT_VERSION)]
    UnsupportedVersion {
        /// Version in the file.
        found: String,
        /// The newest version this build reads (it reads every version from
        /// [`crate::MIN_FORMAT_VERSION`] to this one).
        supported: u32,
    },
    /// A metadata entry is missing or unreadable.
    #[error("weight file metadata `{key}`: {reason}")]
    Metadata {
        /// Metadata key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A tensor's dtype is not one a levit-rs file stores (F32, BF16, I8, I32).
    #[error("tensor `{tensor}` has dtype {dtype}, expected F32, BF16, I8 or I32")]
    Dtype {
        /// Tensor name.
        tensor: String,
        /// Dtype in the file, as spelled there.
        dtype: String,
    },
    /// A tensor's dtype is a known one that the file's format version does not allow
    /// (version 1 stores only F32).
    #[error("tensor `{tensor}` has dtype {dtype}, which format version {version} does not allow (version 1 stores only F32; BF16, I8 and I32 need version 2)")]
    DtypeVersion {
        /// Tensor name.
        tensor: String,
        /// Dtype in the file.
        dtype: Dtype,
        /// The file's format version.
        version: u32,
    },
    /// A tensor's byte span does not match its shape and dtype (the header lies about
    /// one of them).
    #[error("malformed weight file: tensor `{tensor}` ({dtype}, shape {shape:?}) needs {expected} bytes but its data_offsets span {found}{}", size_note(*.dtype, *.found))]
    TensorSize {
        /// Tensor name.
        tensor: String,
        /// Dtype in the header.
        dtype: Dtype,
        /// Shape in the header.
        shape: Vec<usize>,
        /// `product(shape) * dtype.size()`.
        expected: usize,
        /// `end - begin` of its data_offsets.
        found: usize,
    },
    /// A tensor's byte size is not a multiple of 64 (the format pads every tensor so
    /// that the next one starts aligned).
    #[error("tensor `{tensor}` is {bytes} bytes long, not a multiple of 64 (every tensor is padded to whole 64-byte blocks)")]
    Unpadded {
        /// Tensor name.
        tensor: String,
        /// Its byte size.
        bytes: usize,
    },
    /// A tensor does not start on a 64-byte boundary.
    #[error("tensor `{tensor}` starts at file offset {offset}, which is not 64-byte aligned")]
    Misaligned {
        /// Tensor name.
        tensor: String,
        /// Absolute byte offset.
        offset: usize,
    },
    /// The config checksum does not match.
    #[error("model config is corrupted: CRC-32 {actual:08x}, header says {expected:08x}")]
    ConfigChecksum {
        /// Stored CRC.
        expected: u32,
        /// Computed CRC.
        actual: u32,
    },
    /// A tensor has no checksum or a checksum names an unknown tensor.
    #[error("checksum table: {0}")]
    ChecksumTable(String),
    /// A tensor's bytes do not match its checksum.
    #[error("tensor `{tensor}` is corrupted: CRC-32 {actual:08x}, header says {expected:08x}")]
    Checksum {
        /// Tensor name.
        tensor: String,
        /// Stored CRC.
        expected: u32,
        /// Computed CRC.
        actual: u32,
    },
}

impl FormatError {
    pub(crate) fn metadata(key: &str, reason: impl Into<String>) -> Self {
        FormatError::Metadata {
            key: key.to_string(),
            reason: reason.into(),
        }
    }
}

fn size_note(dtype: Dtype, found: usize) -> String {
    if found.is_multiple_of(dtype.size()) {
        String::new()
    } else {
        format!(
            " (not a whole number of {}-byte {dtype} elements)",
            dtype.size()
        )
    }
}

/// An OS error as levit words it: lowercase, without Rust's "(os error N)" suffix
/// ("no such file or directory"), so every message about a file reads the same.
pub fn os_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error ").next().unwrap_or_default();
    let mut chars = text.chars();
    chars
        .next()
        .map_or_else(String::new, |c| c.to_lowercase().chain(chars).collect())
}
