//! Like `load_model`, but the input's config and tensor CRCs are recomputed first, so
//! mutations of the header (config fields, shapes, offsets, dtypes, names) get past the
//! checksums and reach the config and plan validation behind them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    levit_fuzz::harness::load_and_run(&levit_fuzz::harness::fix_checksums(data));
});
