//! Multi-head attention with a learned additive bias, as LeViT computes it:
//! `o_h = softmax((q_h · k_hᵀ) * scale + bias_h) · v_h`, then `act(o)` stored
//! head-major (`out[n][h*val_dim + j]`), ready for the projection GEMM.
//!
//! q, k and v are read in place from the projection outputs through [`HeadView`]s, so
//! no transpose or split pass is needed.
//!
//! # Structure
//! The algorithm is written once, in `driver.rs`, generic over a small trait of vector
//! primitives (`driver::AttnVec`: loads and stores, masked ones, FMA, max, `exp`, the
//! activation, horizontal sums, a prefetch, and the tile sizes). Per head, K is
//! transposed into scratch (`kt[d][m]`, keys zero-padded to a multiple of 32) so that
//! the scores of a block of up to 4 query rows are a small register-tiled GEMM; the
//! softmax runs in place on the padded score rows (padding = `-inf`); `p·V` reads V
//! rows in place and accumulates the block's output rows in registers.
//!
//! `avx512.rs`, `avx2.rs` and `portable.rs` hold only those primitives, for
//! `__m512`, `__m256` and `wide::f32x8`, and an entry point. On x86 the entry is a
//! `#[target_feature]` function that calls the `#[inline(always)]` driver, so LLVM
//! compiles the driver and the (also `#[inline(always)]`) primitives inside it with
//! that instruction set: one copy of the kernels per path, no calls in the loops.
//! `reference.rs` is the scalar truth the tests compare the paths against.
//!
//! # Kernels by precision
//! `kernel.rs` makes each path a value, [`AttentionKernel`], chosen by (precision,
//! ISA) with one registry line per kernel, like the GEMM kernels. The f32 kernels are
//! the driver on each vector family; `amx_bf16.rs` is the bf16 kernel of the AMX level
//! (`q·kᵀ` and `p·V` on tiles over bf16-rounded operands, the softmax in f32, checked
//! against [`reference::attention_bf16_rows`]). A bf16 plan step on a level without a
//! bf16 kernel runs the level's f32 kernel; [`attention`] and [`attention_rows`] are
//! the f32 kernels.

#[cfg(target_arch = "x86_64")]
mod amx_bf16;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod driver;
mod kernel;
mod portable;
pub mod reference;

use core::ops::Range;

pub use kernel::AttentionKernel;

use crate::{Activation, Isa, Precision};

/// Most query rows a SIMD path processes together (its `AttnVec::ROWS`); sizes the
/// probability rows of the scratch.
pub(crate) const QB: usize = 8;
/// Keys are padded to a multiple of this in the transposed-K scratch.
pub(crate) const KEY_PAD: usize = 32;

/// Where the rows of one operand live: element `(row r, head h, j)` is at
/// `data[offset + r*row_stride + h*head_stride + j]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadView {
    /// Offset of `(0, 0, 0)`.
    pub offset: usize,
    /// Distance between consecutive rows (tokens).
    pub row_stride: usize,
    /// Distance between consecutive heads within a row.
    pub head_stride: usize,
}

impl HeadView {
    /// Index of `(row, head, 0)`.
    #[inline]
    pub fn at(&self, row: usize, head: usize) -> usize {
        self.offset + row * self.row_stride + head * self.head_stride
    }
}

/// Sizes of one attention call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionShape {
    /// Heads.
    pub heads: usize,
    /// q/k width per head.
    pub key_dim: usize,
    /// v width per head.
    pub val_dim: usize,
    /// Query rows.
    pub nq: usize,
    /// Key/value rows.
    pub nk: usize,
    /// Multiplies `q·k` before the bias is added (`key_dim^-0.5`).
    pub scale: f32,
}

impl AttentionShape {
    /// Floats of the gathered bias table `[heads][nq][nk]`.
    pub fn bias_len(&self) -> usize {
        self.heads * self.nq * self.nk
    }
    /// Floats of the output `[nq][heads*val_dim]`.
    pub fn out_len(&self) -> usize {
        self.nq * self.heads * self.val_dim
    }
    /// Floats of scratch every kernel needs (one call or one thread of a split
    /// call): the f32 kernels the transposed, padded K of one head and the score rows
    /// of one block of queries; the AMX bf16 kernel one head's K and V and a block's
    /// Q, scores and probabilities in tile layouts.
    pub fn scratch_len(&self) -> usize {
        let need = self.nk.div_ceil(KEY_PAD) * KEY_PAD * (self.key_dim + QB);
        #[cfg(target_arch = "x86_64")]
        let need = need.max(amx_bf16::scratch_len(self));
        need
    }
}

/// Operands of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttentionArgs<'a> {
    /// Sizes.
    pub shape: AttentionShape,
    /// Buffer holding q.
    pub q: &'a [f32],
    /// Layout of q in `q`.
    pub q_view: HeadView,
    /// Buffer holding k and v (the same projection output in LeViT).
    pub kv: &'a [f32],
    /// Layout of k in `kv`.
    pub k_view: HeadView,
    /// Layout of v in `kv`.
    pub v_view: HeadView,
    /// Gathered bias `[heads][nq][nk]`.
    pub bias: &'a [f32],
    /// Applied to the output before it is stored.
    pub act: Activation,
}

fn view_end(v: &HeadView, rows: usize, heads: usize, width: usize) -> usize {
    if rows == 0 || heads == 0 || width == 0 {
        return 0;
    }
    v.at(rows - 1, heads - 1) + width
}

impl AttentionArgs<'_> {
    /// Validates every index the kernels will touch.
    pub fn check(&self, out_len: usize, scratch_len: usize) -> Result<(), String> {
        let s = &self.shape;
        let need = [
            (
                "q",
                self.q.len(),
                view_end(&self.q_view, s.nq, s.heads, s.key_dim),
            ),
            (
                "k",
                self.kv.len(),
                view_end(&self.k_view, s.nk, s.heads, s.key_dim),
            ),
            (
                "v",
                self.kv.len(),
                view_end(&self.v_view, s.nk, s.heads, s.val_dim),
            ),
            ("bias", self.bias.len(), s.bias_len()),
            ("out", out_len, s.out_len()),
            ("scratch", scratch_len, s.scratch_len()),
        ];
        for (what, have, want) in need {
            if have < want {
                return Err(format!("attention {what}: {have} floats, need {want}"));
            }
        }
        Ok(())
    }
}

/// Runs attention on level `isa`'s f32 kernel; `scratch` needs
/// [`AttentionShape::scratch_len`]. (A plan step runs the kernel of its precision:
/// [`AttentionKernel::select`].)
///
/// # Panics
/// If the operands do not satisfy [`AttentionArgs::check`] (validated at plan time),
/// or `isa` is not supported.
pub fn attention(isa: Isa, args: &AttentionArgs, out: &mut [f32], scratch: &mut [f32]) {
    attention_rows(isa, args, out, scratch, 0..args.shape.nq);
}

/// Computes only query rows `rows` (all heads) on level `isa`'s f32 kernel: see
/// [`AttentionKernel::run_rows`].
///
/// # Panics
/// If the operands do not satisfy [`AttentionArgs::check`] for those rows, `rows` is
/// not inside `0..nq`, or `isa` is not supported.
pub fn attention_rows(
    isa: Isa,
    args: &AttentionArgs,
    out: &mut [f32],
    scratch: &mut [f32],
    rows: Range<usize>,
) {
    AttentionKernel::select(Precision::F32, isa).run_rows(args, out, scratch, rows);
}

/// Writes head `h`'s keys transposed into `kt[d*nkp + m]`, zeros for `m >= nk`.
pub(crate) fn transpose_keys(args: &AttentionArgs, h: usize, nkp: usize, kt: &mut [f32]) {
    let s = args.shape;
    let kt = &mut kt[..s.key_dim * nkp];
    for m in 0..s.nk {
        let key = &args.kv[args.k_view.at(m, h)..][..s.key_dim];
        for (d, &x) in key.iter().enumerate() {
            kt[d * nkp + m] = x;
        }
    }
    for row in kt.chunks_exact_mut(nkp) {
        row[s.nk..].fill(0.0);
    }
}
