//! The FMA peak of one core, measured: register-only loops of independent FMA chains
//! for each SIMD path, so that benchmarks can report GEMM and model throughput as a
//! fraction of what this core actually sustains (rather than a datasheet figure that
//! turbo, AVX-512 down-clocking or a shared host may not deliver).
//!
//! - AVX-512: 24 independent zmm chains (16 lanes each);
//! - AVX2 + FMA: 12 independent ymm chains (8 lanes each);
//! - portable: [`PORTABLE_CHAINS`] independent `wide::f32x8` chains, the `f32x8`
//!   `mul_add` of the portable GEMM tile (it lowers to an FMA where the target has one,
//!   else to a multiply and an add, exactly as in that kernel).
//!
//! One FMA counts as 2 floating-point operations (one multiply-accumulate).

use std::hint::black_box;
use std::time::{Duration, Instant};

use crate::{Isa, Precision};

/// Steps of every chain per call of a peak loop: about 1 ms on a current core, short
/// enough for a best-of over a small budget, long enough to hide the call.
const STEPS: usize = 200_000;

/// Independent `f32x8` chains of the portable loop: as many as the vector registers
/// hold beside the two constants. x86-64 without target features has 16 xmm registers
/// (two per `f32x8`): 6 chains measured fastest there (8 spill, and 4 leave the
/// multiply-add latency exposed); aarch64 has 32 NEON registers.
pub const PORTABLE_CHAINS: usize = if cfg!(target_arch = "x86_64") { 6 } else { 12 };

/// The best rate of `f` in giga-units per second: calls `f` once to warm up, then runs
/// batches of calls (each batch about 2e8 units of `work`) until `budget` is spent and
/// keeps the fastest batch. `work` is what one call of `f` does (e.g. its flops).
/// At least one batch runs, whatever the budget.
pub fn best_rate<F: FnMut()>(work: f64, budget: Duration, mut f: F) -> f64 {
    f();
    let reps = ((2e8 / work).ceil() as usize).max(1);
    let start = Instant::now();
    let mut best = f64::INFINITY;
    loop {
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
        if start.elapsed() >= budget {
            break;
        }
    }
    work / best / 1e9
}

/// The measured single-core FMA peak of `isa` in GFLOP/s (2 flops per FMA lane; half
/// of it in GMAC/s), best of repeated batches over `budget` (100-200 ms is plenty).
///
/// # Panics
/// If this CPU does not support `isa`.
pub fn fma_peak_gflops(isa: Isa, budget: Duration) -> f64 {
    assert!(
        isa.is_supported(),
        "fma_peak_gflops: this CPU does not support the {isa} path"
    );
    match isa.vector() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => best_rate(flops(x86::AVX512_CHAINS, 16), budget, || {
            // SAFETY: AVX-512F and FMA are supported (asserted above).
            black_box(unsafe { x86::avx512(black_box(STEPS)) });
        }),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => best_rate(flops(x86::AVX2_CHAINS, 8), budget, || {
            // SAFETY: AVX2 and FMA are supported (asserted above).
            black_box(unsafe { x86::avx2(black_box(STEPS)) });
        }),
        Isa::Portable => best_rate(flops(PORTABLE_CHAINS, 8), budget, || {
            black_box(portable(black_box(STEPS)));
        }),
        other => unreachable!("{other} is not a vector family"),
    }
}

/// The measured single-core peak of the dot-product instruction that the GEMM
/// kernels of `precision` run on level `isa`, in G multiply-adds/s: f32 FMAs for f32
/// (and for bf16 below `Avx512Bf16`, where the kernels widen the weights to f32),
/// `vdpbf16ps` for bf16 on `Avx512Bf16`, AMX `tdpbf16ps` on `Amx`; for int8, AMX
/// `tdpbusd` on `Amx`, `vpdpbusd` on the AVX-512 levels (where the CPU has
/// AVX512_VNNI), the `vpmaddubsw` + `vpmaddwd` pair on AVX2, f32 FMAs on portable
/// (a stand-in: its integer loops have no dedicated instruction). Benchmarks quote
/// model throughput as a share of this.
///
/// # Panics
/// If this CPU does not support `isa`.
pub fn dot_peak_gmacs(precision: Precision, isa: Isa, budget: Duration) -> f64 {
    assert!(
        isa.is_supported(),
        "dot_peak_gmacs: {isa} is not supported here"
    );
    match (precision, isa) {
        #[cfg(target_arch = "x86_64")]
        (Precision::Bf16, Isa::Avx512Bf16) => {
            // 24 chains x 16 lanes x 2 products per vdpbf16ps.
            best_rate((x86::AVX512_CHAINS * 32 * STEPS) as f64, budget, || {
                // SAFETY: AVX512_BF16 is supported (asserted above: the level has it).
                black_box(unsafe { x86::avx512bf16(black_box(STEPS)) });
            })
        }
        #[cfg(target_arch = "x86_64")]
        (Precision::Bf16, Isa::Amx) => {
            // 4 tiles x 16x16 outputs x 32 products per tdpbf16ps.
            best_rate((4 * 16 * 16 * 32 * AMX_STEPS) as f64, budget, || {
                // SAFETY: AMX-BF16 is usable in this process (asserted above).
                unsafe { x86::amx_bf16(black_box(AMX_STEPS)) };
            })
        }
        #[cfg(target_arch = "x86_64")]
        (Precision::Int8, Isa::Amx) if crate::amx_os::amx_int8_usable() => {
            // 4 tiles x 16x16 outputs x 64 products per tdpbusd.
            best_rate((4 * 16 * 16 * 64 * AMX_STEPS) as f64, budget, || {
                // SAFETY: AMX-INT8 is usable in this process (the guard).
                unsafe { x86::amx_int8(black_box(AMX_STEPS)) };
            })
        }
        #[cfg(target_arch = "x86_64")]
        (Precision::Int8, Isa::Amx | Isa::Avx512Bf16 | Isa::Avx512) if vnni_supported() => {
            // 24 chains x 16 lanes x 4 products per vpdpbusd.
            best_rate((x86::AVX512_CHAINS * 64 * STEPS) as f64, budget, || {
                // SAFETY: AVX512_VNNI is supported (the guard).
                black_box(unsafe { x86::avx512vnni(black_box(STEPS)) });
            })
        }
        #[cfg(target_arch = "x86_64")]
        (Precision::Int8, Isa::Amx | Isa::Avx512Bf16 | Isa::Avx512 | Isa::Avx2) => {
            // 12 chains x 8 lanes x 4 products per vpmaddubsw + vpmaddwd + vpaddd
            // (the AVX2 int8 kernel's step, without its vpsignb).
            best_rate((x86::AVX2_CHAINS * 32 * STEPS) as f64, budget, || {
                // SAFETY: AVX2 is supported (every level above portable has it).
                black_box(unsafe { x86::avx2_int8(black_box(STEPS)) });
            })
        }
        _ => fma_peak_gflops(isa, budget) / 2.0,
    }
}

/// Whether the CPU has AVX512_VNNI (the int8 kernels of the AVX-512 levels use it).
#[cfg(target_arch = "x86_64")]
fn vnni_supported() -> bool {
    Isa::Avx512.is_supported() && std::arch::is_x86_feature_detected!("avx512vnni")
}

/// Steps of the AMX peak loop (four `tdpbf16ps` each): ~1 ms.
#[cfg(target_arch = "x86_64")]
const AMX_STEPS: usize = 20_000;

/// Flops of one call of a peak loop: `STEPS` FMAs of `lanes` lanes in each chain.
fn flops(chains: usize, lanes: usize) -> f64 {
    (chains * lanes * 2 * STEPS) as f64
}

/// `$steps` steps of the independent chains `x = fma(x, a, b)`, one named local per
/// chain (an array of accumulators gets spilled to the stack: LLVM kept 15 of 24 zmm
/// chains in registers, and the unaligned spills made the result depend on where the
/// stack happened to be); evaluates to the sum of all chains, so nothing folds.
/// Checks at compile time that there are `$n` names.
macro_rules! chains {
    ($n:expr, $steps:expr, $zero:expr, ($a:expr, $b:expr), $fma:path, $add:path; $($x:ident)+) => {{
        const _: () = assert!([$(stringify!($x)),+].len() == $n, "one name per chain");
        let (a, b) = ($a, $b);
        $( let mut $x = $zero; )+
        for _ in 0..$steps {
            $( $x = $fma($x, a, b); )+
        }
        let sum = $zero;
        $( let sum = $add(sum, $x); )+
        sum
    }};
}

/// [`PORTABLE_CHAINS`] independent `f32x8` chains of `steps` steps.
fn portable(steps: usize) -> f32 {
    use wide::f32x8;
    fn fma(x: f32x8, a: f32x8, b: f32x8) -> f32x8 {
        x.mul_add(a, b)
    }
    let (zero, a, b) = (
        f32x8::splat(0.0),
        f32x8::splat(0.999_999),
        f32x8::splat(1e-7),
    );
    #[cfg(target_arch = "x86_64")]
    let sum = chains!(PORTABLE_CHAINS, steps, zero, (a, b), fma, core::ops::Add::add;
        c0 c1 c2 c3 c4 c5);
    #[cfg(not(target_arch = "x86_64"))]
    let sum = chains!(PORTABLE_CHAINS, steps, zero, (a, b), fma, core::ops::Add::add;
        c0 c1 c2 c3 c4 c5 c6 c7 c8 c9 c10 c11);
    sum.reduce_add()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    /// Independent zmm chains of the AVX-512 loop (24 of the 32 registers).
    pub(super) const AVX512_CHAINS: usize = 24;
    /// Independent ymm chains of the AVX2 loop (12 of the 16 registers).
    pub(super) const AVX2_CHAINS: usize = 12;

    /// [`AVX512_CHAINS`] independent FMA chains of `steps` steps.
    #[target_feature(enable = "avx512f,fma")]
    pub(super) fn avx512(steps: usize) -> f32 {
        let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        let sum = chains!(AVX512_CHAINS, steps, _mm512_setzero_ps(), (a, b), _mm512_fmadd_ps, _mm512_add_ps;
            c0 c1 c2 c3 c4 c5 c6 c7 c8 c9 c10 c11 c12 c13 c14 c15 c16 c17 c18 c19 c20 c21 c22 c23);
        _mm512_reduce_add_ps(sum)
    }

    /// [`AVX512_CHAINS`] independent `vdpbf16ps` chains of `steps` steps.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) fn avx512bf16(steps: usize) -> f32 {
        let ones = _mm512_set1_ps(1.0);
        let (a, b) = (
            _mm512_cvtne2ps_pbh(ones, ones),
            _mm512_cvtne2ps_pbh(ones, ones),
        );
        let dot = |x, a, b| _mm512_dpbf16_ps(x, a, b);
        let sum = chains!(AVX512_CHAINS, steps, _mm512_setzero_ps(), (a, b), dot, _mm512_add_ps;
            c0 c1 c2 c3 c4 c5 c6 c7 c8 c9 c10 c11 c12 c13 c14 c15 c16 c17 c18 c19 c20 c21 c22 c23);
        _mm512_reduce_add_ps(sum)
    }

    /// `fn $name(steps)`: `steps` rounds of four independent AMX `$op` (tiles 0-3
    /// accumulate tile 4 times tile 5, all 16 rows x 64 bytes of `$ones`).
    macro_rules! amx_peak_loop {
        ($(#[$doc:meta])* $name:ident, $op:literal, $ones:expr) => {
            $(#[$doc])*
            pub(super) unsafe fn $name(steps: usize) {
                let ones = $ones;
                // SAFETY: the tile kind is usable (caller); the shared config is a
                // valid palette-1 layout; the loads read 16 rows of 64 bytes inside
                // `ones`; the tiles are released before returning, and no memory is
                // written.
                unsafe {
                    core::arch::asm!("ldtilecfg [{}]", in(reg) crate::amx_os::TILES_16X64.0.as_ptr(),
                        options(nostack));
                    core::arch::asm!(
                        "tileloadd tmm4, [{p} + {s} * 1]",
                        "tileloadd tmm5, [{p} + {s} * 1]",
                        "tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3",
                        p = in(reg) ones.as_ptr(), s = in(reg) 64usize, options(nostack));
                    for _ in 0..steps {
                        core::arch::asm!(
                            concat!($op, " tmm0, tmm4, tmm5"),
                            concat!($op, " tmm1, tmm4, tmm5"),
                            concat!($op, " tmm2, tmm4, tmm5"),
                            concat!($op, " tmm3, tmm4, tmm5"),
                            options(nostack, nomem)
                        );
                    }
                    core::arch::asm!("tilerelease", options(nostack, nomem));
                }
            }
        };
    }

    amx_peak_loop!(
        /// # Safety
        /// AMX-BF16 must be usable by this process (`Isa::Amx.is_supported()`).
        amx_bf16, "tdpbf16ps", [0x3F80u16; 16 * 32]
    );
    amx_peak_loop!(
        /// # Safety
        /// AMX-INT8 must be usable by this process.
        amx_int8, "tdpbusd", [1u8; 16 * 64]
    );

    /// [`AVX512_CHAINS`] independent `vpdpbusd` chains of `steps` steps.
    #[target_feature(enable = "avx512f,avx512vnni")]
    pub(super) fn avx512vnni(steps: usize) -> i32 {
        let (a, b) = (_mm512_set1_epi8(1), _mm512_set1_epi8(1));
        let dot = |x, a, b| _mm512_dpbusd_epi32(x, a, b);
        let sum = chains!(AVX512_CHAINS, steps, _mm512_setzero_si512(), (a, b), dot, _mm512_add_epi32;
            c0 c1 c2 c3 c4 c5 c6 c7 c8 c9 c10 c11 c12 c13 c14 c15 c16 c17 c18 c19 c20 c21 c22 c23);
        _mm512_reduce_add_epi32(sum)
    }

    /// [`AVX2_CHAINS`] independent chains of `vpmaddubsw`, `vpmaddwd` and `vpaddd`, each
    /// step reading the chain's value (with constant operands alone LLVM would hoist
    /// the products out of the loop).
    #[target_feature(enable = "avx2")]
    pub(super) fn avx2_int8(steps: usize) -> i32 {
        let (b, ones) = (_mm256_set1_epi8(1), _mm256_set1_epi16(1));
        let step =
            |x, b, ones| _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(x, b), ones), x);
        let sum = chains!(AVX2_CHAINS, steps, _mm256_set1_epi8(1), (b, ones), step, _mm256_add_epi32;
            c0 c1 c2 c3 c4 c5 c6 c7 c8 c9 c10 c11);
        let half = _mm_add_epi32(
            _mm256_castsi256_si128(sum),
            _mm256_extracti128_si256::<1>(sum),
        );
        _mm_cvtsi128_si32(half)
    }

    /// [`AVX2_CHAINS`] independent FMA chains of `steps` steps.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn avx2(steps: usize) -> f32 {
        let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        let sum = chains!(AVX2_CHAINS, steps, _mm256_setzero_ps(), (a, b), _mm256_fmadd_ps, _mm256_add_ps;
            c0 c1 c2 c3 c4 c5 c6 c7 c8 c9 c10 c11);
        let half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps::<1>(sum));
        let quarter = _mm_hadd_ps(half, half);
        _mm_cvtss_f32(_mm_hadd_ps(quarter, quarter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_is_finite_and_positive_on_every_supported_path() {
        for isa in Isa::supported() {
            let g = fma_peak_gflops(isa, Duration::from_millis(5));
            assert!(g.is_finite() && g > 0.0, "{isa}: {g} GFLOP/s");
        }
    }

    #[test]
    fn dot_peaks_are_finite_and_positive_for_every_precision_and_path() {
        for isa in Isa::supported() {
            for precision in Precision::ALL {
                let g = dot_peak_gmacs(precision, isa, Duration::from_millis(5));
                assert!(g.is_finite() && g > 0.0, "{precision} {isa}: {g} GMAC/s");
            }
        }
    }

    #[test]
    fn best_rate_runs_at_least_one_batch() {
        let mut calls = 0;
        let r = best_rate(1e9, Duration::ZERO, || calls += 1);
        assert!(calls >= 2, "warm-up plus one batch, got {calls}");
        assert!(r > 0.0);
    }
}
