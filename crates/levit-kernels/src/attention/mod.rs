//! Multi-head attention with a learned additive bias, as LeViT computes it:
//! `o_h = softmax((q_h · k_hᵀ) * scale + bias_h) · v_h`, then `act(o)` stored
//! head-major (`out[n][h*val_dim + j]`), ready for the projection GEMM.
//!
//! q, k and v are read in place from the projection outputs through [`HeadView`]s, so
//! no transpose or split pass is needed.

pub mod reference;

use crate::{Activation, Isa};

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
    /// Floats of scratch the kernels need.
    pub fn scratch_len(&self) -> usize {
        self.nk.div_ceil(16) * 16 * 16
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

/// Runs attention on the chosen path; `scratch` needs [`AttentionShape::scratch_len`].
///
/// # Panics
/// If the operands do not satisfy [`AttentionArgs::check`] (validated at plan time).
pub fn attention(isa: Isa, args: &AttentionArgs, out: &mut [f32], scratch: &mut [f32]) {
    if let Err(e) = args.check(out.len(), scratch.len()) {
        panic!("attention called with inconsistent operands: {e}");
    }
    let _ = isa;
    reference::attention(args, out, scratch);
}
