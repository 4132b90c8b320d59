//! LeViT as data. A [`Config`] (from the weight file) becomes a [`Plan`]: the list of
//! kernel calls with their shapes, the arena offset of every activation, the gathered
//! attention-bias tables and the subsample row tables, all computed once at load.
//! `infer` is then a loop over [`Step`]s. No SIMD and no file bytes here.

mod arena;
pub mod bias;
mod config;
mod error;
mod plan;
mod tensors;

pub use arena::BufRange;
pub use config::{ActKind, AttnDims, Config, Dims, StageDims};
pub use error::GraphError;
pub use plan::{ImageSource, Plan, Step, Tap, WeightId, MAX_PLAN_BYTES};
pub use tensors::{tensor_specs, TensorSpec};
