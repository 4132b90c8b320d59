//! AVX2 + FMA GEMM micro-kernels.
//!
//! Tile: up to [`MR`] = 6 rows x 1 panel (16 columns = 2 ymm per row): 12 accumulators,
//! 2 B vectors and 1 broadcast use 15 of the 16 ymm registers (the classic 6x16 Haswell
//! shape). Per `k` step: 2 B loads and 6 broadcasts for 12 FMAs. Smaller `MR`
//! variants cover the balanced row remainder; partial panels are computed in full and
//! stored with `vmaskmovps`.

use core::arch::x86_64::*;

use super::{f32_panel_len, Tiles};
use super::{Epilogue, RowPtrs, Tile};
use crate::vecmath::avx2::{activate, mask};

/// Tallest row tile.
pub(crate) const MR: usize = 6;
/// Widest tile, in panels.
pub(crate) const NP: usize = 1;

/// Runs one `mr x 1` tile.
///
/// # Safety
/// The CPU must support AVX2 + FMA; `t` must satisfy [`Tile`]'s contract with
/// `1 <= mr <= MR`, `np == 1`.
pub(crate) unsafe fn run_tile(mr: usize, np: usize, t: &Tile) {
    debug_assert_eq!(np, 1);
    // One run of A per row: only AVX-512 takes segmented rows (`gemm_segmented`).
    debug_assert!(t.seg_len >= t.k);
    macro_rules! dispatch {
        ($($m:literal)*) => {
            match mr {
                // SAFETY: forwarded from this function's contract.
                $($m => unsafe { tile::<$m>(t) },)*
                _ => unreachable!("tile {mr}x{np}"),
            }
        };
    }
    dispatch!(1 2 3 4 5 6)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const R: usize>(t: &Tile) {
    debug_assert!(t.cols >= 1 && t.cols <= 16);
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    let mut a = [core::ptr::null::<f32>(); R];
    a.copy_from_slice(&t.a[..R]);
    let b = t.b;
    for kk in 0..t.k {
        // SAFETY: the panel holds `t.k * 16` floats and each `t.a[r]` has `t.k`
        // readable floats (Tile contract); kk < t.k.
        unsafe {
            let b0 = _mm256_loadu_ps(b.add(kk * 16));
            let b1 = _mm256_loadu_ps(b.add(kk * 16 + 8));
            for r in 0..R {
                let av = _mm256_set1_ps(*a[r].add(kk));
                acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
            }
        }
    }
    // SAFETY: forwarded from this function's contract.
    unsafe { store(t, &acc) }
}

/// The epilogue of an `R x 1` tile: `C = act(acc + bias)` or `C += acc + bias` on the
/// tile's `cols` columns (shared with the bf16 kernel, `super::bf16::avx2`).
///
/// # Safety
/// The CPU must support AVX2 + FMA; `t` must satisfy [`Tile`]'s contract with
/// `mr == R`, `np == 1`.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) unsafe fn store<const R: usize, W>(t: &Tile<RowPtrs, W>, acc: &[[__m256; 2]; R]) {
    let n0 = t.cols.min(8);
    let n1 = t.cols - n0;
    let masks = [mask(n0), mask(n1)];
    let full = t.cols == 16;
    let mut bias = [_mm256_setzero_ps(); 2];
    for h in 0..2 {
        // SAFETY: the mask covers only columns < cols, which `t.bias` holds.
        bias[h] = unsafe { _mm256_maskload_ps(t.bias.wrapping_add(h * 8), masks[h]) };
    }
    for (r, acc) in acc.iter().enumerate() {
        for h in 0..2 {
            let dst = t.c.wrapping_add(r * t.ldc + h * 8);
            let y = _mm256_add_ps(acc[h], bias[h]);
            // SAFETY: row r < R and columns < cols are inside C (Tile contract); the
            // unmasked path runs only when all 16 columns are valid.
            unsafe {
                let y = match t.epilogue {
                    Epilogue::BiasAct(act) => activate(act, y),
                    Epilogue::BiasResidual if full => _mm256_add_ps(_mm256_loadu_ps(dst), y),
                    Epilogue::BiasResidual => _mm256_add_ps(_mm256_maskload_ps(dst, masks[h]), y),
                };
                if full {
                    _mm256_storeu_ps(dst, y);
                } else {
                    _mm256_maskstore_ps(dst, masks[h], y);
                }
            }
        }
    }
}

/// The f32 kernel's tiles.
pub(crate) const F32_TILES: Tiles<f32> = Tiles {
    mr: MR,
    np: NP,
    wide: None,
    panel_len: f32_panel_len,
    run: run_tile,
};

super::tiled_kernel!(f32_kernel, F32, f32, "avx2_f32_6x16", Avx2, F32_TILES);
