//! Everything that can be wrong with a weight file, as values.

use std::path::PathBuf;

/// Why a weight file was refused. Every variant names what and where.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The file could not be opened or read.
    #[error("cannot read weight file {path}: {source}")]
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
    #[error("weight file format version {found} is not supported (this build reads version {supported}); re-convert the checkpoint with a matching levit-weights")]
    UnsupportedVersion {
        /// Version in the file.
        found: String,
        /// Version this build reads.
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
    /// A tensor is not f32.
    #[error("tensor `{tensor}` has dtype {dtype}, expected F32")]
    Dtype {
        /// Tensor name.
        tensor: String,
        /// Dtype in the file.
        dtype: String,
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
