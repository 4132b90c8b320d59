//! The checks the fuzz targets run. The harness lives in `harness.rs` so that the
//! regression test (`crates/levit/tests/robustness_fuzz.rs`) replays saved inputs
//! through exactly the same code without depending on this crate.

#[path = "harness.rs"]
pub mod harness;
