//! Opening and decoding image files as PIL does (`Image.open`), within a pixel limit.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader};

use crate::{jpeg, png_palette, PreprocessError};

/// Largest image (`width * height`) [`open_image`] and [`decode_image`] accept: Pillow's
/// `Image.MAX_IMAGE_PIXELS` (2³⁰ / 12, about 89.5 Mpx, 9459 x 9459), above which PIL
/// warns of a decompression bomb. A header declaring more is an error before anything
/// is allocated for the pixels, so a small hostile file cannot make the decoders
/// allocate without bound; [`decode_image_with_limit`] takes another limit.
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

/// Opens and decodes an image file, detecting the format from its bytes (JPEG, PNG,
/// WebP), ignoring EXIF orientation as timm does (PIL's `Image.open` never rotates).
///
/// ```no_run
/// let img = levit_image::open_image("cat.jpg")?;
/// let x = levit_image::transform(&img)?; // [3, 224, 224], normalized
/// # Ok::<(), levit_image::PreprocessError>(())
/// ```
pub fn open_image(path: impl AsRef<Path>) -> Result<DynamicImage, PreprocessError> {
    open_image_with(path, Orientation::Ignore)
}

/// [`open_image`] with a choice about EXIF orientation.
///
/// JPEGs are decoded by this crate's own decoder, which reproduces libjpeg-turbo (the
/// library PIL uses) bit for bit: its integer IDCT, its "fancy" chroma upsampling and
/// its YCbCr tables; other decoders differ by a few levels per pixel, enough to move
/// the logits well past the golden tolerance. JPEG features it leaves out
/// (arithmetic coding, 12-bit, lossless, CMYK) and PNG/WebP go through the `image`
/// crate, whose PNG and WebP output equals PIL's. Images of more than
/// [`MAX_IMAGE_PIXELS`] pixels are refused from their header.
pub fn open_image_with(
    path: impl AsRef<Path>,
    orientation: Orientation,
) -> Result<DynamicImage, PreprocessError> {
    let path = path.as_ref();
    let io = |source| PreprocessError::Io {
        path: path.to_path_buf(),
        source,
    };
    if std::fs::metadata(path).map_err(io)?.is_dir() {
        return Err(io(std::io::Error::other("is a directory")));
    }
    let bytes = std::fs::read(path).map_err(io)?;
    decode_image(&bytes, orientation).map_err(|source| PreprocessError::Decode {
        path: path.to_path_buf(),
        source,
    })
}

/// Decodes an image file held in memory (JPEG, PNG or WebP, detected from the bytes);
/// see [`open_image_with`]. Images of more than [`MAX_IMAGE_PIXELS`] pixels are refused
/// from their header, before their pixels are allocated or decoded.
pub fn decode_image(
    bytes: &[u8],
    orientation: Orientation,
) -> Result<DynamicImage, image::ImageError> {
    decode_image_with_limit(bytes, orientation, MAX_IMAGE_PIXELS)
}

/// [`decode_image`] with another limit on `width * height`: an image whose header
/// declares more pixels is an error (a decoding error of its format, naming its size
/// and the limit), checked before its pixels are allocated or decoded.
pub fn decode_image_with_limit(
    bytes: &[u8],
    orientation: Orientation,
    max_pixels: u64,
) -> Result<DynamicImage, image::ImageError> {
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
            // Features this decoder leaves out, and streams it finds corrupt: the
            // `image` crate's decoder has its say.
            Ok(None) | Err(jpeg::Error::Corrupt(_)) => {}
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
    let mut img = DynamicImage::from_decoder(decoder)?;
    if let Some(o) = orient {
        img.apply_orientation(o);
    }
    Ok(img)
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
