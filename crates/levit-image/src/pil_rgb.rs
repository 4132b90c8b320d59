//! Pillow's `convert('RGB')` for every pixel layout the decoders produce.

use image::{DynamicImage, RgbImage};

use crate::PreprocessError;

/// Converts any decoded image to 8-bit RGB the way Pillow's `convert('RGB')` does for
/// the image Pillow would have decoded from the same file:
///
/// * grey is replicated, alpha is dropped (no compositing over a background);
/// * 16-bit RGB(A) and grey+alpha keep the high byte (Pillow decodes them to 8 bits so);
/// * 16-bit grey (Pillow's `I;16`) is clipped to 255, not scaled: Pillow's `I;16 -> RGB`
///   conversion saturates, so values above 255 become white;
/// * float images (not produced by JPEG/PNG/WebP) are clamped to [0, 1] and rounded.
///
/// The RGB buffer is allocated fallibly ([`PreprocessError::PixelsOutOfMemory`]).
pub fn to_rgb8_like_pil(img: &DynamicImage) -> Result<RgbImage, PreprocessError> {
    fn map<P: image::Pixel>(
        img: &image::ImageBuffer<P, Vec<P::Subpixel>>,
        f: impl Fn(&[P::Subpixel]) -> [u8; 3],
    ) -> Result<RgbImage, PreprocessError> {
        let (w, h) = img.dimensions();
        let channels = P::CHANNEL_COUNT as usize;
        let len = w as usize * h as usize * 3;
        let mut out = Vec::new();
        out.try_reserve_exact(len)
            .map_err(|_| PreprocessError::PixelsOutOfMemory { bytes: len as u64 })?;
        for px in img.as_raw().chunks_exact(channels) {
            out.extend_from_slice(&f(px));
        }
        Ok(RgbImage::from_raw(w, h, out).expect("3 bytes per pixel"))
    }
    let hi = |v: u16| (v >> 8) as u8;
    let unit = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    match img {
        DynamicImage::ImageRgb8(i) => map(i, |p| [p[0], p[1], p[2]]),
        DynamicImage::ImageLuma8(i) => map(i, |p| [p[0]; 3]),
        DynamicImage::ImageLumaA8(i) => map(i, |p| [p[0]; 3]),
        DynamicImage::ImageRgba8(i) => map(i, |p| [p[0], p[1], p[2]]),
        DynamicImage::ImageLuma16(i) => map(i, |p| [p[0].min(255) as u8; 3]),
        DynamicImage::ImageLumaA16(i) => map(i, |p| [hi(p[0]); 3]),
        DynamicImage::ImageRgb16(i) => map(i, |p| [hi(p[0]), hi(p[1]), hi(p[2])]),
        DynamicImage::ImageRgba16(i) => map(i, |p| [hi(p[0]), hi(p[1]), hi(p[2])]),
        DynamicImage::ImageRgb32F(i) => map(i, |p| [unit(p[0]), unit(p[1]), unit(p[2])]),
        DynamicImage::ImageRgba32F(i) => map(i, |p| [unit(p[0]), unit(p[1]), unit(p[2])]),
        other => Ok(other.to_rgb8()),
    }
}
