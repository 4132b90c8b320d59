//! The AVX2 + FMA primitives of the attention driver (`driver.rs`): 8-lane `__m256`,
//! lane masks for `vmaskmovps`. Scores come in blocks of 16 keys (2 ymm); `p·V` runs
//! up to 2 ymm of `val_dim` per pass (4 rows x 2 = 8 accumulators, 2 V vectors and a
//! broadcast: 11 of the 16 ymm registers, enough independent chains to cover the FMA
//! latency).

use core::arch::x86_64::*;

use super::driver::{self, AttnVec};
use super::kernel::AttentionKernel;
use super::AttentionArgs;
use crate::vecmath::avx2 as vm;
use crate::{Activation, Isa, Precision};

/// The kernel, where this CPU runs it.
pub(super) fn f32_kernel() -> Option<AttentionKernel> {
    Isa::Avx2.is_supported().then_some(AttentionKernel {
        name: "avx2_f32_attention",
        precision: Precision::F32,
        isa: Isa::Avx2,
        rows: attention,
    })
}

/// Runs attention on AVX2: the shared driver, compiled with AVX2 + FMA enabled.
///
/// # Safety
/// The CPU must support AVX2 + FMA, `args.check(out.len(), scratch.len())` must hold
/// and `args.shape.nk > 0`.
#[target_feature(enable = "avx2,fma")]
unsafe fn attention(
    args: &AttentionArgs,
    out: &mut [f32],
    scratch: &mut [f32],
    rows: core::ops::Range<usize>,
) {
    // SAFETY: this function's contract is the driver's, with the CPU running AVX2.
    unsafe { driver::attention::<Avx2>(args, out, scratch, rows) }
}

/// AVX2 + FMA.
pub(super) struct Avx2;

// SAFETY: the loads and stores touch `p[0..8]` or, masked (`vmaskmovps`), exactly the
// mask's lanes (masked-off lanes never fault); `_mm_prefetch` never faults.
unsafe impl AttnVec for Avx2 {
    type F = __m256;
    type Mask = __m256i;
    const LANES: usize = 8;
    const ROWS: usize = 4;
    const JV: usize = 2;
    const SUM_CHAINS: usize = 2;

    // In every method, the SAFETY of the intrinsics is the trait's contract: the
    // caller runs on a CPU with AVX2 + FMA, and for pointers, with the lanes touched
    // in bounds.
    #[inline(always)]
    unsafe fn zero() -> __m256 {
        // SAFETY: see above.
        unsafe { _mm256_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m256 {
        // SAFETY: see above.
        unsafe { _mm256_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        // SAFETY: see above.
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        // SAFETY: see above.
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn mask(n: usize) -> __m256i {
        // SAFETY: see above.
        unsafe { vm::mask(n) }
    }
    #[inline(always)]
    unsafe fn load_masked(p: *const f32, m: __m256i) -> __m256 {
        // SAFETY: see above.
        unsafe { _mm256_maskload_ps(p, m) }
    }
    #[inline(always)]
    unsafe fn store_masked(p: *mut f32, m: __m256i, v: __m256) {
        // SAFETY: see above.
        unsafe { _mm256_maskstore_ps(p, m, v) }
    }
    #[inline(always)]
    unsafe fn select(m: __m256i, a: __m256, b: __m256) -> __m256 {
        // SAFETY: see above.
        unsafe { _mm256_blendv_ps(b, a, _mm256_castsi256_ps(m)) }
    }
    #[inline(always)]
    unsafe fn fmadd(a: __m256, b: __m256, c: __m256) -> __m256 {
        // SAFETY: see above.
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn scale_bias(acc: __m256, scale: __m256, bias: __m256) -> __m256 {
        // SAFETY: see above.
        unsafe { _mm256_fmadd_ps(acc, scale, bias) }
    }
    #[inline(always)]
    unsafe fn add(a: __m256, b: __m256) -> __m256 {
        // SAFETY: see above.
        unsafe { _mm256_add_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn sub(a: __m256, b: __m256) -> __m256 {
        // SAFETY: see above.
        unsafe { _mm256_sub_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn div(a: __m256, b: __m256) -> __m256 {
        // SAFETY: see above.
        unsafe { _mm256_div_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn max(a: __m256, b: __m256) -> __m256 {
        // SAFETY: see above.
        unsafe { _mm256_max_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn exp_nonpositive(x: __m256) -> __m256 {
        // SAFETY: see above.
        unsafe { vm::exp_nonpositive(x) }
    }
    #[inline(always)]
    unsafe fn activate(act: Activation, x: __m256) -> __m256 {
        // SAFETY: see above.
        unsafe { vm::activate(act, x) }
    }
    #[inline(always)]
    unsafe fn reduce_add(x: __m256) -> f32 {
        // SAFETY: see above.
        unsafe {
            let m = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps::<1>(x));
            let m = _mm_add_ps(m, _mm_movehl_ps(m, m));
            let m = _mm_add_ss(m, _mm_shuffle_ps::<1>(m, m));
            _mm_cvtss_f32(m)
        }
    }
    #[inline(always)]
    unsafe fn reduce_max(x: __m256) -> f32 {
        // SAFETY: see above.
        unsafe {
            let m = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps::<1>(x));
            let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
            let m = _mm_max_ss(m, _mm_shuffle_ps::<1>(m, m));
            _mm_cvtss_f32(m)
        }
    }
    #[inline(always)]
    unsafe fn prefetch(p: *const f32) {
        // SAFETY: see above; a prefetch of any address is only a hint.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) }
    }
}
