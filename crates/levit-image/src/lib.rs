//! LeViT's ImageNet eval preprocessing, bit-exact with timm + PIL.
//!
//! The `levit` engine re-exports this crate as `levit::preprocess` (cargo feature
//! `preprocess`); it is a crate of its own so that the engine compiles no image decoder
//! for users who bring their own tensors.
//!
//! timm's eval transform for every LeViT checkpoint (`resolve_data_config` +
//! `create_transform`) is:
//!
//! 1. `Image.open(path).convert('RGB')` (the dataset loader; no EXIF rotation),
//! 2. `Resize(248, bicubic)`: shorter side to `floor(224 / crop_pct)` with
//!    `crop_pct = 0.9`, longer side `int(248 * long / short)`, PIL's antialiased bicubic,
//! 3. `CenterCrop(224)`: offsets `round((size - 224) / 2)`, Python rounding,
//! 4. `ToTensor` (`/ 255` in f32) and `Normalize(mean, std)` with the ImageNet statistics.
//!
//! [`Preprocess`] reproduces each step exactly: the resize is a port of Pillow's
//! fixed-point 8-bit resampler (22-bit coefficients, horizontal pass first, rounded to
//! u8 between passes), the mode conversion follows Pillow's `convert('RGB')` for every
//! layout the decoders produce (grey, grey+alpha, RGBA, palette, 16-bit), and the
//! normalization runs the same f32 operations as torch. Decoding matters as much:
//! [`open_image`] decodes JPEG with this crate's port of libjpeg-turbo's pipeline (the
//! decoder inside PIL), PNG and WebP with the `image` crate (same pixels as PIL). On the
//! 21 committed test images (`tests/fixtures/images`: JPEG 4:4:4/4:2:2/4:2:0/4:1:1,
//! progressive, restart markers, Adobe RGB, grey; PNG RGB/RGBA/LA/L/P/16-bit; WebP lossy
//! and lossless; tiny, panoramic and odd sizes) the output equals timm's tensor bit for
//! bit (`crates/levit-cli/tests/preprocess_parity.rs`).
//!
//! Images decoded by other means ([`transform`] takes any `DynamicImage`) get the same
//! resize and normalization, but pixel-level agreement with PIL then depends on the
//! decoder: a JPEG decoded by another library typically differs by a few levels.
//!
//! ```
//! use levit_image::image::{DynamicImage, RgbImage};
//! use levit_image::Preprocess;
//!
//! let photo = DynamicImage::ImageRgb8(RgbImage::new(640, 480));
//! let chw = levit_image::transform(&photo)?;        // 3 x 224 x 224, normalized
//! assert_eq!(chw.len(), 3 * 224 * 224);
//!
//! // The facebookresearch/LeViT setting: resize to 256, then crop 224.
//! let fb = Preprocess { crop_pct: levit_image::FB_CROP_PCT, ..Preprocess::default() };
//! let mut buf = vec![0.0f32; fb.output_len()];
//! fb.run_into(&photo, &mut buf)?;
//! # Ok::<(), levit_image::PreprocessError>(())
//! ```
//!
//! # Files
//! `decode.rs` opens and decodes files (`jpeg.rs`: the libjpeg-turbo port;
//! `png_palette.rs`: palette checks PIL makes and the `image` crate does not),
//! `pil_rgb.rs` converts pixel layouts as `convert('RGB')` does, `transform.rs` holds the
//! settings and the resize / crop / normalize steps, `resample.rs` the port of Pillow's
//! resampler, `error.rs` the error type.

/// The `image` crate this one decodes with (its `DynamicImage` is what [`transform`]
/// takes), re-exported so callers use the same version.
pub use image;

mod decode;
mod error;
mod fallible;
mod jpeg;
mod pil_rgb;
mod png_palette;
mod resample;
#[cfg(test)]
mod tests;
mod transform;

pub use decode::{
    decode_image, decode_image_with, open_image, open_image_with, open_regular_file,
    probe_dimensions, read_image_file, DecodeOptions, OpenError, Orientation,
    DECODE_BYTES_PER_PIXEL, MAX_IMAGE_PIXELS,
};
pub use error::PreprocessError;
pub use pil_rgb::to_rgb8_like_pil;
pub use transform::{
    transform, transform_into, Preprocess, FB_CROP_PCT, IMAGENET_MEAN, IMAGENET_STD, TIMM_CROP_PCT,
};
