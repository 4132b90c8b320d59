//! LeViT's ImageNet eval preprocessing, bit-exact with timm + PIL (feature `preprocess`).
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
//! Images decoded by other means ([`preprocess`] takes any `DynamicImage`) get the same
//! resize and normalization, but pixel-level agreement with PIL then depends on the
//! decoder: a JPEG decoded by another library typically differs by a few levels.
//!
//! ```
//! use levit::preprocess::{image::RgbImage, preprocess, Preprocess};
//!
//! let photo = levit::preprocess::image::DynamicImage::ImageRgb8(RgbImage::new(640, 480));
//! let chw = preprocess(&photo);                       // 3 x 224 x 224, normalized
//! assert_eq!(chw.len(), 3 * 224 * 224);
//!
//! // The facebookresearch/LeViT setting: resize to 256, then crop 224.
//! let fb = Preprocess { crop_pct: 0.875, ..Preprocess::default() };
//! let mut buf = vec![0.0f32; fb.output_len()];
//! fb.run_into(&photo, &mut buf)?;
//! # Ok::<(), levit::preprocess::PreprocessError>(())
//! ```

use std::io::Cursor;
use std::path::{Path, PathBuf};

pub use image;

mod jpeg;
mod png_palette;
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

/// ImageNet channel means (timm's `IMAGENET_DEFAULT_MEAN`).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (timm's `IMAGENET_DEFAULT_STD`).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// timm's `crop_pct` for every LeViT checkpoint: resize to 248, crop 224.
pub const TIMM_CROP_PCT: f64 = 0.9;
/// The facebookresearch/LeViT evaluation setting: resize to 256, crop 224.
pub const FB_CROP_PCT: f64 = 0.875;
/// Largest image (`width * height`) [`open_image`] and [`decode_image`] accept: Pillow's
/// `Image.MAX_IMAGE_PIXELS` (2³⁰ / 12, about 89.5 Mpx, 9459 x 9459), above which PIL
/// warns of a decompression bomb. A header declaring more is an error before anything
/// is allocated for the pixels, so a small hostile file cannot make the decoders
/// allocate without bound; [`decode_image_with_limit`] takes another limit.
pub const MAX_IMAGE_PIXELS: u64 = 89_478_485;

/// Why an image could not be opened or preprocessed.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    /// The file could not be opened or read.
    #[error("cannot read image {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The bytes are not a decodable JPEG, PNG or WebP image, or declare more than
    /// [`MAX_IMAGE_PIXELS`] pixels.
    #[error("cannot decode image {path}: {source}")]
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
        /// The resized shorter side ([`Preprocess::resize_size`]).
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
/// let img = levit::preprocess::open_image("cat.jpg")?;
/// let x = levit::preprocess(&img);
/// # Ok::<(), levit::PreprocessError>(())
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

/// Converts any decoded image to 8-bit RGB the way Pillow's `convert('RGB')` does for
/// the image Pillow would have decoded from the same file:
///
/// * grey is replicated, alpha is dropped (no compositing over a background);
/// * 16-bit RGB(A) and grey+alpha keep the high byte (Pillow decodes them to 8 bits so);
/// * 16-bit grey (Pillow's `I;16`) is clipped to 255, not scaled: Pillow's `I;16 -> RGB`
///   conversion saturates, so values above 255 become white;
/// * float images (not produced by JPEG/PNG/WebP) are clamped to [0, 1] and rounded.
pub fn to_rgb8_like_pil(img: &DynamicImage) -> RgbImage {
    fn map<P: image::Pixel>(
        img: &image::ImageBuffer<P, Vec<P::Subpixel>>,
        f: impl Fn(&[P::Subpixel]) -> [u8; 3],
    ) -> RgbImage {
        let (w, h) = img.dimensions();
        let channels = P::CHANNEL_COUNT as usize;
        let mut out = Vec::with_capacity(w as usize * h as usize * 3);
        for px in img.as_raw().chunks_exact(channels) {
            out.extend_from_slice(&f(px));
        }
        RgbImage::from_raw(w, h, out).expect("3 bytes per pixel")
    }
    let hi = |v: u16| (v >> 8) as u8;
    let unit = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    match img {
        DynamicImage::ImageRgb8(i) => i.clone(),
        DynamicImage::ImageLuma8(i) => map(i, |p| [p[0]; 3]),
        DynamicImage::ImageLumaA8(i) => map(i, |p| [p[0]; 3]),
        DynamicImage::ImageRgba8(i) => map(i, |p| [p[0], p[1], p[2]]),
        DynamicImage::ImageLuma16(i) => map(i, |p| [p[0].min(255) as u8; 3]),
        DynamicImage::ImageLumaA16(i) => map(i, |p| [hi(p[0]); 3]),
        DynamicImage::ImageRgb16(i) => map(i, |p| [hi(p[0]), hi(p[1]), hi(p[2])]),
        DynamicImage::ImageRgba16(i) => map(i, |p| [hi(p[0]), hi(p[1]), hi(p[2])]),
        DynamicImage::ImageRgb32F(i) => map(i, |p| [unit(p[0]), unit(p[1]), unit(p[2])]),
        DynamicImage::ImageRgba32F(i) => map(i, |p| [unit(p[0]), unit(p[1]), unit(p[2])]),
        other => other.to_rgb8(),
    }
}

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

/// timm's eval preprocessing of one image: returns a normalized `[3, 224, 224]` CHW
/// tensor, ready for [`Engine::infer`](crate::Engine::infer).
///
/// ```
/// use levit::preprocess::image::{DynamicImage, GrayImage};
///
/// let grey = DynamicImage::ImageLuma8(GrayImage::from_pixel(300, 200, [128].into()));
/// let x = levit::preprocess(&grey);
/// assert_eq!(x.len(), 3 * 224 * 224);
/// assert!((x[0] - (128.0 / 255.0 - 0.485) / 0.229).abs() < 1e-6);
/// ```
pub fn preprocess(img: &DynamicImage) -> Vec<f32> {
    Preprocess::default().run(img)
}

/// [`preprocess`] into a caller's buffer of `3 * 224 * 224` floats (no output
/// allocation: reuse one buffer for a stream of images).
///
/// ```
/// use levit::preprocess::image::{DynamicImage, RgbImage};
///
/// let mut buf = vec![0.0f32; 3 * 224 * 224];
/// for side in [100, 500] {
///     let img = DynamicImage::ImageRgb8(RgbImage::new(side, side));
///     levit::preprocess_into(&img, &mut buf)?;
/// }
/// # Ok::<(), levit::preprocess::PreprocessError>(())
/// ```
pub fn preprocess_into(img: &DynamicImage, out: &mut [f32]) -> Result<(), PreprocessError> {
    Preprocess::default().run_into(img, out)
}

impl Preprocess {
    /// The default settings with `img_size` taken from a model config.
    pub fn for_config(config: &crate::Config) -> Preprocess {
        Preprocess {
            img_size: config.img_size as u32,
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
    ///
    /// # Panics
    /// If the settings are invalid (see [`Self::validate`]) or the image is empty or too
    /// elongated ([`PreprocessError::TooElongated`]); use [`Self::run_into`] to get these
    /// as errors.
    pub fn run(&self, img: &DynamicImage) -> Vec<f32> {
        let mut out = vec![0.0f32; self.output_len()];
        if let Err(e) = self.run_into(img, &mut out) {
            panic!("levit::preprocess: {e}");
        }
        out
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
            other => std::borrow::Cow::Owned(to_rgb8_like_pil(other)),
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
fn round_half_even(x: f64) -> u32 {
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

// ---- Pillow's resampler (libImaging/Resample.c), 8 bits per channel ------------------

/// Pillow's fixed-point precision for 8-bit images: 32 - 8 - 2.
const PRECISION_BITS: u32 = 22;

/// Pillow's `bicubic_filter` (Keys, a = -0.5), support 2.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Per-output-pixel input window and fixed-point weights (`precompute_coeffs` +
/// `normalize_coeffs_8bpc`).
struct Coeffs {
    /// (first input index, number of taps) per output pixel.
    bounds: Vec<(usize, usize)>,
    /// `ksize` weights per output pixel.
    weights: Vec<i32>,
    ksize: usize,
}

/// The coefficients of output pixels `first..first + count` of a resize from `in_size`
/// to `out_size` (indexed from 0 = `first`): Pillow computes them for every output
/// pixel, but only the crop's are needed, and an image with an extreme aspect ratio
/// resizes its longer side to billions of pixels.
fn precompute_coeffs(in_size: u32, out_size: u32, first: u32, count: u32) -> Coeffs {
    debug_assert!(u64::from(first) + u64::from(count) <= u64::from(out_size));
    // box = (0, in_size): in0 = 0, in1 = in_size (floats in Pillow, exact here).
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let ss = 1.0 / filterscale;
    let mut bounds = Vec::with_capacity(count as usize);
    let mut weights = vec![0i32; ksize * count as usize];
    let mut k = vec![0.0f64; ksize];
    for (i, xx) in (first as usize..).take(count as usize).enumerate() {
        let center = (xx as f64 + 0.5) * scale;
        // C's (int) truncates toward zero; then clamp.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
        let taps = (xmax - xmin).max(0) as usize;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(taps) {
            let w = bicubic(((x as i64 + xmin) as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        let row = &mut weights[i * ksize..][..ksize];
        for (x, &kx) in k.iter().enumerate().take(taps) {
            let v = if ww != 0.0 { kx / ww } else { kx };
            let scaled = v * (1u32 << PRECISION_BITS) as f64;
            row[x] = if v < 0.0 {
                (-0.5 + scaled) as i32
            } else {
                (0.5 + scaled) as i32
            };
        }
        bounds.push((xmin as usize, taps));
    }
    Coeffs {
        bounds,
        weights,
        ksize,
    }
}

#[inline]
fn clip8(v: i32) -> u8 {
    if v >= (1 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// Pillow's `img.resize((rw, rh), BICUBIC)` on an RGB image, returning only the window
/// `[left, left + cw) x [top, top + ch)` of the result (HWC bytes). Pixels outside the
/// window are not computed; those inside are bit-identical to Pillow's.
fn resample_bicubic_window(
    src: &RgbImage,
    (rw, rh): (u32, u32),
    (left, top): (u32, u32),
    (cw, ch): (u32, u32),
) -> Vec<u8> {
    let (w, h) = src.dimensions();
    // Coefficients of the window's columns and rows only (index 0: `left`, `top`).
    let hc = (rw != w).then(|| precompute_coeffs(w, rw, left, cw));
    let vc = (rh != h).then(|| precompute_coeffs(h, rh, top, ch));
    let (cw, ch) = (cw as usize, ch as usize);
    let (left, top) = (left as usize, top as usize);
    let src = src.as_raw();

    // Input rows the vertical pass reads for the window's output rows.
    let (y_first, y_last) = match &vc {
        Some(vc) => {
            let first = vc.bounds[0].0;
            let last = vc.bounds.iter().map(|&(s, n)| s + n).max().unwrap_or(first);
            (first, last.max(first))
        }
        None => (top, top + ch),
    };

    // Horizontal pass over rows y_first..y_last, output columns left..left+cw.
    let rows = y_last - y_first;
    let mut temp = vec![0u8; rows * cw * 3];
    for (r, trow) in temp.chunks_exact_mut(cw * 3).enumerate() {
        let srow = &src[(y_first + r) * w as usize * 3..][..w as usize * 3];
        match &hc {
            Some(hc) => {
                for (i, out) in trow.chunks_exact_mut(3).enumerate() {
                    let (xmin, taps) = hc.bounds[i];
                    let k = &hc.weights[i * hc.ksize..][..taps];
                    let mut ss = [1i32 << (PRECISION_BITS - 1); 3];
                    for (x, &kx) in k.iter().enumerate() {
                        let p = &srow[(xmin + x) * 3..][..3];
                        ss[0] += p[0] as i32 * kx;
                        ss[1] += p[1] as i32 * kx;
                        ss[2] += p[2] as i32 * kx;
                    }
                    out.copy_from_slice(&[clip8(ss[0]), clip8(ss[1]), clip8(ss[2])]);
                }
            }
            None => trow.copy_from_slice(&srow[left * 3..][..cw * 3]),
        }
    }

    // Vertical pass.
    match &vc {
        None => temp,
        Some(vc) => {
            let mut out = vec![0u8; ch * cw * 3];
            for (j, orow) in out.chunks_exact_mut(cw * 3).enumerate() {
                let (ymin, taps) = vc.bounds[j];
                let k = &vc.weights[j * vc.ksize..][..taps];
                for (i, out) in orow.chunks_exact_mut(3).enumerate() {
                    let mut ss = [1i32 << (PRECISION_BITS - 1); 3];
                    for (y, &ky) in k.iter().enumerate() {
                        let p = &temp[((ymin + y - y_first) * cw + i) * 3..][..3];
                        ss[0] += p[0] as i32 * ky;
                        ss[1] += p[1] as i32 * ky;
                        ss[2] += p[2] as i32 * ky;
                    }
                    out.copy_from_slice(&[clip8(ss[0]), clip8(ss[1]), clip8(ss[2])]);
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::GrayImage;

    #[test]
    fn python_rounding_and_torchvision_sizes() {
        assert_eq!(round_half_even(74.5), 74);
        assert_eq!(round_half_even(75.5), 76);
        assert_eq!(round_half_even(74.0), 74);
        assert_eq!(round_half_even(0.5), 0);
        let p = Preprocess::default();
        assert_eq!(p.resize_size(), 248);
        assert_eq!(p.resized_dims(451, 300), (372, 248));
        assert_eq!(p.resized_dims(301, 200), (373, 248));
        assert_eq!(p.resized_dims(427, 640), (248, 371));
        assert_eq!(p.resized_dims(60, 40), (372, 248));
        let fb = Preprocess {
            crop_pct: FB_CROP_PCT,
            ..p
        };
        assert_eq!(fb.resize_size(), 256);
    }

    #[test]
    fn pillow_coefficients_sum_to_one_in_fixed_point() {
        for (i, o) in [(451, 372), (60, 372), (4000, 248), (248, 248), (7, 3)] {
            let c = precompute_coeffs(i, o, 0, o);
            for (xx, &(start, taps)) in c.bounds.iter().enumerate() {
                assert!(start + taps <= i as usize);
                let sum: i64 = c.weights[xx * c.ksize..][..taps]
                    .iter()
                    .map(|&v| v as i64)
                    .sum();
                assert!(
                    (sum - (1 << PRECISION_BITS)).abs() <= taps as i64,
                    "{i}->{o}"
                );
            }
        }
    }

    #[test]
    fn constant_images_stay_constant() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(333, 517, [10, 200, 255].into()));
        let x = preprocess(&img);
        let plane = 224 * 224;
        for (c, v) in [10u8, 200, 255].into_iter().enumerate() {
            let want = (v as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
            assert!(x[c * plane..(c + 1) * plane].iter().all(|&y| y == want));
        }
    }

    #[test]
    fn sixteen_bit_and_alpha_follow_pillow() {
        let g16 = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(2, 1, vec![100, 400]);
        let rgb = to_rgb8_like_pil(&DynamicImage::ImageLuma16(g16.unwrap()));
        assert_eq!(rgb.as_raw(), &[100, 100, 100, 255, 255, 255]);
        let c16 = image::ImageBuffer::<image::Rgb<u16>, _>::from_raw(1, 1, vec![0x12ff, 0, 65535]);
        let rgb = to_rgb8_like_pil(&DynamicImage::ImageRgb16(c16.unwrap()));
        assert_eq!(rgb.as_raw(), &[0x12, 0, 255]);
        let rgba = image::RgbaImage::from_raw(1, 1, vec![1, 2, 3, 0]).unwrap();
        let rgb = to_rgb8_like_pil(&DynamicImage::ImageRgba8(rgba));
        assert_eq!(rgb.as_raw(), &[1, 2, 3]);
    }

    #[test]
    fn bad_settings_and_buffers_are_errors() {
        let img = DynamicImage::ImageRgb8(RgbImage::new(10, 10));
        let p = Preprocess {
            crop_pct: 1.5,
            ..Preprocess::default()
        };
        assert!(matches!(
            p.run_into(&img, &mut vec![0.0; p.output_len()]),
            Err(PreprocessError::Settings(_))
        ));
        assert!(matches!(
            preprocess_into(&img, &mut [0.0; 7]),
            Err(PreprocessError::OutputLength { found: 7, .. })
        ));
        let empty = DynamicImage::ImageRgb8(RgbImage::new(0, 5));
        assert!(matches!(
            preprocess_into(&empty, &mut vec![0.0; 3 * 224 * 224]),
            Err(PreprocessError::Empty { .. })
        ));
    }

    #[test]
    fn window_coefficients_equal_pillows_full_table() {
        for (i, o, first, count) in [
            (451, 372, 74, 224),
            (60, 372, 0, 372),
            (4000, 248, 12, 224),
            (7, 3, 1, 2),
        ] {
            let full = precompute_coeffs(i, o, 0, o);
            let win = precompute_coeffs(i, o, first, count);
            let (first, count) = (first as usize, count as usize);
            assert_eq!(win.ksize, full.ksize);
            assert_eq!(win.bounds[..], full.bounds[first..][..count]);
            assert_eq!(
                win.weights[..],
                full.weights[first * full.ksize..][..count * full.ksize]
            );
        }
    }

    #[test]
    fn elongated_images_cost_their_crop_not_their_resized_size() {
        // 1 x 8M resizes to 248 x 1984000000: Pillow's coefficient table for the long
        // side alone would be 70 GB; only the crop's 224 rows are computed.
        let tall = DynamicImage::ImageLuma8(GrayImage::from_pixel(1, 8_000_000, [77].into()));
        let x = preprocess(&tall);
        let want: [f32; 3] =
            std::array::from_fn(|c| (77.0 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]);
        for (c, plane) in x.chunks_exact(224 * 224).enumerate() {
            assert!(plane.iter().all(|&v| v == want[c]));
        }
        // 1 x 9M would need a 2232000000-pixel side: more than Pillow can resize to.
        let taller = DynamicImage::ImageLuma8(GrayImage::new(1, 9_000_000));
        let err = preprocess_into(&taller, &mut vec![0.0; 3 * 224 * 224]).unwrap_err();
        assert!(
            matches!(
                err,
                PreprocessError::TooElongated {
                    width: 1,
                    height: 9_000_000,
                    size: 248,
                    long: 2_232_000_000
                }
            ),
            "{err}"
        );
    }

    /// CRC-32 (IEEE), for patching PNG chunks.
    fn crc32(bytes: &[u8]) -> u32 {
        !bytes.iter().fold(!0u32, |mut c, &b| {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            c
        })
    }

    #[test]
    fn oversized_headers_are_refused_before_decoding() {
        // JPEG: the frame header of a 64x43 progressive file patched to 65535x65535.
        let jpeg: &[u8] =
            include_bytes!("../../../tests/fixtures/images/rocket_progressive_420.jpg");
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC2]).unwrap();
        let mut big = jpeg.to_vec();
        big[sof + 5..sof + 9].copy_from_slice(&[0xFF; 4]);
        let err = decode_image(&big, Orientation::Ignore)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("65535x65535") && err.contains("89478485"),
            "{err}"
        );
        // The limit counts pixels: the real file passes at exactly its size.
        let img = decode_image(jpeg, Orientation::Ignore).unwrap();
        let pixels = u64::from(img.width()) * u64::from(img.height());
        for orientation in [Orientation::Ignore, Orientation::Apply] {
            assert!(decode_image_with_limit(jpeg, orientation, pixels).is_ok());
            let err = decode_image_with_limit(jpeg, orientation, pixels - 1).unwrap_err();
            assert!(err.to_string().contains("more than the limit"), "{err}");
        }

        // PNG: IHDR patched to 10000x10000 (100 Mpx, within the `image` crate's own
        // 512 MiB allocation limit), its CRC fixed up.
        let png: &[u8] = include_bytes!("../../../tests/fixtures/images/tiny_60x40.png");
        assert_eq!(&png[12..16], b"IHDR");
        let mut big = png.to_vec();
        big[16..20].copy_from_slice(&10_000u32.to_be_bytes());
        big[20..24].copy_from_slice(&10_000u32.to_be_bytes());
        let crc = crc32(&big[12..29]);
        big[29..33].copy_from_slice(&crc.to_be_bytes());
        let err = decode_image(&big, Orientation::Ignore)
            .unwrap_err()
            .to_string();
        assert!(err.contains("10000x10000"), "{err}");
        assert!(decode_image(png, Orientation::Ignore).is_ok());
        assert!(decode_image_with_limit(png, Orientation::Ignore, 60 * 40 - 1).is_err());
    }
}
