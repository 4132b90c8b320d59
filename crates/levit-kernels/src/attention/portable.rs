//! The portable primitives of the attention driver (`driver.rs`) on `wide::f32x8`
//! (the aarch64 path): scores in blocks of 16 keys (2 f32x8), `p·V` up to 2 f32x8 of
//! `val_dim` per pass (4 rows x 2 = 8 accumulators: 16 NEON registers on aarch64).
//! Lane masks are lane counts; partial vectors go through small arrays.

use wide::f32x8;

use super::driver::{self, AttnVec};
use super::kernel::AttentionKernel;
use super::AttentionArgs;
use crate::vecmath::portable as vm;
use crate::{Activation, Isa, Precision};

/// The kernel (every CPU runs it).
pub(super) fn f32_kernel() -> Option<AttentionKernel> {
    Some(AttentionKernel {
        name: "portable_f32_attention",
        precision: Precision::F32,
        isa: Isa::Portable,
        rows: attention_rows,
    })
}

/// [`attention`] as a [`super::kernel::RowsFn`].
///
/// # Safety
/// None beyond `RowsFn`'s contract, which [`attention`] needs (the portable path
/// runs everywhere).
unsafe fn attention_rows(
    args: &AttentionArgs,
    out: &mut [f32],
    scratch: &mut [f32],
    rows: core::ops::Range<usize>,
) {
    attention(args, out, scratch, rows)
}

/// Runs attention on the portable path (`args` already checked, `nk > 0`).
fn attention(
    args: &AttentionArgs,
    out: &mut [f32],
    scratch: &mut [f32],
    rows: core::ops::Range<usize>,
) {
    // SAFETY: every CPU runs the portable path; the caller (`attention_rows`) checked
    // the operands, that `rows` lies in `0..nq` and `out` holds them, and that nk > 0.
    unsafe { driver::attention::<Portable>(args, out, scratch, rows) }
}

/// `wide`, every target.
pub(super) struct Portable;

/// `a` in lanes `0..n`, `b` elsewhere.
#[inline(always)]
fn blend(n: usize, a: f32x8, b: f32x8) -> f32x8 {
    let (a, b) = (a.to_array(), b.to_array());
    f32x8::new(core::array::from_fn(|l| if l < n { a[l] } else { b[l] }))
}

// SAFETY: `load`/`store` touch `p[0..8]`, the masked forms `p[0..n]` only (through
// an array), and `prefetch` does nothing.
unsafe impl AttnVec for Portable {
    type F = f32x8;
    /// Lanes `0..n`.
    type Mask = usize;
    const LANES: usize = 8;
    const ROWS: usize = 4;
    const JV: usize = 2;
    /// One chain: the sum this path has always computed (two would round differently).
    const SUM_CHAINS: usize = 1;

    #[inline(always)]
    unsafe fn zero() -> f32x8 {
        f32x8::splat(0.0)
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> f32x8 {
        f32x8::splat(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> f32x8 {
        // SAFETY: the caller guarantees p[0..8] is in bounds (trait contract).
        f32x8::new(unsafe { p.cast::<[f32; 8]>().read_unaligned() })
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: f32x8) {
        // SAFETY: the caller guarantees p[0..8] is in bounds (trait contract).
        unsafe { p.cast::<[f32; 8]>().write_unaligned(v.to_array()) }
    }
    #[inline(always)]
    unsafe fn mask(n: usize) -> usize {
        debug_assert!(n <= 8);
        n
    }
    #[inline(always)]
    unsafe fn load_masked(p: *const f32, n: usize) -> f32x8 {
        if n == 8 {
            // SAFETY: a full mask: p[0..8] is in bounds (trait contract).
            return unsafe { Self::load(p) };
        }
        let mut a = [0.0f32; 8];
        // SAFETY: the caller guarantees p[0..n] is in bounds, and n <= 8.
        unsafe { core::ptr::copy_nonoverlapping(p, a.as_mut_ptr(), n) };
        f32x8::new(a)
    }
    #[inline(always)]
    unsafe fn store_masked(p: *mut f32, n: usize, v: f32x8) {
        if n == 8 {
            // SAFETY: a full mask: p[0..8] is in bounds (trait contract).
            return unsafe { Self::store(p, v) };
        }
        // SAFETY: the caller guarantees p[0..n] is in bounds, and n <= 8.
        unsafe { core::ptr::copy_nonoverlapping(v.to_array().as_ptr(), p, n) };
    }
    #[inline(always)]
    unsafe fn select(n: usize, a: f32x8, b: f32x8) -> f32x8 {
        blend(n, a, b)
    }
    #[inline(always)]
    unsafe fn fmadd(a: f32x8, b: f32x8, c: f32x8) -> f32x8 {
        a.mul_add(b, c)
    }
    #[inline(always)]
    unsafe fn scale_bias(acc: f32x8, scale: f32x8, bias: f32x8) -> f32x8 {
        acc * scale + bias
    }
    #[inline(always)]
    unsafe fn add(a: f32x8, b: f32x8) -> f32x8 {
        a + b
    }
    #[inline(always)]
    unsafe fn sub(a: f32x8, b: f32x8) -> f32x8 {
        a - b
    }
    #[inline(always)]
    unsafe fn div(a: f32x8, b: f32x8) -> f32x8 {
        a / b
    }
    #[inline(always)]
    unsafe fn max(a: f32x8, b: f32x8) -> f32x8 {
        a.max(b)
    }
    #[inline(always)]
    unsafe fn exp_nonpositive(x: f32x8) -> f32x8 {
        // The general `exp`: the bits this path has always produced.
        vm::exp(x)
    }
    #[inline(always)]
    unsafe fn activate(act: Activation, x: f32x8) -> f32x8 {
        vm::activate(act, x)
    }
    #[inline(always)]
    unsafe fn reduce_add(x: f32x8) -> f32 {
        x.reduce_add()
    }
    #[inline(always)]
    unsafe fn reduce_max(x: f32x8) -> f32 {
        x.to_array().into_iter().fold(f32::NEG_INFINITY, f32::max)
    }
    #[inline(always)]
    unsafe fn prefetch(_p: *const f32) {}
}
