//! The AVX-512 primitives of the attention driver (`driver.rs`): 16-lane `__m512`,
//! `__mmask16` lane masks. Blocks of 8 query rows: scores come in blocks of 32 keys
//! (8 rows x 2 zmm = 16 accumulators of the 32 zmm), `p·V` runs up to 2 zmm of
//! `val_dim` per pass (8 x 2 = 16 accumulators). Against the 4-row blocks of AVX2
//! (4 x 4 in `p·V`), each V row loaded from L2 feeds twice the FMAs: measured on
//! Sapphire Rapids, 1 thread, best of alternating runs, LeViT-384's stage-0 shape
//! (H 6, D 32, Dv 64, 196 x 196) 817 -> 703 µs, LeViT-128S's (H 4, D 16, Dv 32)
//! 383 -> 327 µs; 6 rows x 4 (24 accumulators) was slower than both. Same bits.

use core::arch::x86_64::*;

use super::driver::{self, AttnVec};
use super::kernel::AttentionKernel;
use super::AttentionArgs;
use crate::vecmath::avx512 as vm;
use crate::{Activation, Isa, Precision};

/// The kernel, where this CPU runs it.
pub(super) fn f32_kernel() -> Option<AttentionKernel> {
    Isa::Avx512.is_supported().then_some(AttentionKernel {
        name: "avx512_f32_attention",
        precision: Precision::F32,
        isa: Isa::Avx512,
        rows: attention,
    })
}

/// Runs attention on AVX-512: the shared driver, compiled with AVX-512 enabled.
///
/// # Safety
/// The CPU must support AVX-512F/VL/DQ/BW + FMA, `args.check(out.len(),
/// scratch.len())` must hold and `args.shape.nk > 0`.
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,fma")]
unsafe fn attention(
    args: &AttentionArgs,
    out: &mut [f32],
    scratch: &mut [f32],
    rows: core::ops::Range<usize>,
) {
    // SAFETY: this function's contract is the driver's, with the CPU running AVX-512.
    unsafe { driver::attention::<Avx512>(args, out, scratch, rows) }
}

/// AVX-512F/VL/DQ/BW + FMA.
pub(super) struct Avx512;

// SAFETY: the loads and stores touch `p[0..16]` or, masked, exactly the mask's lanes
// (masked-off lanes never fault); `_mm_prefetch` never faults.
unsafe impl AttnVec for Avx512 {
    type F = __m512;
    type Mask = __mmask16;
    const LANES: usize = 16;
    const ROWS: usize = 8;
    const JV: usize = 2;
    const SUM_CHAINS: usize = 2;

    // In every method, the SAFETY of the intrinsics is the trait's contract: the
    // caller runs on a CPU with AVX-512F/VL/DQ/BW + FMA, and for pointers, with the
    // lanes touched in bounds.
    #[inline(always)]
    unsafe fn zero() -> __m512 {
        // SAFETY: see above.
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m512 {
        // SAFETY: see above.
        unsafe { _mm512_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m512 {
        // SAFETY: see above.
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m512) {
        // SAFETY: see above.
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn mask(n: usize) -> __mmask16 {
        vm::mask(n)
    }
    #[inline(always)]
    unsafe fn load_masked(p: *const f32, m: __mmask16) -> __m512 {
        // SAFETY: see above.
        unsafe { _mm512_maskz_loadu_ps(m, p) }
    }
    #[inline(always)]
    unsafe fn store_masked(p: *mut f32, m: __mmask16, v: __m512) {
        // SAFETY: see above.
        unsafe { _mm512_mask_storeu_ps(p, m, v) }
    }
    #[inline(always)]
    unsafe fn select(m: __mmask16, a: __m512, b: __m512) -> __m512 {
        // SAFETY: see above.
        unsafe { _mm512_mask_blend_ps(m, b, a) }
    }
    #[inline(always)]
    unsafe fn fmadd(a: __m512, b: __m512, c: __m512) -> __m512 {
        // SAFETY: see above.
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn scale_bias(acc: __m512, scale: __m512, bias: __m512) -> __m512 {
        // SAFETY: see above.
        unsafe { _mm512_fmadd_ps(acc, scale, bias) }
    }
    #[inline(always)]
    unsafe fn add(a: __m512, b: __m512) -> __m512 {
        // SAFETY: see above.
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn sub(a: __m512, b: __m512) -> __m512 {
        // SAFETY: see above.
        unsafe { _mm512_sub_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn div(a: __m512, b: __m512) -> __m512 {
        // SAFETY: see above.
        unsafe { _mm512_div_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn max(a: __m512, b: __m512) -> __m512 {
        // SAFETY: see above.
        unsafe { _mm512_max_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn exp_nonpositive(x: __m512) -> __m512 {
        // SAFETY: see above.
        unsafe { vm::exp_nonpositive(x) }
    }
    #[inline(always)]
    unsafe fn activate(act: Activation, x: __m512) -> __m512 {
        // SAFETY: see above.
        unsafe { vm::activate(act, x) }
    }
    #[inline(always)]
    unsafe fn reduce_add(x: __m512) -> f32 {
        // SAFETY: see above.
        unsafe { _mm512_reduce_add_ps(x) }
    }
    #[inline(always)]
    unsafe fn reduce_max(x: __m512) -> f32 {
        // SAFETY: see above.
        unsafe { _mm512_reduce_max_ps(x) }
    }
    #[inline(always)]
    unsafe fn prefetch(p: *const f32) {
        // SAFETY: see above; a prefetch of any address is only a hint.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) }
    }
}
