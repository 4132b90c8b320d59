//! The one error type of image opening, decoding and preprocessing.

use std::path::PathBuf;

/// Why an image could not be opened or preprocessed.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    /// The file could not be opened or read.
    #[error("cannot read image {}: {}", .path.display(), os_reason(.source))]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The path names a directory, FIFO, device or socket, not an image file.
    #[error("cannot read image {}: it is {kind}, not a regular file", .path.display())]
    NotAFile {
        /// The file.
        path: PathBuf,
        /// What it is ("a FIFO", "a character device", ...).
        kind: &'static str,
    },
    /// The file is larger than any image within the pixel limit can be
    /// ([`DecodeOptions::max_file_bytes`](crate::DecodeOptions::max_file_bytes)).
    #[error("cannot read image {}: the file is {bytes} bytes, more than the limit of {limit} bytes for an image", .path.display())]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size (or what was read of it).
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// Memory for the file's bytes could not be allocated.
    #[error("cannot read image {}: out of memory for its {bytes} bytes", .path.display())]
    OutOfMemory {
        /// The file.
        path: PathBuf,
        /// Bytes asked for.
        bytes: u64,
    },
    /// Memory for a decoded image's pixels could not be allocated.
    #[error("out of memory for a {bytes}-byte pixel buffer")]
    PixelsOutOfMemory {
        /// Bytes asked for.
        bytes: u64,
    },
    /// The bytes are not a decodable JPEG, PNG or WebP image, or declare more than
    /// [`MAX_IMAGE_PIXELS`](crate::MAX_IMAGE_PIXELS) pixels.
    #[error("cannot decode image {}: {}", .path.display(), lower_first(&.source.to_string()))]
    Decode {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        source: image::ImageError,
    },
    /// The image has a zero width or height.
    #[error("image is empty ({width}x{height})")]
    Empty {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// The image is so elongated that the resize would make its longer side more than
    /// `i32::MAX` pixels (more than Pillow can resize to: timm fails on it too).
    #[error(
        "image {width}x{height} is too elongated: resizing its shorter side to {size} would \
         make the longer one {long} pixels"
    )]
    TooElongated {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// The resized shorter side ([`Preprocess::resize_size`](crate::Preprocess::resize_size)).
        size: u32,
        /// The longer side it implies.
        long: u64,
    },
    /// The settings are out of range.
    #[error("invalid preprocessing settings: {0}")]
    Settings(String),
    /// The caller's buffer has the wrong length.
    #[error("output buffer has {found} floats, expected {expected} (3 x {size} x {size})")]
    OutputLength {
        /// Floats needed.
        expected: usize,
        /// Floats given.
        found: usize,
        /// Crop side.
        size: u32,
    },
}

/// An OS error as levit words it: lowercase, without Rust's "(os error N)" suffix
/// ("no such file or directory"), so every message about a file reads the same.
pub(crate) fn os_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    lower_first(text.split(" (os error ").next().unwrap_or_default())
}

/// A message continued after a colon: its first letter in lowercase (the decoders'
/// messages start with a capital, as a sentence would).
pub(crate) fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map_or_else(String::new, |c| c.to_lowercase().chain(chars).collect())
}
