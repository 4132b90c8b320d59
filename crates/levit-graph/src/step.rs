//! The steps of a plan: one struct per kind of kernel call, each holding everything
//! building, buffer mapping, validation, execution and profiling need, so that adding
//! a field is one edit. `B` names an arena buffer: a [`BufRange`] in a finished plan,
//! an id while the plan is being built (before buffers have offsets).

use std::ops::Range;

use levit_kernels::attention::{AttentionShape, HeadView};
use levit_kernels::conv::{ConvGeometry, ImageLayout};
use levit_kernels::gemm::Epilogue;
use levit_kernels::{Activation, Precision};

use crate::arena_layout::BufRange;

/// Index into [`crate::Plan::weights`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightId(pub usize);

/// Where a conv reads its image from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageSource<B = BufRange> {
    /// The caller's input image (CHW).
    Input,
    /// A previous conv's output (HWC) in the arena.
    Arena(B),
}

/// `c = epilogue(a · weight + bias)`: one GEMM over token rows.
#[derive(Clone, Debug, PartialEq)]
pub struct GemmStep<B = BufRange> {
    /// Left operand.
    pub a: B,
    /// Its row stride.
    pub lda: usize,
    /// Optional row gather (range of [`crate::Plan::row_tables`]).
    pub a_rows: Option<Range<usize>>,
    /// Rows.
    pub m: usize,
    /// Reduction.
    pub k: usize,
    /// Columns.
    pub n: usize,
    /// Packed weight, stored in `precision`.
    pub weight: WeightId,
    /// The weight's precision: which GEMM kernel runs the step.
    pub precision: Precision,
    /// Bias (f32 in every precision).
    pub bias: WeightId,
    /// Epilogue.
    pub epilogue: Epilogue,
    /// Output.
    pub c: B,
    /// Output row stride.
    pub ldc: usize,
}

/// A 3x3 stride-2 pad-1 convolution, run in blocks of `block_rows` output image rows:
/// im2col of the block into `cols` (cache-sized), then a GEMM with the packed weights
/// into the block's rows of `out` (`[hout*wout, cout]`, channels-last).
#[derive(Clone, Debug, PartialEq)]
pub struct ConvStep<B = BufRange> {
    /// Image.
    pub src: ImageSource<B>,
    /// Its layout.
    pub layout: ImageLayout,
    /// Its geometry.
    pub geometry: ConvGeometry,
    /// Output image rows per block.
    pub block_rows: usize,
    /// Column matrix of one block (`block_rows * wout * 9*cin`).
    pub cols: B,
    /// Packed weight `[9*cin, cout]`, stored in `precision`.
    pub weight: WeightId,
    /// The weight's precision.
    pub precision: Precision,
    /// Bias.
    pub bias: WeightId,
    /// Epilogue.
    pub epilogue: Epilogue,
    /// Output channels.
    pub cout: usize,
    /// Output `[hout*wout, cout]`.
    pub out: B,
    /// Whether `out` holds one copy per image of a batch (the stem's last conv writes
    /// the token matrix of each image), else one copy reused image after image.
    pub batched_out: bool,
}

impl<B> ConvStep<B> {
    /// Output image rows of each block.
    pub fn blocks(&self) -> impl Iterator<Item = Range<usize>> {
        let hout = self.geometry.hout();
        let block = self.block_rows.max(1);
        (0..hout)
            .step_by(block)
            .map(move |start| start..(start + block).min(hout))
    }
}

/// Multi-head attention with a gathered additive bias table.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionStep<B = BufRange> {
    /// Sizes.
    pub shape: AttentionShape,
    /// Buffer holding q.
    pub q: B,
    /// q layout.
    pub q_view: HeadView,
    /// Buffer holding k and v.
    pub kv: B,
    /// k layout.
    pub k_view: HeadView,
    /// v layout.
    pub v_view: HeadView,
    /// The gathered `[heads][nq][nk]` table (range of [`crate::Plan::bias_tables`]).
    pub bias_table: Range<usize>,
    /// Activation on the output.
    pub act: Activation,
    /// The plan's precision: a bf16 step runs the bf16 attention kernel of its level
    /// where there is one (`q·kᵀ` and `p·V` on bf16-rounded operands), the f32 one
    /// otherwise (`levit_kernels::attention::AttentionKernel::select`).
    pub precision: Precision,
    /// Output `[nq, heads*val_dim]`.
    pub out: B,
}

/// Average over token rows.
#[derive(Clone, Debug, PartialEq)]
pub struct MeanRowsStep<B = BufRange> {
    /// Tokens.
    pub x: B,
    /// Rows.
    pub rows: usize,
    /// Channels.
    pub cols: usize,
    /// Output.
    pub out: B,
}

/// One kernel call. Every range and shape was validated when the plan was built.
#[derive(Clone, Debug, PartialEq)]
pub enum Step<B = BufRange> {
    /// A stem convolution.
    Conv(ConvStep<B>),
    /// A linear layer over tokens.
    Gemm(GemmStep<B>),
    /// Attention with bias.
    Attention(AttentionStep<B>),
    /// Mean over tokens.
    MeanRows(MeanRowsStep<B>),
    /// A named intermediate is complete (for tracing and per-stage tests): index into
    /// [`crate::Plan::taps`].
    Tap(usize),
}

impl<B: Copy> Step<B> {
    /// The same step with every buffer handle passed through `f`.
    pub(crate) fn map_bufs<C>(self, f: impl Fn(B) -> C) -> Step<C> {
        match self {
            Step::Conv(s) => Step::Conv(ConvStep {
                src: match s.src {
                    ImageSource::Input => ImageSource::Input,
                    ImageSource::Arena(b) => ImageSource::Arena(f(b)),
                },
                cols: f(s.cols),
                out: f(s.out),
                layout: s.layout,
                geometry: s.geometry,
                block_rows: s.block_rows,
                weight: s.weight,
                precision: s.precision,
                bias: s.bias,
                epilogue: s.epilogue,
                cout: s.cout,
                batched_out: s.batched_out,
            }),
            Step::Gemm(s) => Step::Gemm(GemmStep {
                a: f(s.a),
                c: f(s.c),
                lda: s.lda,
                a_rows: s.a_rows,
                m: s.m,
                k: s.k,
                n: s.n,
                weight: s.weight,
                precision: s.precision,
                bias: s.bias,
                epilogue: s.epilogue,
                ldc: s.ldc,
            }),
            Step::Attention(s) => Step::Attention(AttentionStep {
                q: f(s.q),
                kv: f(s.kv),
                out: f(s.out),
                shape: s.shape,
                q_view: s.q_view,
                k_view: s.k_view,
                v_view: s.v_view,
                bias_table: s.bias_table,
                act: s.act,
                precision: s.precision,
            }),
            Step::MeanRows(s) => Step::MeanRows(MeanRowsStep {
                x: f(s.x),
                out: f(s.out),
                rows: s.rows,
                cols: s.cols,
            }),
            Step::Tap(i) => Step::Tap(i),
        }
    }

    /// The arena buffers the step touches (a tap's buffer lives in the tap list).
    pub fn buffers(&self) -> impl Iterator<Item = B> {
        let (a, b, c) = match self {
            Step::Conv(s) => {
                let img = match s.src {
                    ImageSource::Input => None,
                    ImageSource::Arena(b) => Some(b),
                };
                (img, Some(s.cols), Some(s.out))
            }
            Step::Gemm(s) => (Some(s.a), Some(s.c), None),
            Step::Attention(s) => (Some(s.q), Some(s.kv), Some(s.out)),
            Step::MeanRows(s) => (Some(s.x), Some(s.out), None),
            Step::Tap(_) => (None, None, None),
        };
        [a, b, c].into_iter().flatten()
    }
}

impl<B> Step<B> {
    /// Multiply-accumulates of this step (GEMMs, convs and the two attention matmuls).
    pub fn macs(&self) -> u64 {
        match self {
            Step::Gemm(s) => (s.m * s.k * s.n) as u64,
            Step::Conv(s) => {
                let g = &s.geometry;
                (g.hout() * g.wout() * g.k() * s.cout) as u64
            }
            Step::Attention(s) => {
                let a = &s.shape;
                (a.heads * a.nq * a.nk * (a.key_dim + a.val_dim)) as u64
            }
            Step::MeanRows(_) | Step::Tap(_) => 0,
        }
    }

    /// The precision of the step's products, if it has any: of the weights a GEMM
    /// or conv multiplies by; of `q·kᵀ` and `p·V` in attention (the plan's).
    pub fn precision(&self) -> Option<Precision> {
        match self {
            Step::Gemm(s) => Some(s.precision),
            Step::Conv(s) => Some(s.precision),
            Step::Attention(s) => Some(s.precision),
            Step::MeanRows(_) | Step::Tap(_) => None,
        }
    }

    /// A short name of the kind of step, for profiles: `gemm`, `conv`, `attention`,
    /// `mean`, `tap`.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Conv(_) => "conv",
            Step::Gemm(_) => "gemm",
            Step::Attention(_) => "attention",
            Step::MeanRows(_) => "mean",
            Step::Tap(_) => "tap",
        }
    }
}
