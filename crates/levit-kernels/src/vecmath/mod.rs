//! Vectorised `exp` and the epilogue activations, written once per ISA and shared by
//! the GEMM epilogues and the attention softmax.
//!
//! All paths use the same algorithm (Cephes `expf`):
//! 1. clamp `x` to `[EXP_LO, EXP_HI]` (NaN passes through the clamp untouched);
//! 2. `n = round(x * log2(e))`, `r = x - n*ln2` with a two-constant Cody-Waite split
//!    (`n*LN2_HI` is exact, so `r` carries no cancellation error);
//! 3. `exp(r) = 1 + r + r²·P(r)` with a degree-5 `P` (a degree-7 approximation on
//!    `|r| <= ln2/2`, error well under 1 ulp);
//! 4. scale by `2^n` (AVX-512: `vscalefps`; elsewhere two exact power-of-two
//!    multiplies, so results that land in the subnormal range are rounded once).
//!
//! Inputs below `EXP_LO` give `+0`, above `EXP_HI` give `+inf`, `-inf` gives `0`,
//! `NaN` gives `NaN`. Measured error over a sweep of every 64th f32 in `[-88, 88]`
//! plus the subnormal range (`tests/attention.rs`, `exp_accuracy`, 35M points) against
//! `f64` `exp`: 0.995 ulp (AVX-512, AVX2), 0.969 ulp (portable, x86 build); the test
//! asserts at most 2 ulp.

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
pub(crate) mod portable;

use crate::Isa;

/// Below this `exp` is `0` in f32 (`exp(-104) < 2^-150`).
pub(crate) const EXP_LO: f32 = -104.0;
/// Above this `exp` overflows to `+inf` (`ln(f32::MAX) ≈ 88.72`).
pub(crate) const EXP_HI: f32 = 89.0;
pub(crate) const LOG2E: f32 = std::f32::consts::LOG2_E;
/// `ln 2 = LN2_HI + LN2_LO`; `LN2_HI` has 9 significant bits so `n * LN2_HI` is exact.
pub(crate) const LN2_HI: f32 = 0.693_359_4;
pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;
pub(crate) const P0: f32 = 1.987_569_1e-4;
pub(crate) const P1: f32 = 1.398_199_9e-3;
pub(crate) const P2: f32 = 8.333_452e-3;
pub(crate) const P3: f32 = 4.166_579_6e-2;
pub(crate) const P4: f32 = 1.666_666_5e-1;
pub(crate) const P5: f32 = 0.5;

/// Applies the vectorised `exp` of `isa` to every element of `x` in place.
///
/// This is the exact routine the softmax and the SiLU epilogue use; it is public so
/// its accuracy can be measured (see the `exp_accuracy` test).
///
/// # Panics
/// If `isa` is not supported by this CPU.
pub fn exp_in_place(isa: Isa, x: &mut [f32]) {
    assert!(isa.is_supported(), "exp_in_place: {isa} not supported");
    match isa.vector() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the assert above checked the CPU has AVX-512F/VL/DQ/BW + FMA.
        Isa::Avx512 => unsafe { avx512::exp_slice(x) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the assert above checked the CPU has AVX2 + FMA.
        Isa::Avx2 => unsafe { avx2::exp_slice(x) },
        Isa::Portable => portable::exp_slice(x),
        other => unreachable!("{other} is not a vector family"),
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use core::arch::x86_64::*;

    use crate::Isa;

    /// Inputs of the softmax's domain: `<= 0`, -0, -inf, NaN, and both sides of the
    /// clamp and of the subnormal range.
    fn nonpositive_inputs() -> Vec<f32> {
        let mut v = vec![
            0.0,
            -0.0,
            f32::NEG_INFINITY,
            f32::NAN,
            -104.0,
            -103.9,
            -87.3,
            -88.0,
        ];
        let mut x = -1e-8f32;
        while x > -120.0 {
            v.push(x);
            x *= 1.013;
        }
        v.extend((0..1000).map(|i| -(i as f32) * 0.0137));
        v
    }

    #[test]
    fn exp_nonpositive_equals_exp_bitwise_on_its_domain() {
        let xs = nonpositive_inputs();
        for isa in Isa::supported() {
            let isa = isa.vector();
            for chunk in xs.chunks(16) {
                let mut a = [0.0f32; 16];
                a[..chunk.len()].copy_from_slice(chunk);
                let (mut want, mut got) = ([0.0f32; 16], [0.0f32; 16]);
                match isa {
                    // SAFETY: the AVX-512 path is supported (Isa::supported); the
                    // arrays hold 16 floats.
                    Isa::Avx512 => unsafe {
                        let v = _mm512_loadu_ps(a.as_ptr());
                        _mm512_storeu_ps(want.as_mut_ptr(), super::avx512::exp(v));
                        _mm512_storeu_ps(got.as_mut_ptr(), super::avx512::exp_nonpositive(v));
                    },
                    // SAFETY: as above for AVX2 + FMA, two halves of 8 floats.
                    Isa::Avx2 => unsafe {
                        for h in [0, 8] {
                            let v = _mm256_loadu_ps(a.as_ptr().add(h));
                            _mm256_storeu_ps(want.as_mut_ptr().add(h), super::avx2::exp(v));
                            _mm256_storeu_ps(
                                got.as_mut_ptr().add(h),
                                super::avx2::exp_nonpositive(v),
                            );
                        }
                    },
                    Isa::Portable => continue,
                    other => unreachable!("{other} is not a vector family"),
                }
                for i in 0..16 {
                    assert_eq!(got[i].to_bits(), want[i].to_bits(), "{isa} exp({})", a[i]);
                }
            }
        }
    }
}
