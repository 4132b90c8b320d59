//! Packed GEMM with fused epilogues: `C[m, n] = epilogue(A[m, :] · B[:, n] + bias[n])`.
//!
//! `B` (the weights) is pre-packed at conversion time in panels of [`NR`] columns:
//! `packed[p][k][j] = B[k][p*NR + j]` (zero-padded past `n`). `A` (activations) is read
//! in place, row `i` starting at `a[row(i) * lda]`, where `row(i)` is `i` or, for the
//! stride-2 query subsampling, `a_rows[i]` (a gather table computed at plan time).

pub mod reference;

use crate::{packed_len, Activation, Isa, NR};

/// What happens to an output tile before it is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epilogue {
    /// `C = act(acc + bias)`.
    BiasAct(Activation),
    /// `C = C + (acc + bias)`: the residual add of a LeViT block, in place.
    BiasResidual,
}

/// Operands of one GEMM call. Shapes are checked by [`GemmArgs::check`] (debug builds
/// assert it inside the kernels; the plan checks it once at load).
#[derive(Clone, Copy, Debug)]
pub struct GemmArgs<'a> {
    /// Rows of the output.
    pub m: usize,
    /// Reduction length.
    pub k: usize,
    /// Columns of the output.
    pub n: usize,
    /// Left operand, row-major with row stride `lda`.
    pub a: &'a [f32],
    /// Row stride of `a` in f32.
    pub lda: usize,
    /// Optional row gather: output row `i` reads `a` row `a_rows[i]`.
    pub a_rows: Option<&'a [u32]>,
    /// Packed right operand, `[panels(n)][k][NR]`.
    pub b: &'a [f32],
    /// Bias, at least `n` long.
    pub bias: &'a [f32],
    /// Row stride of the output in f32.
    pub ldc: usize,
    /// Fused epilogue.
    pub epilogue: Epilogue,
}

impl GemmArgs<'_> {
    /// Validates every index the kernels will touch for an output of `c_len` floats.
    pub fn check(&self, c_len: usize) -> Result<(), String> {
        let GemmArgs { m, k, n, .. } = *self;
        if m == 0 || n == 0 {
            return Ok(());
        }
        if self.b.len() < packed_len(k, n) {
            return Err(format!(
                "packed B has {} floats, need {}",
                self.b.len(),
                packed_len(k, n)
            ));
        }
        if self.bias.len() < n {
            return Err(format!("bias has {} floats, need {n}", self.bias.len()));
        }
        if self.ldc < n || c_len < (m - 1) * self.ldc + n {
            return Err(format!(
                "output of {c_len} floats with ldc {} too small for {m}x{n}",
                self.ldc
            ));
        }
        let max_row = match self.a_rows {
            Some(rows) => {
                if rows.len() < m {
                    return Err(format!("row table has {} entries, need {m}", rows.len()));
                }
                rows[..m].iter().copied().max().unwrap_or(0) as usize
            }
            None => m - 1,
        };
        if k > 0 && (self.lda < k || self.a.len() < max_row * self.lda + k) {
            return Err(format!(
                "A of {} floats with lda {} too small for row {max_row}, k {k}",
                self.a.len(),
                self.lda
            ));
        }
        Ok(())
    }

    /// Offset of the first element of output row `i`'s A row.
    #[inline]
    pub fn a_row_offset(&self, i: usize) -> usize {
        match self.a_rows {
            Some(rows) => rows[i] as usize * self.lda,
            None => i * self.lda,
        }
    }
}

/// Runs the GEMM on the chosen path.
///
/// # Panics
/// If the operands do not satisfy [`GemmArgs::check`]: callers (the plan) validate
/// shapes once at load, so a panic here is a bug, never bad user input.
pub fn gemm(isa: Isa, args: &GemmArgs, c: &mut [f32]) {
    if let Err(e) = args.check(c.len()) {
        panic!("gemm called with inconsistent operands: {e}");
    }
    let _ = isa;
    reference::gemm(args, c);
}

/// Packs a row-major `B [k, n]` into panels (used by tests and by tools; the engine's
/// weights come packed from the file).
pub fn pack_b(b: &[f32], k: usize, n: usize) -> Vec<f32> {
    assert!(b.len() >= k * n);
    let mut out = vec![0.0; packed_len(k, n)];
    for p in 0..crate::panels(n) {
        for kk in 0..k {
            for j in 0..NR {
                let col = p * NR + j;
                if col < n {
                    out[(p * k + kk) * NR + j] = b[kk * n + col];
                }
            }
        }
    }
    out
}
