//! The checks the fuzz targets run. The harnesses live in `harness.rs` (weight files)
//! and `image_harness.rs` (image files) so that the regression test
//! (`crates/levit/tests/robustness_fuzz.rs`) replays saved inputs through exactly the
//! same code without depending on this crate.

#[path = "harness.rs"]
pub mod harness;

#[path = "image_harness.rs"]
pub mod image_harness;
