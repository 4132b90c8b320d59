//! The eval transform: resize the shorter side, center crop, scale and normalize.

use image::{DynamicImage, RgbImage};

use crate::resample::resample_bicubic_window;
use crate::{to_rgb8_like_pil, PreprocessError};

/// ImageNet channel means (timm's `IMAGENET_DEFAULT_MEAN`).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (timm's `IMAGENET_DEFAULT_STD`).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// timm's `crop_pct` for every LeViT checkpoint: resize to 248, crop 224.
pub const TIMM_CROP_PCT: f64 = 0.9;
/// The facebookresearch/LeViT evaluation setting: resize to 256, crop 224.
pub const FB_CROP_PCT: f64 = 0.875;

/// The eval transform's settings. [`Preprocess::default`] is timm's LeViT config.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Preprocess {
    /// Side of the square crop fed to the model (the model's `img_size`, 224).
    pub img_size: u32,
    /// Fraction of the resized shorter side kept by the center crop: the shorter side is
    /// resized to `floor(img_size / crop_pct)`. timm: 0.9 (248), facebookresearch: 0.875
    /// (256). Must be in (0, 1].
    pub crop_pct: f64,
    /// Per-channel mean subtracted after scaling to [0, 1].
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by.
    pub std: [f32; 3],
}

impl Default for Preprocess {
    fn default() -> Self {
        Preprocess {
            img_size: 224,
            crop_pct: TIMM_CROP_PCT,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }
}

/// timm's eval transform of one image with the default settings (224 x 224, timm's
/// crop): returns a normalized `[3, 224, 224]` CHW tensor, ready for a model's `infer`.
/// For a model of another input size use [`Preprocess::for_img_size`].
///
/// ```
/// use levit_image::image::{DynamicImage, GrayImage};
///
/// let grey = DynamicImage::ImageLuma8(GrayImage::from_pixel(300, 200, [128].into()));
/// let x = levit_image::transform(&grey)?;
/// assert_eq!(x.len(), 3 * 224 * 224);
/// assert!((x[0] - (128.0 / 255.0 - 0.485) / 0.229).abs() < 1e-6);
/// # Ok::<(), levit_image::PreprocessError>(())
/// ```
pub fn transform(img: &DynamicImage) -> Result<Vec<f32>, PreprocessError> {
    Preprocess::default().run(img)
}

/// [`transform`] into a caller's buffer of `3 * 224 * 224` floats (no output
/// allocation: reuse one buffer for a stream of images).
///
/// ```
/// use levit_image::image::{DynamicImage, RgbImage};
///
/// let mut buf = vec![0.0f32; 3 * 224 * 224];
/// for side in [100, 500] {
///     let img = DynamicImage::ImageRgb8(RgbImage::new(side, side));
///     levit_image::transform_into(&img, &mut buf)?;
/// }
/// # Ok::<(), levit_image::PreprocessError>(())
/// ```
pub fn transform_into(img: &DynamicImage, out: &mut [f32]) -> Result<(), PreprocessError> {
    Preprocess::default().run_into(img, out)
}

impl Preprocess {
    /// The default settings (timm's crop, ImageNet statistics) for a model whose input
    /// is `img_size` x `img_size` (`levit::Model::preprocess` passes the model's own).
    pub fn for_img_size(img_size: u32) -> Preprocess {
        Preprocess {
            img_size,
            ..Preprocess::default()
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), PreprocessError> {
        if self.img_size == 0 || self.img_size > 8192 {
            return Err(PreprocessError::Settings(format!(
                "img_size {} is out of range (1..=8192)",
                self.img_size
            )));
        }
        if !(self.crop_pct > 0.0 && self.crop_pct <= 1.0) {
            return Err(PreprocessError::Settings(format!(
                "crop_pct {} is out of range (0, 1]",
                self.crop_pct
            )));
        }
        if self.std.iter().any(|&s| s == 0.0 || !s.is_finite()) {
            return Err(PreprocessError::Settings(format!(
                "std {:?} must be finite and non-zero",
                self.std
            )));
        }
        Ok(())
    }

    /// Shorter side after the resize: `floor(img_size / crop_pct)` (248 for timm's 0.9).
    pub fn resize_size(&self) -> u32 {
        (self.img_size as f64 / self.crop_pct).floor() as u32
    }

    /// Floats in one output tensor: `3 * img_size²`.
    pub fn output_len(&self) -> usize {
        3 * self.img_size as usize * self.img_size as usize
    }

    /// Size `(width, height)` of the image after the resize, as torchvision computes it
    /// (shorter side to [`Self::resize_size`], longer side `int(size * long / short)`).
    pub fn resized_dims(&self, width: u32, height: u32) -> (u32, u32) {
        let size = self.resize_size();
        let (short, long) = if width <= height {
            (width, height)
        } else {
            (height, width)
        };
        // Python: int(size * long / short), a correctly rounded double, truncated.
        let new_long = ((size as u64 * long as u64) as f64 / short as f64) as u32;
        if width <= height {
            (size, new_long)
        } else {
            (new_long, size)
        }
    }

    /// Runs the transform, returning a new `[3, img_size, img_size]` tensor.
    pub fn run(&self, img: &DynamicImage) -> Result<Vec<f32>, PreprocessError> {
        self.validate()?;
        let mut out = vec![0.0f32; self.output_len()];
        self.run_into(img, &mut out)?;
        Ok(out)
    }

    /// Runs the transform into `out` (`3 * img_size²` floats, CHW).
    pub fn run_into(&self, img: &DynamicImage, out: &mut [f32]) -> Result<(), PreprocessError> {
        self.validate()?;
        if out.len() != self.output_len() {
            return Err(PreprocessError::OutputLength {
                expected: self.output_len(),
                found: out.len(),
                size: self.img_size,
            });
        }
        let (width, height) = (img.width(), img.height());
        if width == 0 || height == 0 {
            return Err(PreprocessError::Empty { width, height });
        }
        let size = self.resize_size();
        let long = u64::from(size) * u64::from(width.max(height)) / u64::from(width.min(height));
        if long > i32::MAX as u64 {
            return Err(PreprocessError::TooElongated {
                width,
                height,
                size,
                long,
            });
        }
        let rgb = match img {
            DynamicImage::ImageRgb8(i) => std::borrow::Cow::Borrowed(i),
            other => std::borrow::Cow::Owned(to_rgb8_like_pil(other)?),
        };
        let crop = self.resize_crop(&rgb);
        self.normalize(&crop, out);
        Ok(())
    }

    /// Steps 2 and 3: the resized, center-cropped 8-bit RGB image (HWC), exactly as PIL
    /// and torchvision produce it. Only the pixels inside the crop are computed.
    pub fn resize_crop(&self, rgb: &RgbImage) -> RgbImage {
        let (w, h) = rgb.dimensions();
        let (rw, rh) = self.resized_dims(w, h);
        let s = self.img_size;
        // torchvision pads when the crop is larger than the image; with crop_pct <= 1 the
        // resized shorter side is >= img_size, so that never happens.
        debug_assert!(rw >= s && rh >= s);
        let left = round_half_even((rw - s) as f64 / 2.0);
        let top = round_half_even((rh - s) as f64 / 2.0);
        let px = resample_bicubic_window(rgb, (rw, rh), (left, top), (s, s));
        RgbImage::from_raw(s, s, px).expect("3 bytes per pixel")
    }

    /// Step 4: `(x / 255 - mean) / std` per channel, HWC u8 to CHW f32, with torch's
    /// f32 operations (so the result is bit-identical).
    fn normalize(&self, crop: &RgbImage, out: &mut [f32]) {
        let plane = crop.width() as usize * crop.height() as usize;
        let (r, rest) = out.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        let planes = [r, g, b];
        let luts: [[f32; 256]; 3] = std::array::from_fn(|c| {
            std::array::from_fn(|v| (v as f32 / 255.0 - self.mean[c]) / self.std[c])
        });
        for (i, px) in crop.as_raw().chunks_exact(3).enumerate() {
            planes[0][i] = luts[0][px[0] as usize];
            planes[1][i] = luts[1][px[1] as usize];
            planes[2][i] = luts[2][px[2] as usize];
        }
    }
}

/// Python's `round()` on a non-negative half-integer grid: halves go to even.
pub(crate) fn round_half_even(x: f64) -> u32 {
    let f = x.floor();
    let r = if x - f == 0.5 {
        if f % 2.0 == 0.0 {
            f
        } else {
            f + 1.0
        }
    } else {
        x.round()
    };
    r as u32
}
