//! Arbitrary bytes (and libFuzzer's mutations of the seed images in
//! `fuzz/seeds/images/`) as an image file for `levit classify`: decoding (this crate's
//! JPEG decoder, the `image` crate's PNG/WebP/JPEG fallback, EXIF orientation) and the
//! eval preprocessing give `Ok` or a clean `Err`, never a panic, abort, hang or
//! unbounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    levit_fuzz::image_harness::decode_and_preprocess(data);
});
