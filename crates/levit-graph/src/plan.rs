//! The execution plan: a flat list of kernel calls over ranges of one arena, and the
//! tables they read. Built by [`Plan::build`] (`build.rs`); the steps are in `step.rs`.

use levit_kernels::Precision;

use crate::arena_layout::{ArenaPlanner, BufId, BufRange};
use crate::build::PendingStep;
use crate::step::Step;
use crate::BiasTables;
use crate::{AttnDims, Config, Dims, GraphError, KeepFloat, TensorSpec};

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
#[derive(Debug)]
pub struct Plan {
    /// The config it was built from.
    pub config: Config,
    /// The precision its GEMM and conv weights are stored in.
    pub precision: Precision,
    /// The layers an int8 plan keeps in float (bf16); empty in other precisions.
    pub keep_float: KeepFloat,
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
    pub bias_tables: BiasTables,
    /// All row-gather tables, back to back.
    pub row_tables: Vec<u32>,
    /// Named intermediates.
    pub taps: Vec<Tap>,
    /// Scratch floats one thread needs for the largest attention step (the engine
    /// allocates one such region per thread, outside the arena).
    pub attention_scratch: usize,
    /// The steps before their buffers were packed, to lay out other batch sizes.
    pub(crate) unpacked: Unpacked,
}

impl Plan {
    /// Whether the weight `name` is held bf16-rounded: everywhere in a bf16 plan (also
    /// the small stem convs that run in f32, so that an f32 file run in bf16 and the
    /// bf16 file of the same weights give the same bits), and in the layers an int8
    /// plan keeps in float.
    pub fn holds_bf16(&self, name: &str) -> bool {
        let layer = name.strip_suffix(".weight").unwrap_or(name);
        self.precision == Precision::Bf16
            || (self.precision == Precision::Int8 && self.keep_float.keeps(layer))
    }

    /// Multiply-accumulates per image (convs, linears, both attention matmuls).
    pub fn macs(&self) -> u64 {
        self.steps.iter().map(Step::macs).sum()
    }

    /// The steps and arena of a batch of up to `images` images (0 means 1): every
    /// token buffer holds `images` copies back to back, so a GEMM step runs over the
    /// rows of all of them at once (`m` rows per image, row gathers repeated per image
    /// in [`BatchLayout::row_tables`]); the first [`BatchLayout::per_image_steps`]
    /// (the stem) run image by image. `batch_layout(1)` is this plan's own layout
    /// (`steps`, `arena_len`, `output`, `row_tables`, `taps`). Errors if the arena
    /// would be over [`MAX_PLAN_BYTES`].
    pub fn batch_layout(&self, images: usize) -> Result<BatchLayout, GraphError> {
        self.unpacked.layout(images.max(1))
    }
}

/// A [`Plan`]'s steps laid out for a batch ([`Plan::batch_layout`]).
#[derive(Clone, Debug)]
pub struct BatchLayout {
    /// Most images one run holds.
    pub images: usize,
    /// Kernel calls in order, over ranges of this layout's arena. A GEMM's `m` and a
    /// mean's `rows` are per image; its buffers hold `images` copies.
    pub steps: Vec<Step>,
    /// Steps `0..per_image_steps` (the stem convs) run for one image after another;
    /// the rest once for the batch.
    pub per_image_steps: usize,
    /// Arena length in f32.
    pub arena_len: usize,
    /// The logits of every image, `[images, classes]`.
    pub output: BufRange,
    /// Row-gather tables for `images` images, back to back.
    pub row_tables: Vec<u32>,
    /// Named intermediates (a tap's buffer holds every image; `rows x cols` is one).
    pub taps: Vec<Tap>,
}

impl BatchLayout {
    /// Image `i`'s part of `buf`, a buffer of a step outside the stem (every such
    /// buffer holds `images` equal copies).
    pub fn image_part(&self, buf: BufRange, i: usize) -> BufRange {
        let len = buf.len / self.images;
        BufRange {
            offset: buf.offset + i * len,
            len,
        }
    }
}

/// The plan before packing: the steps over buffer ids and the buffers' sizes and
/// lifetimes.
#[derive(Clone, Debug)]
pub(crate) struct Unpacked {
    pub steps: Vec<PendingStep>,
    pub buffers: ArenaPlanner,
    pub taps: Vec<(String, BufId, usize, usize)>,
    pub logits: BufId,
    pub classes: usize,
    /// Row-gather tables of one image.
    pub image_row_tables: Vec<u32>,
    pub per_image_steps: usize,
}

impl Unpacked {
    pub(crate) fn layout(&self, images: usize) -> Result<BatchLayout, GraphError> {
        let too_large = || GraphError::TooLarge {
            needed_mib: u64::MAX >> 20,
            limit_mib: MAX_PLAN_BYTES >> 20,
        };
        let (ranges, arena_len) = self
            .buffers
            .pack(images, self.per_image_steps)
            .ok_or_else(too_large)?;
        check_plan_bytes(arena_len as u64)?;
        let range = |id: BufId| ranges[id.0];
        let mut row_tables = Vec::new();
        let mut steps = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            let mut step = step.clone();
            if let Step::Gemm(g) = &mut step {
                if let Some(rows) = g.a_rows.clone() {
                    // Image i's rows of a batched `a` start `i * image_rows` rows later.
                    let image_rows = if self.buffers.is_batched(g.a) {
                        self.buffers.image_len(g.a) / g.lda.max(1)
                    } else {
                        0
                    };
                    let start = row_tables.len();
                    for i in 0..images {
                        let shift = u32::try_from(i * image_rows).map_err(|_| too_large())?;
                        for &row in &self.image_row_tables[rows.clone()] {
                            row_tables.push(row.checked_add(shift).ok_or_else(too_large)?);
                        }
                    }
                    g.a_rows = Some(start..row_tables.len());
                }
            }
            steps.push(step.map_bufs(range));
        }
        let taps = self
            .taps
            .iter()
            .map(|(name, id, rows, cols)| Tap {
                name: name.clone(),
                buf: range(*id),
                rows: *rows,
                cols: *cols,
            })
            .collect();
        Ok(BatchLayout {
            images,
            steps,
            per_image_steps: self.per_image_steps,
            arena_len,
            output: BufRange {
                offset: range(self.logits).offset,
                len: images * self.classes,
            },
            row_tables,
            taps,
        })
    }
}

#[cfg(test)]
mod tests;
