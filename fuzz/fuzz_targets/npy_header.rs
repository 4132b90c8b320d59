//! Arbitrary bytes (and libFuzzer's mutations of the numpy-written seeds in
//! `fuzz/seeds/npy/`) as a `.npy` file for `levit infer`: the header parser and the
//! f32 decoding give `Ok` or a clean `Err` in bounded time (linear in the header),
//! never a panic, abort or allocation the input does not back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    levit_fuzz::npy_harness::parse_and_decode(data);
});
