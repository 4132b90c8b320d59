//! AVX-512 `exp`, hardswish and SiLU on `__m512` (16 lanes).

use core::arch::x86_64::*;

use super::{EXP_HI, EXP_LO, LN2_HI, LN2_LO, LOG2E, P0, P1, P2, P3, P4, P5};
use crate::Activation;

/// `exp` of 16 lanes (see the module doc of `vecmath`).
#[inline]
#[target_feature(enable = "avx512f,fma")]
pub(crate) fn exp(x: __m512) -> __m512 {
    // max/min return their second operand when either is NaN: keep `x` second.
    exp_clamped(_mm512_max_ps(
        _mm512_set1_ps(EXP_LO),
        _mm512_min_ps(_mm512_set1_ps(EXP_HI), x),
    ))
}

/// [`exp`] for lanes that are `<= 0` or NaN (a softmax's `s - max`): the same bits
/// there, one clamp fewer, which the softmax-bound attention notices (3 %).
#[inline]
#[target_feature(enable = "avx512f,fma")]
pub(crate) fn exp_nonpositive(x: __m512) -> __m512 {
    exp_clamped(_mm512_max_ps(_mm512_set1_ps(EXP_LO), x))
}

/// [`exp`] of lanes already clamped to `[EXP_LO, EXP_HI]` (or NaN).
#[inline]
#[target_feature(enable = "avx512f,fma")]
fn exp_clamped(x: __m512) -> __m512 {
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(LOG2E)),
    );
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    let mut p = _mm512_set1_ps(P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P5));
    let r2 = _mm512_mul_ps(r, r);
    let y = _mm512_add_ps(_mm512_fmadd_ps(p, r2, r), _mm512_set1_ps(1.0));
    // y * 2^n, overflowing to inf and rounding subnormals once.
    _mm512_scalef_ps(y, n)
}

/// `x * clamp(x + 3, 0, 6) / 6`, bit-identical to [`crate::activation::hardswish`].
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn hardswish(x: __m512) -> __m512 {
    let six = _mm512_set1_ps(6.0);
    let t = _mm512_add_ps(x, _mm512_set1_ps(3.0));
    let t = _mm512_min_ps(six, _mm512_max_ps(_mm512_setzero_ps(), t));
    _mm512_div_ps(_mm512_mul_ps(x, t), six)
}

/// `x / (1 + exp(-x))`.
#[inline]
#[target_feature(enable = "avx512f,fma")]
pub(crate) fn silu(x: __m512) -> __m512 {
    let neg = _mm512_sub_ps(_mm512_setzero_ps(), x);
    _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0), exp(neg)))
}

/// Applies `act` to 16 lanes.
#[inline]
#[target_feature(enable = "avx512f,fma")]
pub(crate) fn activate(act: Activation, x: __m512) -> __m512 {
    match act {
        Activation::None => x,
        Activation::HardSwish => hardswish(x),
        Activation::Silu => silu(x),
    }
}

/// Lanes `0..n` set (`n <= 16`).
#[inline]
pub(crate) fn mask(n: usize) -> __mmask16 {
    debug_assert!(n <= 16);
    ((1u32 << n) - 1) as __mmask16
}

/// [`exp`] over a slice.
///
/// # Safety
/// The CPU must support AVX-512F and FMA.
#[target_feature(enable = "avx512f,fma")]
pub(crate) unsafe fn exp_slice(x: &mut [f32]) {
    let mut chunks = x.chunks_exact_mut(16);
    for c in &mut chunks {
        // SAFETY: `c` holds exactly 16 floats.
        unsafe { _mm512_storeu_ps(c.as_mut_ptr(), exp(_mm512_loadu_ps(c.as_ptr()))) };
    }
    let rest = chunks.into_remainder();
    let m = mask(rest.len());
    // SAFETY: the masked load/store touch only lanes `0..rest.len()`.
    unsafe {
        let v = _mm512_maskz_loadu_ps(m, rest.as_ptr());
        _mm512_mask_storeu_ps(rest.as_mut_ptr(), m, exp(v));
    }
}
