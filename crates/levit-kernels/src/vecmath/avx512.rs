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
    div6(_mm512_mul_ps(x, t))
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

/// `x / 6`, bit-identical to `_mm512_div_ps(x, 6)` for every input (checked for all
/// 2^32 bit patterns by the ignored test `div6_is_division_for_every_input`), without
/// the divider: the divider shares port 0 with the multiplies (on Intel cores, also
/// with AMX), so a division per output vector made the AMX GEMM's epilogue as long as
/// its multiplies at K = 384.
///
/// `q0 = x * (1/6)` is within an ulp of `x/6`, so its remainder `r = x - 6*q0` is
/// exact (one FMA) and `q0 + r * (1/6)` rounds to the correctly rounded quotient
/// (Markstein). Exceptions, taken care of: an infinite `x` makes `r` NaN (keep `q0`,
/// which is right), and a quotient below the normal range (`|x| < 2^-125`) may be off
/// (divide those lanes; they never occur in practice, so the branch is not taken).
#[inline]
#[target_feature(enable = "avx512f,fma")]
fn div6(x: __m512) -> __m512 {
    let (six, sixth) = (_mm512_set1_ps(6.0), _mm512_set1_ps(1.0 / 6.0));
    let q0 = _mm512_mul_ps(x, sixth);
    let r = _mm512_fnmadd_ps(q0, six, x);
    let q1 = _mm512_fmadd_ps(r, sixth, q0);
    let q = _mm512_mask_mov_ps(q1, _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(r, r), q0);
    let tiny = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(_mm512_abs_ps(x), _mm512_set1_ps(TINY));
    if tiny != 0 {
        _mm512_mask_div_ps(q, tiny, x, six)
    } else {
        q
    }
}

/// `2^-125`: below it `x / 6` is subnormal and [`div6`] divides.
const TINY: f32 = f32::from_bits(0x0100_0000);

#[cfg(test)]
mod tests {
    use super::*;

    /// Lanes of `x` where `f` and `g` differ in bits.
    ///
    /// # Safety
    /// AVX-512F and FMA must be supported.
    #[target_feature(enable = "avx512f,fma")]
    unsafe fn differ(
        bits: __m512i,
        f: impl Fn(__m512) -> __m512,
        g: impl Fn(__m512) -> __m512,
    ) -> __mmask16 {
        let x = _mm512_castsi512_ps(bits);
        _mm512_cmpneq_epi32_mask(_mm512_castps_si512(f(x)), _mm512_castps_si512(g(x)))
    }

    /// Checks `div6` against the division on the bit patterns
    /// `s..s+16` and `s+stride-16..s+stride` for every multiple `s` of `stride` (all
    /// patterns when `stride` is 16).
    fn check(stride: u64, which: &str) {
        if !crate::Isa::Avx512.is_supported() {
            println!("skipped: no AVX-512");
            return;
        }
        let mut bad = 0u64;
        let groups = (0..1u64 << 32).step_by(stride as usize).flat_map(|s| {
            [s, s + stride - 16]
                .into_iter()
                .take(if stride > 16 { 2 } else { 1 })
        });
        for start in groups {
            // SAFETY: AVX-512F and FMA are supported (checked above).
            let diff = unsafe {
                let bits = _mm512_add_epi32(
                    _mm512_set1_epi32(start as u32 as i32),
                    _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                );
                differ(bits, |x| div6(x), |x| _mm512_div_ps(x, _mm512_set1_ps(6.0)))
            };
            if diff != 0 && bad == 0 {
                let lane = diff.trailing_zeros();
                println!("{which}: first difference at {:#010x}", start as u32 + lane);
            }
            bad += u64::from(diff.count_ones());
        }
        assert_eq!(bad, 0, "{which} differs on {bad} inputs");
    }

    #[test]
    fn div6_is_division_on_sampled_inputs() {
        // Every sign and exponent, 2^16 mantissa patterns each, both ends of every
        // binade included.
        check(1 << 12, "div6");
    }

    #[test]
    #[ignore = "all 2^32 inputs: 10-60 s; run with --ignored"]
    fn div6_is_division_for_every_input() {
        check(16, "div6");
    }
}
