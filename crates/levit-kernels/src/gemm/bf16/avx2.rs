//! AVX2 widening bf16 kernel: bf16 weights widened exactly to f32, f32 FMAs on f32
//! activations.
//!
//! The tile, blocking and epilogue are the f32 AVX2 kernel's (`gemm::avx2`: up to 6
//! rows x 1 panel, 12 ymm accumulators). One 64-byte row of a bf16 panel (two ymm:
//! columns 0-7 and 8-15) holds two K steps as pairs, so one pair of loads serves two
//! steps: `u32 << 16` is the even step's f32, `u32 & 0xFFFF0000` the odd one's. Each
//! output is the f32 kernel's FMA chain over `k = 0..K` in order on the widened
//! weights: bit-identical to `avx2_f32_6x16` on `B` widened to f32.

use core::arch::x86_64::*;

use crate::gemm::avx2::{store, MR, NP};
use crate::gemm::{RowPtrs, Tile, Tiles};

type BTile = Tile<RowPtrs, u16>;

/// Runs one `mr x 1` tile.
///
/// # Safety
/// The CPU must support AVX2 + FMA; `t` must satisfy [`Tile`]'s contract (bf16
/// panels) with `1 <= mr <= MR`, `np == 1`.
unsafe fn run_tile(mr: usize, np: usize, t: &BTile) {
    // One run of A per row: only the f32 AVX-512 kernel takes segmented rows.
    debug_assert!(np == 1 && t.seg_len >= t.k);
    const HEIGHTS: [unsafe fn(&BTile); MR] = [
        tile::<1>, tile::<2>, tile::<3>, tile::<4>, tile::<5>, tile::<6>,
    ];
    // SAFETY: forwarded from this function's contract (`HEIGHTS[mr - 1]` is the
    // `mr`-row tile).
    unsafe { HEIGHTS[mr - 1](t) }
}

/// One K step: `acc[r] += A[r][kk] * b` for the tile's 16 columns.
///
/// # Safety
/// AVX2 + FMA; `a[r]` has `kk + 1` readable floats for every `r`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn step<const R: usize>(
    acc: &mut [[__m256; 2]; R],
    a: &[*const f32; R],
    kk: usize,
    b: [__m256; 2],
) {
    for r in 0..R {
        // SAFETY: forwarded from this function's contract.
        let av = _mm256_set1_ps(unsafe { *a[r].add(kk) });
        acc[r][0] = _mm256_fmadd_ps(av, b[0], acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(av, b[1], acc[r][1]);
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const R: usize>(t: &BTile) {
    debug_assert!(t.cols >= 1 && t.cols <= 16);
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    let mut a = [core::ptr::null::<f32>(); R];
    a.copy_from_slice(&t.a[..R]);
    let high = _mm256_set1_epi32(0xFFFF_0000_u32 as i32);
    let row = |kp: usize| t.b.wrapping_add(kp * 32).cast::<__m256i>();
    // SAFETY: the panel holds `KP/2 > kp` rows of 32 u16 (Tile contract), so both
    // 32-byte halves of row `kp` are readable.
    let even = |kp: usize| unsafe {
        [0, 1].map(|h| {
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_loadu_si256(row(kp).add(h))))
        })
    };
    // The odd step loads the row again (`vlddqu`, which the compiler does not merge
    // with the even step's load): keeping the loaded row live through the even step's
    // FMAs would take two of the 16 ymm registers and spill an accumulator.
    // SAFETY: as for `even`: row `kp` of the panel is readable.
    let odd = |kp: usize| unsafe {
        [0, 1].map(|h| {
            _mm256_castsi256_ps(_mm256_and_si256(_mm256_lddqu_si256(row(kp).add(h)), high))
        })
    };
    for kp in 0..t.k / 2 {
        // SAFETY: each row has t.k > 2kp + 1 readable floats (Tile contract).
        unsafe {
            step(&mut acc, &a, 2 * kp, even(kp));
            step(&mut acc, &a, 2 * kp + 1, odd(kp));
        }
    }
    if t.k % 2 == 1 {
        // An odd K ends with the even half of the last row (A is not read at K).
        let even = even(t.k / 2);
        // SAFETY: as above, t.k - 1 < t.k.
        unsafe { step(&mut acc, &a, t.k - 1, even) };
    }
    // SAFETY: forwarded from this function's contract.
    unsafe { store(t, &acc) }
}

/// The kernel's tiles: the f32 AVX2 kernel's shapes on bf16 panels.
const TILES: Tiles<u16> = Tiles {
    mr: MR,
    np: NP,
    wide: None,
    panel_len: crate::bf16::panel_len,
    run: run_tile,
};

crate::gemm::tiled_kernel!(bf16_kernel, Bf16, bf16, "avx2_bf16w_6x16", Avx2, TILES);
