//! levit-rs: fast, allocation-free CPU inference for LeViT image classifiers.
//!
//! ```no_run
//! # fn main() -> levit::Result<()> {
//! let mut engine = levit::Engine::load("levit_128s.lvt")?;
//! let image = vec![0.0f32; engine.model().input_len()]; // normalized CHW
//! let logits = engine.infer(&image)?;
//! println!("{} classes", logits.len());
//! # Ok(()) }
//! ```
//!
//! A [`Model`] (mapped weights + plan) is immutable and can be shared by several
//! [`Engine`]s through an `Arc`; each engine owns one fixed arena.

mod arena;
mod engine;
mod error;
mod model;
mod run;
pub mod synth;
mod weights;
pub use run::Tracer;

/// Image decoding and timm's eval preprocessing (cargo feature `preprocess`).
#[cfg(feature = "preprocess")]
pub mod preprocess;
#[cfg(feature = "preprocess")]
pub use preprocess::{preprocess, preprocess_into, Preprocess, PreprocessError};

pub use engine::{Engine, EngineOptions};
pub use error::{Error, FormatError, GraphError, IsaError, Result};
pub use levit_format::LoadMode;
pub use levit_graph::{Config, Tap};

/// The execution plan types (steps, labels, shapes), for profilers and tools.
pub mod graph {
    pub use levit_graph::{AttentionStep, ConvStep, GemmStep, MeanRowsStep, Plan, Step};
}

/// The kernels' own names and types, for tools that report which kernel runs.
pub mod kernels {
    pub use levit_kernels::gemm::GemmKernel;
    pub use levit_kernels::peak;
}
pub use levit_kernels::{Isa, Precision};
pub use model::{Model, ModelOptions};
