//! The execution plan: a flat list of kernel calls over ranges of one arena, and the
//! tables they read. Built by [`Plan::build`] (`build.rs`); the steps are in `step.rs`.

use levit_kernels::Precision;

use crate::arena_layout::BufRange;
use crate::step::Step;
use crate::{AttnDims, Config, Dims, GraphError, TensorSpec};

/// Most bytes a plan may need beyond the weight file: gathered attention-bias tables
/// (allocated at load) plus the activation arena (allocated per engine). Both grow with
/// the config alone (a bias table is `nq` times its stored size), so without a bound a
/// file of a few hundred KB could ask for hundreds of GB. 4 GiB admits every timm config
/// up to `img_size` 1024 (LeViT-384 at 1024 needs about 2 GB of bias tables).
pub const MAX_PLAN_BYTES: u64 = 4 << 30;

pub(crate) fn check_plan_bytes(floats: u64) -> Result<(), GraphError> {
    let bytes = floats.saturating_mul(4);
    if bytes > MAX_PLAN_BYTES {
        return Err(GraphError::TooLarge {
            needed_mib: bytes.div_ceil(1 << 20),
            limit_mib: MAX_PLAN_BYTES >> 20,
        });
    }
    Ok(())
}

/// Floats of all gathered bias tables `[heads][nq][nk]` of a model.
pub(crate) fn bias_floats(dims: &Dims) -> u64 {
    let table = |a: &AttnDims| (a.heads as u64) * (a.nq() as u64) * (a.nk() as u64);
    dims.stages
        .iter()
        .map(|s| {
            let down = s.downsample.as_ref().map_or(0, |(a, _)| table(a));
            down.saturating_add((s.depth as u64).saturating_mul(table(&s.attn)))
        })
        .fold(0u64, u64::saturating_add)
}

/// A named intermediate activation: `[rows, cols]` row-major in `buf`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tap {
    /// `stem`, `stage0`, `stage1`, ...
    pub name: String,
    /// Where it lives when its step runs.
    pub buf: BufRange,
    /// Rows (tokens).
    pub rows: usize,
    /// Columns (channels).
    pub cols: usize,
}

/// A model as data: steps, arena layout, weights to bind, bias and row tables.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The config it was built from.
    pub config: Config,
    /// The precision its GEMM and conv weights are stored in.
    pub precision: Precision,
    /// Derived sizes.
    pub dims: Dims,
    /// Kernel calls in order.
    pub steps: Vec<Step>,
    /// A name per step (`stem.0.im2col`, `stages.1.blocks.0.attn.qkv`, ...): the
    /// weights' prefix for GEMMs, `{attn}.core` for attention, for profiles.
    pub labels: Vec<String>,
    /// Tensors the steps read, with their expected stored shapes.
    /// The precision of each is the one its step runs in, which may differ from the
    /// file's (see `build::conv_precision`; the model converts at load).
    pub weights: Vec<TensorSpec>,
    /// Arena length in f32.
    pub arena_len: usize,
    /// Input length (`in_chans * img_size²`).
    pub input_len: usize,
    /// Where the logits end up.
    pub output: BufRange,
    /// All gathered attention-bias tables, back to back.
    pub bias_tables: Vec<f32>,
    /// All row-gather tables, back to back.
    pub row_tables: Vec<u32>,
    /// Named intermediates.
    pub taps: Vec<Tap>,
    /// Scratch floats one thread needs for the largest attention step (the engine
    /// allocates one such region per thread, outside the arena).
    pub attention_scratch: usize,
}

impl Plan {
    /// Multiply-accumulates per image (convs, linears, both attention matmuls).
    pub fn macs(&self) -> u64 {
        self.steps.iter().map(Step::macs).sum()
    }
}

#[cfg(test)]
mod tests;
