//! Pixel buffers allocated fallibly: `DynamicImage::from_decoder` allocates with
//! `vec![]`, which aborts the whole process when the allocation fails (under a memory
//! limit, say); here a buffer the process cannot get is an error for that one image.

use image::error::{LimitError, LimitErrorKind};
use image::{ColorType, DynamicImage, ImageBuffer, ImageDecoder, ImageError, ImageFormat};

/// A zeroed `Vec<T>` of `len` elements, or an error if it cannot be allocated.
pub(crate) fn zeroed<T: Clone + Default>(len: u64) -> Result<Vec<T>, ImageError> {
    let out_of_memory =
        || ImageError::Limits(LimitError::from_kind(LimitErrorKind::InsufficientMemory));
    let len = usize::try_from(len).map_err(|_| out_of_memory())?;
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| out_of_memory())?;
    v.resize(len, T::default());
    Ok(v)
}

/// Decodes every pixel of `decoder` into a buffer of its own color type.
pub(crate) fn decode_pixels(
    decoder: impl ImageDecoder,
    format: Option<ImageFormat>,
) -> Result<DynamicImage, ImageError> {
    let (w, h) = decoder.dimensions();
    let bytes = decoder.total_bytes();
    let color = decoder.color_type();
    let unsupported = || {
        let hint = format.map_or(image::error::ImageFormatHint::Unknown, Into::into);
        ImageError::Decoding(image::error::DecodingError::new(
            hint,
            format!("unsupported pixel layout {color:?}"),
        ))
    };
    // 8-bit layouts: the buffer is the image.
    macro_rules! bytes8 {
        ($variant:ident) => {{
            let mut buf: Vec<u8> = zeroed(bytes)?;
            decoder.read_image(&mut buf)?;
            DynamicImage::$variant(ImageBuffer::from_raw(w, h, buf).ok_or_else(unsupported)?)
        }};
    }
    // Wider layouts: decoded straight into the typed buffer, seen as bytes (any
    // `[u16]` or `[f32]` is a valid `[u8]`; the decoder writes native-endian samples).
    macro_rules! wide {
        ($variant:ident, $t:ty) => {{
            let mut buf: Vec<$t> = zeroed(bytes / std::mem::size_of::<$t>() as u64)?;
            decoder.read_image(bytemuck::cast_slice_mut(&mut buf))?;
            DynamicImage::$variant(ImageBuffer::from_raw(w, h, buf).ok_or_else(unsupported)?)
        }};
    }
    Ok(match color {
        ColorType::L8 => bytes8!(ImageLuma8),
        ColorType::La8 => bytes8!(ImageLumaA8),
        ColorType::Rgb8 => bytes8!(ImageRgb8),
        ColorType::Rgba8 => bytes8!(ImageRgba8),
        ColorType::L16 => wide!(ImageLuma16, u16),
        ColorType::La16 => wide!(ImageLumaA16, u16),
        ColorType::Rgb16 => wide!(ImageRgb16, u16),
        ColorType::Rgba16 => wide!(ImageRgba16, u16),
        ColorType::Rgb32F => wide!(ImageRgb32F, f32),
        ColorType::Rgba32F => wide!(ImageRgba32F, f32),
        _ => return Err(unsupported()),
    })
}
