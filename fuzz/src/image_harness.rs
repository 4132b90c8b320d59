//! What every `decode_image` fuzz input must satisfy, shared by the fuzz target
//! (`fuzz_targets/decode_image.rs`) and the regression test
//! `crates/levit/tests/robustness_fuzz.rs` (with `levit`'s `preprocess` feature), which
//! replays each file under `fuzz/regressions/decode_image/` through this function.
//! Depends only on `levit` (feature `preprocess`).

use levit::preprocess::image::DynamicImage;
use levit::preprocess::{decode_image_with, DecodeOptions, Orientation, Preprocess};

/// Largest image (width x height) the harness lets the decoders produce: a tenth of a
/// second or so per input under AddressSanitizer, far below the 10 s timeout. The
/// default cap of `levit classify` (`levit::preprocess::MAX_IMAGE_PIXELS`) goes through
/// the same checks; only the number differs.
pub const MAX_FUZZ_PIXELS: u64 = 1 << 20;

/// Decodes `bytes` as `levit classify` does (`open_image_with` on a file holding them,
/// both EXIF orientation settings) and runs the default preprocessing on the result.
/// Decoding must give `Ok` or an `Err` whose message formats, never panic; a decoded
/// image has at most [`MAX_FUZZ_PIXELS`] pixels, the same picture up to a rotation in
/// both orientation settings, and preprocesses into `3 x 224 x 224` finite floats (or a
/// typed error). Returns whether the image decoded.
pub fn decode_and_preprocess(bytes: &[u8]) -> bool {
    let plain = decode(bytes, Orientation::Ignore);
    let turned = decode(bytes, Orientation::Apply);
    if let (Some(a), Some(b)) = (&plain, &turned) {
        let (w, h) = (a.width(), a.height());
        assert!(
            (b.width(), b.height()) == (w, h) || (b.width(), b.height()) == (h, w),
            "EXIF orientation changed {w}x{h} into {}x{}",
            b.width(),
            b.height()
        );
    }
    let Some(img) = plain.or(turned) else {
        return false;
    };
    let settings = Preprocess::default();
    let mut out = vec![f32::NAN; settings.output_len()];
    match settings.run_into(&img, &mut out) {
        Ok(()) => assert!(
            out.iter().all(|v| v.is_finite()),
            "preprocessing left a non-finite value"
        ),
        Err(e) => drop(e.to_string()),
    }
    true
}

fn decode(bytes: &[u8], orientation: Orientation) -> Option<DynamicImage> {
    let options = DecodeOptions {
        orientation,
        max_pixels: MAX_FUZZ_PIXELS,
        ..DecodeOptions::default()
    };
    match decode_image_with(bytes, &options) {
        Ok(img) => {
            let pixels = u64::from(img.width()) * u64::from(img.height());
            assert!(
                pixels <= MAX_FUZZ_PIXELS,
                "decoded {}x{}, over the pixel limit",
                img.width(),
                img.height()
            );
            Some(img)
        }
        Err(e) => {
            drop(e.to_string());
            None
        }
    }
}
