//! Library side of the `levit` program: every command's logic, so tests and tools can
//! call it without the binary. `main.rs` only parses arguments and prints errors.
//!
//! * [`budget`]: the cap on memory held by image decodes in flight;
//! * [`classify`]: photos in, ImageNet classes out (decode workers feeding batched
//!   engines);
//! * [`cpu_time`]: per-thread CPU time for `classify --stats`;
//! * [`info`]: what a model file holds and how it will run here;
//! * [`infer`]: raw `.npy` tensors in and out;
//! * [`npy`]: f32 `.npy` reading and writing with clear errors;
//! * [`output`]: writing results, where a failed write is an error.

pub mod budget;
pub mod classify;
pub mod cpu_time;
pub mod infer;
pub mod info;
pub mod model;
pub mod npy;
pub mod output;
