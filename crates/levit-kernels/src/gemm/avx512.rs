//! AVX-512 GEMM micro-kernels.
//!
//! Tile: up to [`MR`] = 12 rows x 2 panels (32 columns = 2 zmm per row), i.e. 24
//! accumulators + 2 B vectors + 1 broadcast = 27 of the 32 zmm registers. Per `k` step
//! the tile loads 2 B vectors and broadcasts 12 A values for 24 FMAs, which keeps the
//! FMA pipes (not the load ports) the bottleneck. A 1-panel variant covers an odd
//! panel count; smaller `MR` variants cover the row remainder (the driver balances row
//! tiles, e.g. 49 = 10+10+10+10+9, so there is no 1-row straggler). Partial column
//! panels are computed in full (B is zero-padded) and stored with a lane mask.

use core::arch::x86_64::*;

use super::{Epilogue, Tile};
use crate::vecmath::avx512::{activate, mask};

/// Tallest row tile.
pub(crate) const MR: usize = 12;
/// Widest tile, in panels.
pub(crate) const NP: usize = 2;

/// Runs one `mr x np` tile.
///
/// # Safety
/// The CPU must support AVX-512F/VL/DQ/BW + FMA; `t` must satisfy [`Tile`]'s contract
/// with `1 <= mr <= MR`, `1 <= np <= NP`.
pub(crate) unsafe fn run_tile(mr: usize, np: usize, t: &Tile) {
    macro_rules! dispatch {
        ($($m:literal)*) => {
            match (mr, np) {
                // SAFETY: forwarded from this function's contract.
                $(($m, 1) => unsafe { tile::<$m, 1>(t) },
                  ($m, 2) => unsafe { tile::<$m, 2>(t) },)*
                _ => unreachable!("tile {mr}x{np}"),
            }
        };
    }
    dispatch!(1 2 3 4 5 6 7 8 9 10 11 12)
}

#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,fma")]
unsafe fn tile<const R: usize, const P: usize>(t: &Tile) {
    debug_assert!(t.cols >= 1 && t.cols <= P * 16 && t.cols > (P - 1) * 16);
    let mut acc = [[_mm512_setzero_ps(); P]; R];
    let mut a = [core::ptr::null::<f32>(); R];
    a.copy_from_slice(&t.a[..R]);
    let b = t.b;
    for kk in 0..t.k {
        // SAFETY: `t.b` holds `P` panels of `t.k * 16` floats `t.panel_stride` apart,
        // and each `t.a[r]` has `t.k` readable floats (Tile contract); kk < t.k.
        unsafe {
            let mut bv = [_mm512_setzero_ps(); P];
            for (p, bv) in bv.iter_mut().enumerate() {
                *bv = _mm512_loadu_ps(b.add(p * t.panel_stride + kk * 16));
            }
            for r in 0..R {
                let av = _mm512_set1_ps(*a[r].add(kk));
                for p in 0..P {
                    acc[r][p] = _mm512_fmadd_ps(av, bv[p], acc[r][p]);
                }
            }
        }
    }
    let mut masks = [0 as __mmask16; P];
    let mut bias = [_mm512_setzero_ps(); P];
    for p in 0..P {
        masks[p] = mask(t.cols.saturating_sub(p * 16).min(16));
        // SAFETY: the mask covers only columns < cols, which `t.bias` holds.
        bias[p] = unsafe { _mm512_maskz_loadu_ps(masks[p], t.bias.wrapping_add(p * 16)) };
    }
    match t.epilogue {
        Epilogue::BiasAct(act) => {
            for (r, acc) in acc.iter().enumerate() {
                for p in 0..P {
                    let y = activate(act, _mm512_add_ps(acc[p], bias[p]));
                    // SAFETY: row r < R and the masked columns are inside C (Tile
                    // contract); masked-off lanes are not touched.
                    unsafe {
                        _mm512_mask_storeu_ps(t.c.wrapping_add(r * t.ldc + p * 16), masks[p], y)
                    };
                }
            }
        }
        Epilogue::BiasResidual => {
            for (r, acc) in acc.iter().enumerate() {
                for p in 0..P {
                    let y = _mm512_add_ps(acc[p], bias[p]);
                    let dst = t.c.wrapping_add(r * t.ldc + p * 16);
                    // SAFETY: as above; the load reads the same masked lanes.
                    unsafe {
                        let old = _mm512_maskz_loadu_ps(masks[p], dst);
                        _mm512_mask_storeu_ps(dst, masks[p], _mm512_add_ps(old, y));
                    }
                }
            }
        }
    }
}
