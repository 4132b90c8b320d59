//! The checks the fuzz targets run. The harnesses live in `harness.rs` (weight files),
//! `image_harness.rs` (image files) and `npy_harness.rs` (`.npy` files) so that the
//! regression tests (`crates/levit/tests/robustness_fuzz.rs`,
//! `crates/levit-cli/tests/npy_fuzz.rs`) replay saved inputs through exactly the same
//! code without depending on this crate.

#[path = "harness.rs"]
pub mod harness;

#[path = "image_harness.rs"]
pub mod image_harness;

#[path = "npy_harness.rs"]
pub mod npy_harness;
