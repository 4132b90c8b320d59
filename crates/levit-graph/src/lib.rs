//! LeViT as data. A [`Config`] (from the weight file) becomes a [`Plan`]: the list of
//! kernel calls with their shapes, the arena offset of every activation, the gathered
//! attention-bias tables and the subsample row tables, all computed once at load.
//! `infer` is then a loop over [`Step`]s. No SIMD and no file bytes here.

mod arena_layout;
pub mod attention_bias;
mod bias_tables;
mod build;
mod config;
mod error;
mod keep_float;
mod plan;
mod step;
mod tensors;

pub use arena_layout::BufRange;
pub use bias_tables::BiasTables;
pub use build::{attention_precision, conv_precision, F32_CONV_MAX_CIN};
pub use config::{check_img_size, ActKind, AttnDims, Config, Dims, StageDims};
pub use error::GraphError;
pub use keep_float::KeepFloat;
pub use levit_kernels::Precision;
pub use plan::{BatchLayout, Plan, Tap, MAX_PLAN_BYTES};
pub use step::{AttentionStep, ConvStep, GemmStep, ImageSource, MeanRowsStep, Step, WeightId};
pub use tensors::{
    int8_companion_names, int8_file_specs, packed_weight_shape, tensor_specs, TensorSpec,
};
