//! Arbitrary bytes (and libFuzzer's mutations of the seed models) as a weight file:
//! loading gives `Ok` or a typed `Err`, never a panic, abort, hang or bad access; a
//! model that loads runs one inference.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    levit_fuzz::harness::load_and_run(data);
});
