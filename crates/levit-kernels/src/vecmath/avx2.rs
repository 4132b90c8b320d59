//! AVX2 + FMA `exp`, hardswish and SiLU on `__m256` (8 lanes).

use core::arch::x86_64::*;

use super::{EXP_HI, EXP_LO, LN2_HI, LN2_LO, LOG2E, P0, P1, P2, P3, P4, P5};
use crate::Activation;

/// `exp` of 8 lanes (see the module doc of `vecmath`).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn exp(x: __m256) -> __m256 {
    // max/min return their second operand when either is NaN: keep `x` second.
    exp_clamped(_mm256_max_ps(
        _mm256_set1_ps(EXP_LO),
        _mm256_min_ps(_mm256_set1_ps(EXP_HI), x),
    ))
}

/// [`exp`] for lanes that are `<= 0` or NaN (a softmax's `s - max`): the same bits
/// there, one clamp fewer, which the softmax-bound attention notices (3 %).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn exp_nonpositive(x: __m256) -> __m256 {
    exp_clamped(_mm256_max_ps(_mm256_set1_ps(EXP_LO), x))
}

/// [`exp`] of lanes already clamped to `[EXP_LO, EXP_HI]` (or NaN).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn exp_clamped(x: __m256) -> __m256 {
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(LOG2E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    let mut p = _mm256_set1_ps(P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P5));
    let r2 = _mm256_mul_ps(r, r);
    let y = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0));
    // n is in [-150, 128] (NaN lanes give garbage scales but y is already NaN):
    // split it so both factors 2^n1, 2^n2 are normal; y*2^n1 is exact.
    let ni = _mm256_cvtps_epi32(n);
    let n1 = _mm256_srai_epi32::<1>(ni);
    let n2 = _mm256_sub_epi32(ni, n1);
    let bias = _mm256_set1_epi32(127);
    let s1 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n1, bias)));
    let s2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n2, bias)));
    _mm256_mul_ps(_mm256_mul_ps(y, s1), s2)
}

/// `x * clamp(x + 3, 0, 6) / 6`, bit-identical to [`crate::activation::hardswish`].
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn hardswish(x: __m256) -> __m256 {
    let six = _mm256_set1_ps(6.0);
    let t = _mm256_add_ps(x, _mm256_set1_ps(3.0));
    let t = _mm256_min_ps(six, _mm256_max_ps(_mm256_setzero_ps(), t));
    _mm256_div_ps(_mm256_mul_ps(x, t), six)
}

/// `x / (1 + exp(-x))`.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn silu(x: __m256) -> __m256 {
    let neg = _mm256_sub_ps(_mm256_setzero_ps(), x);
    _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0), exp(neg)))
}

/// Applies `act` to 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn activate(act: Activation, x: __m256) -> __m256 {
    match act {
        Activation::None => x,
        Activation::HardSwish => hardswish(x),
        Activation::Silu => silu(x),
    }
}

/// Lane mask for `vmaskmovps`: lanes `0..n` set (`n <= 8`).
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn mask(n: usize) -> __m256i {
    debug_assert!(n <= 8);
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(n as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// [`exp`] over a slice.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn exp_slice(x: &mut [f32]) {
    let mut chunks = x.chunks_exact_mut(8);
    for c in &mut chunks {
        // SAFETY: `c` holds exactly 8 floats.
        unsafe { _mm256_storeu_ps(c.as_mut_ptr(), exp(_mm256_loadu_ps(c.as_ptr()))) };
    }
    let rest = chunks.into_remainder();
    let m = mask(rest.len());
    // SAFETY: the masked load/store touch only lanes `0..rest.len()`.
    unsafe {
        let v = _mm256_maskload_ps(rest.as_ptr(), m);
        _mm256_maskstore_ps(rest.as_mut_ptr(), m, exp(v));
    }
}
