//! Opening and decoding image files as PIL does (`Image.open`), within a pixel limit.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader};

use crate::{jpeg, png_palette, PreprocessError};

/// Largest image (`width * height`) [`open_image`] and [`decode_image`] accept: Pillow's
/// `Image.MAX_IMAGE_PIXELS` (2³⁰ / 12, about 89.5 Mpx, 9459 x 9459), above which PIL
/// warns of a decompression bomb. A header declaring more is an error before anything
/// is allocated for the pixels, so a small hostile file cannot make the decoders
/// allocate without bound; [`DecodeOptions::max_pixels`] sets another limit.
pub const MAX_IMAGE_PIXELS: u64 = 89_478_485;

/// What to do with a JPEG's EXIF `Orientation` tag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Orientation {
    /// Ignore it, as `PIL.Image.open` and timm do (default: matches the model's training
    /// and evaluation pipeline).
    #[default]
    Ignore,
    /// Rotate/flip the pixels as a photo viewer would (`PIL.ImageOps.exif_transpose`).
    Apply,
}

/// How to read and decode an image. [`DecodeOptions::default`] is PIL's behaviour (and
/// so timm's): EXIF orientation ignored, [`MAX_IMAGE_PIXELS`], truncated files refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeOptions {
    /// What to do with a JPEG's EXIF orientation.
    pub orientation: Orientation,
    /// Largest `width * height` accepted, checked on the header before any pixel is
    /// allocated.
    pub max_pixels: u64,
    /// Decode a JPEG whose data ends before its end-of-image marker, the missing part
    /// grey (PIL's `ImageFile.LOAD_TRUNCATED_IMAGES = True`). Off by default: PIL then
    /// raises "image file is truncated", so timm never sees such an image.
    pub allow_truncated: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            orientation: Orientation::Ignore,
            max_pixels: MAX_IMAGE_PIXELS,
            allow_truncated: false,
        }
    }
}

impl DecodeOptions {
    /// Largest image file read: the bytes an uncompressed image of `max_pixels` RGBA
    /// 16-bit pixels would need, plus 1 MiB of headers. No compressed image of an
    /// accepted size is larger, and the bound keeps a huge or endless file from being
    /// read into memory (89.5 Mpx: 717 MiB).
    pub fn max_file_bytes(&self) -> u64 {
        self.max_pixels.saturating_mul(8).saturating_add(1 << 20)
    }
}

/// Opens and decodes an image file, detecting the format from its bytes (JPEG, PNG,
/// WebP), with [`DecodeOptions::default`]: EXIF orientation ignored as timm does (PIL's
/// `Image.open` never rotates), truncated files refused as PIL refuses them.
///
/// ```no_run
/// let img = levit_image::open_image("cat.jpg")?;
/// let x = levit_image::transform(&img)?; // [3, 224, 224], normalized
/// # Ok::<(), levit_image::PreprocessError>(())
/// ```
pub fn open_image(path: impl AsRef<Path>) -> Result<DynamicImage, PreprocessError> {
    open_image_with(path, &DecodeOptions::default())
}

/// [`open_image`] with other [`DecodeOptions`].
///
/// JPEGs are decoded by this crate's own decoder, which reproduces libjpeg-turbo (the
/// library PIL uses) bit for bit: its integer IDCT, its "fancy" chroma upsampling and
/// its YCbCr tables; other decoders differ by a few levels per pixel, enough to move
/// the logits well past the golden tolerance. JPEG features it leaves out
/// (arithmetic coding, 12-bit, lossless, CMYK) and PNG/WebP go through the `image`
/// crate, whose PNG and WebP output equals PIL's. See [`read_image_file`] for what is
/// read and [`decode_image_with`] for what is decoded.
pub fn open_image_with(
    path: impl AsRef<Path>,
    options: &DecodeOptions,
) -> Result<DynamicImage, PreprocessError> {
    let path = path.as_ref();
    let bytes = read_image_file(path, options)?;
    decode_image_with(&bytes, options).map_err(|source| PreprocessError::Decode {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads an image file into memory, safely whatever the path names: it is opened
/// without blocking (a FIFO would otherwise wait forever for a writer), must be a
/// regular file once opened (links followed; a device such as `/dev/zero` or a FIFO is
/// [`PreprocessError::NotAFile`]), and may hold at most
/// [`DecodeOptions::max_file_bytes`] ([`PreprocessError::FileTooLarge`]). The buffer is
/// allocated fallibly: a file the process cannot hold is an error, not an abort.
pub fn read_image_file(path: &Path, options: &DecodeOptions) -> Result<Vec<u8>, PreprocessError> {
    use std::io::Read;
    let io = |source| PreprocessError::Io {
        path: path.to_path_buf(),
        source,
    };
    let (file, meta) = open_regular_file(path).map_err(|e| match e {
        OpenError::Io(source) => io(source),
        OpenError::NotAFile(kind) => PreprocessError::NotAFile {
            path: path.to_path_buf(),
            kind,
        },
    })?;
    let limit = options.max_file_bytes();
    let too_large = |bytes| PreprocessError::FileTooLarge {
        path: path.to_path_buf(),
        bytes,
        limit,
    };
    if meta.len() > limit {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(meta.len() as usize)
        .map_err(|_| PreprocessError::OutOfMemory {
            path: path.to_path_buf(),
            bytes: meta.len(),
        })?;
    // `take`: a file that grows while it is read still stops at the limit.
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Why [`open_regular_file`] refused a path.
#[derive(Debug)]
pub enum OpenError {
    /// Opening or `fstat` failed.
    Io(std::io::Error),
    /// The path names "a directory", "a FIFO", "a character device", ...
    NotAFile(&'static str),
}

/// Opens `path` for reading the way every input file of levit should be opened: without
/// blocking (`O_NONBLOCK`: a FIFO with no writer would otherwise block the open
/// forever), and only if the opened file is a regular file (links followed; decided on
/// the open file, so a path swapped between check and open cannot slip through).
/// Returns the file and its metadata (for its length).
pub fn open_regular_file(path: &Path) -> Result<(std::fs::File, std::fs::Metadata), OpenError> {
    let mut open = std::fs::OpenOptions::new();
    open.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        open.custom_flags(libc::O_NONBLOCK);
    }
    let file = open.open(path).map_err(OpenError::Io)?;
    let meta = file.metadata().map_err(OpenError::Io)?;
    if !meta.is_file() {
        return Err(OpenError::NotAFile(file_kind(&meta)));
    }
    Ok((file, meta))
}

/// "a directory", "a FIFO", "a character device", ...: what a non-regular file is.
fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    let kind = meta.file_type();
    if kind.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    "a special file"
}

/// Upper bound on the bytes one decode of a `width * height` image holds at its peak,
/// per pixel: the decoded pixels (up to 8 bytes: 16-bit RGBA), the 8-bit RGB copy (3)
/// and a JPEG's coefficient and colour planes (about 6 for 4:4:4, progressive). A
/// caller running several decodes at once can bound their memory with it.
pub const DECODE_BYTES_PER_PIXEL: u64 = 16;

/// `(width, height)` from an image file's header, without decoding it (`None` if the
/// format or header is not recognised): what a decode will cost, before paying it.
pub fn probe_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .ok()?
        .into_dimensions()
        .ok()
}

/// Decodes an image file held in memory (JPEG, PNG or WebP, detected from the bytes)
/// with [`DecodeOptions::default`] but the given orientation; see [`decode_image_with`].
pub fn decode_image(
    bytes: &[u8],
    orientation: Orientation,
) -> Result<DynamicImage, image::ImageError> {
    let options = DecodeOptions {
        orientation,
        ..DecodeOptions::default()
    };
    decode_image_with(bytes, &options)
}

/// Decodes an image file held in memory. An image whose header declares more than
/// `options.max_pixels` pixels is an error (a decoding error of its format, naming its
/// size and the limit), checked before its pixels are allocated or decoded; the pixel
/// buffer is allocated fallibly, so an image the process cannot hold is an error, not
/// an abort. A JPEG that ends before its end-of-image marker is "image file is
/// truncated" unless `options.allow_truncated`.
pub fn decode_image_with(
    bytes: &[u8],
    options: &DecodeOptions,
) -> Result<DynamicImage, image::ImageError> {
    let (orientation, max_pixels) = (options.orientation, options.max_pixels);
    let format = image::guess_format(bytes).ok();
    if format == Some(image::ImageFormat::Jpeg) {
        match jpeg::decode(bytes, max_pixels) {
            Ok(Some(mut img)) => {
                if orientation == Orientation::Apply {
                    let mut decoder = image::codecs::jpeg::JpegDecoder::new(Cursor::new(bytes))?;
                    img.apply_orientation(decoder.orientation()?);
                }
                return Ok(img);
            }
            Err(jpeg::Error::TooLarge { width, height }) => {
                return Err(too_large(format, width, height, max_pixels));
            }
            Err(jpeg::Error::Truncated) if !options.allow_truncated => {
                return Err(truncated());
            }
            // A JPEG feature this decoder leaves out: the other decoder must not be
            // handed a truncated stream either (it would pad it silently).
            Ok(None) if !options.allow_truncated && !has_end_marker(bytes) => {
                return Err(truncated());
            }
            // Features this decoder leaves out, streams it finds corrupt, and truncated
            // ones the caller accepts: the `image` crate's decoder has its say.
            Ok(None) | Err(jpeg::Error::Corrupt(_) | jpeg::Error::Truncated) => {}
        }
    }
    if format == Some(image::ImageFormat::Png) {
        if let Some(problem) = png_palette::palette_problem(bytes) {
            let hint = image::error::ImageFormatHint::Exact(image::ImageFormat::Png);
            return Err(image::ImageError::Decoding(
                image::error::DecodingError::new(hint, problem),
            ));
        }
    }
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format()?;
    let format = reader.format();
    let mut decoder = reader.into_decoder()?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(too_large(format, width, height, max_pixels));
    }
    let orient = match orientation {
        Orientation::Apply => Some(decoder.orientation()?),
        Orientation::Ignore => None,
    };
    let mut img = crate::fallible::decode_pixels(decoder, format)?;
    if let Some(o) = orient {
        img.apply_orientation(o);
    }
    Ok(img)
}

/// Whether a JPEG stream has an end-of-image marker (entropy-coded data cannot hold
/// `FF D9`: its `FF` bytes are stuffed).
fn has_end_marker(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|w| w == [0xFF, 0xD9])
}

fn truncated() -> image::ImageError {
    let hint = image::error::ImageFormatHint::Exact(image::ImageFormat::Jpeg);
    image::ImageError::Decoding(image::error::DecodingError::new(
        hint,
        "image file is truncated: the data ends before the end-of-image marker (PIL \
         refuses it too; accept it with `allow_truncated` / --allow-truncated)",
    ))
}

fn too_large(
    format: Option<image::ImageFormat>,
    width: u32,
    height: u32,
    max_pixels: u64,
) -> image::ImageError {
    let hint = format.map_or(image::error::ImageFormatHint::Unknown, Into::into);
    let message = format!(
        "the image is {width}x{height} ({} pixels), more than the limit of {max_pixels} pixels",
        u64::from(width) * u64::from(height)
    );
    image::ImageError::Decoding(image::error::DecodingError::new(hint, message))
}
