//! Library side of the `levit` program: `.npy` tensor I/O and the commands, so tests
//! and tools can reuse them.

pub mod infer;
pub mod npy;
