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
        ($(($m:literal, $p:literal, $f:ident)),* $(,)?) => {
            match (mr, np) {
                // SAFETY: forwarded from this function's contract.
                $(($m, $p) => unsafe { $f(t) },)*
                _ => unreachable!("tile {mr}x{np}"),
            }
        };
    }
    dispatch!(
        (1, 1, t1x1),
        (2, 1, t2x1),
        (3, 1, t3x1),
        (4, 1, t4x1),
        (5, 1, t5x1),
        (6, 1, t6x1),
        (7, 1, t7x1),
        (8, 1, t8x1),
        (9, 1, t9x1),
        (10, 1, t10x1),
        (11, 1, t11x1),
        (12, 1, t12x1),
        (1, 2, t1x2),
        (2, 2, t2x2),
        (3, 2, t3x2),
        (4, 2, t4x2),
        (5, 2, t5x2),
        (6, 2, t6x2),
        (7, 2, t7x2),
        (8, 2, t8x2),
        (9, 2, t9x2),
        (10, 2, t10x2),
        (11, 2, t11x2),
        (12, 2, t12x2),
    )
}

// The tiles are generated with every accumulator index a literal: with loops over a
// const-generic row count, LLVM does not fully unroll the 12-row body before scalar
// replacement and keeps the accumulators in memory (a store per FMA).

/// FMAs of one row: `acc[r][p] += a * b[p]` for each panel `p`.
macro_rules! fma_row {
    ($acc:ident, $b:ident, $a:expr, $r:literal, [$($p:literal)+]) => {{
        let av = $a;
        $( $acc[$r][$p] = _mm512_fmadd_ps(av, $b[$p], $acc[$r][$p]); )+
    }};
}

/// Epilogue of one row.
macro_rules! store_row {
    ($t:ident, $acc:ident, $bias:ident, $masks:ident, $act:expr, $r:literal, [$($p:literal)+]) => {{
        $(
            let y = _mm512_add_ps($acc[$r][$p], $bias[$p]);
            let dst = $t.c.wrapping_add($r * $t.ldc + $p * 16);
            // SAFETY: row r < mr and the masked columns (< cols) are inside C (Tile
            // contract); masked-off lanes are neither read nor written.
            unsafe {
                let y = match $act {
                    Some(act) => activate(act, y),
                    None => _mm512_add_ps(_mm512_maskz_loadu_ps($masks[$p], dst), y),
                };
                _mm512_mask_storeu_ps(dst, $masks[$p], y);
            }
        )+
    }};
}

macro_rules! tile_fn {
    ($name:ident, $np:literal, $ps:tt, [$($r:literal)+]) => {
        #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,fma")]
        unsafe fn $name(t: &Tile) {
            const R: usize = [$($r),+].len();
            debug_assert!(t.cols >= 1 && t.cols <= $np * 16 && t.cols > ($np - 1) * 16);
            let mut acc = [[_mm512_setzero_ps(); $np]; R];
            let a: [*const f32; R] = [$(t.a[$r]),+];
            let (b, stride) = (t.b, t.panel_stride);
            for kk in 0..t.k {
                // SAFETY: `t.b` holds `np` panels of `t.k * 16` floats `stride` apart and
                // each `a[r]` has `t.k` readable floats (Tile contract); kk < t.k.
                unsafe {
                    let mut bv = [_mm512_setzero_ps(); $np];
                    for (p, bv) in bv.iter_mut().enumerate() {
                        *bv = _mm512_loadu_ps(b.add(p * stride + kk * 16));
                    }
                    $( fma_row!(acc, bv, _mm512_set1_ps(*a[$r].add(kk)), $r, $ps); )+
                }
            }
            let mut masks = [0 as __mmask16; $np];
            let mut bias = [_mm512_setzero_ps(); $np];
            for p in 0..$np {
                masks[p] = mask(t.cols.saturating_sub(p * 16).min(16));
                let panel_bias = t.bias.wrapping_add(p * 16);
                // SAFETY: the mask covers only columns < cols, which `t.bias` holds.
                bias[p] = unsafe { _mm512_maskz_loadu_ps(masks[p], panel_bias) };
            }
            let act = match t.epilogue {
                Epilogue::BiasAct(act) => Some(act),
                Epilogue::BiasResidual => None,
            };
            $( store_row!(t, acc, bias, masks, act, $r, $ps); )+
        }
    };
}

tile_fn!(t1x1, 1, [0], [0]);
tile_fn!(t2x1, 1, [0], [0 1]);
tile_fn!(t3x1, 1, [0], [0 1 2]);
tile_fn!(t4x1, 1, [0], [0 1 2 3]);
tile_fn!(t5x1, 1, [0], [0 1 2 3 4]);
tile_fn!(t6x1, 1, [0], [0 1 2 3 4 5]);
tile_fn!(t7x1, 1, [0], [0 1 2 3 4 5 6]);
tile_fn!(t8x1, 1, [0], [0 1 2 3 4 5 6 7]);
tile_fn!(t9x1, 1, [0], [0 1 2 3 4 5 6 7 8]);
tile_fn!(t10x1, 1, [0], [0 1 2 3 4 5 6 7 8 9]);
tile_fn!(t11x1, 1, [0], [0 1 2 3 4 5 6 7 8 9 10]);
tile_fn!(t12x1, 1, [0], [0 1 2 3 4 5 6 7 8 9 10 11]);
tile_fn!(t1x2, 2, [0 1], [0]);
tile_fn!(t2x2, 2, [0 1], [0 1]);
tile_fn!(t3x2, 2, [0 1], [0 1 2]);
tile_fn!(t4x2, 2, [0 1], [0 1 2 3]);
tile_fn!(t5x2, 2, [0 1], [0 1 2 3 4]);
tile_fn!(t6x2, 2, [0 1], [0 1 2 3 4 5]);
tile_fn!(t7x2, 2, [0 1], [0 1 2 3 4 5 6]);
tile_fn!(t8x2, 2, [0 1], [0 1 2 3 4 5 6 7]);
tile_fn!(t9x2, 2, [0 1], [0 1 2 3 4 5 6 7 8]);
tile_fn!(t10x2, 2, [0 1], [0 1 2 3 4 5 6 7 8 9]);
tile_fn!(t11x2, 2, [0 1], [0 1 2 3 4 5 6 7 8 9 10]);
tile_fn!(t12x2, 2, [0 1], [0 1 2 3 4 5 6 7 8 9 10 11]);

/// A tile whose A values come from a tap table (`gemm::gemm_taps`): row `r`'s `k`-th
/// value is `a[koff[k] + 2r]`.
pub(crate) struct TapTile {
    pub(crate) a: *const f32,
    pub(crate) koff: *const u32,
    pub(crate) b: *const f32,
    pub(crate) panel_stride: usize,
    pub(crate) k: usize,
    pub(crate) bias: *const f32,
    pub(crate) c: *mut f32,
    pub(crate) ldc: usize,
    pub(crate) cols: usize,
    pub(crate) epilogue: Epilogue,
}

/// Runs one `mr x np` tap tile.
///
/// # Safety
/// As [`run_tile`], with `a[koff[kk] + 2r]` readable for `kk < k`, `r < mr`.
pub(crate) unsafe fn run_tap_tile(mr: usize, np: usize, t: &TapTile) {
    macro_rules! dispatch {
        ($(($m:literal, $f1:ident, $f2:ident)),* $(,)?) => {
            match (mr, np) {
                // SAFETY: forwarded from this function's contract.
                $(($m, 1) => unsafe { $f1(t) }, ($m, 2) => unsafe { $f2(t) },)*
                _ => unreachable!("tap tile {mr}x{np}"),
            }
        };
    }
    dispatch!(
        (1, k1x1, k1x2),
        (2, k2x1, k2x2),
        (3, k3x1, k3x2),
        (4, k4x1, k4x2),
        (5, k5x1, k5x2),
        (6, k6x1, k6x2),
        (7, k7x1, k7x2),
        (8, k8x1, k8x2),
        (9, k9x1, k9x2),
        (10, k10x1, k10x2),
        (11, k11x1, k11x2),
        (12, k12x1, k12x2),
    )
}

/// The tap-table twin of `tile_fn!`: one base pointer plus a per-`k` offset, so the
/// 12 broadcasts of a `k` step use one address register with constant displacements.
macro_rules! tap_tile_fn {
    ($name:ident, $np:literal, $ps:tt, [$($r:literal)+]) => {
        #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,fma")]
        unsafe fn $name(t: &TapTile) {
            const R: usize = [$($r),+].len();
            debug_assert!(t.cols >= 1 && t.cols <= $np * 16 && t.cols > ($np - 1) * 16);
            let mut acc = [[_mm512_setzero_ps(); $np]; R];
            let (b, stride) = (t.b, t.panel_stride);
            for kk in 0..t.k {
                // SAFETY: `t.b` holds `np` panels of `t.k * 16` floats `stride` apart;
                // `koff` holds `t.k` offsets and `a[koff[kk] + 2r]` is readable for
                // r < mr (TapTile contract); kk < t.k.
                unsafe {
                    let mut bv = [_mm512_setzero_ps(); $np];
                    for (p, bv) in bv.iter_mut().enumerate() {
                        *bv = _mm512_loadu_ps(b.add(p * stride + kk * 16));
                    }
                    let a = t.a.add(*t.koff.add(kk) as usize);
                    $( fma_row!(acc, bv, _mm512_set1_ps(*a.add(2 * $r)), $r, $ps); )+
                }
            }
            let mut masks = [0 as __mmask16; $np];
            let mut bias = [_mm512_setzero_ps(); $np];
            for p in 0..$np {
                masks[p] = mask(t.cols.saturating_sub(p * 16).min(16));
                let panel_bias = t.bias.wrapping_add(p * 16);
                // SAFETY: the mask covers only columns < cols, which `t.bias` holds.
                bias[p] = unsafe { _mm512_maskz_loadu_ps(masks[p], panel_bias) };
            }
            let act = match t.epilogue {
                Epilogue::BiasAct(act) => Some(act),
                Epilogue::BiasResidual => None,
            };
            $( store_row!(t, acc, bias, masks, act, $r, $ps); )+
        }
    };
}

tap_tile_fn!(k1x1, 1, [0], [0]);
tap_tile_fn!(k2x1, 1, [0], [0 1]);
tap_tile_fn!(k3x1, 1, [0], [0 1 2]);
tap_tile_fn!(k4x1, 1, [0], [0 1 2 3]);
tap_tile_fn!(k5x1, 1, [0], [0 1 2 3 4]);
tap_tile_fn!(k6x1, 1, [0], [0 1 2 3 4 5]);
tap_tile_fn!(k7x1, 1, [0], [0 1 2 3 4 5 6]);
tap_tile_fn!(k8x1, 1, [0], [0 1 2 3 4 5 6 7]);
tap_tile_fn!(k9x1, 1, [0], [0 1 2 3 4 5 6 7 8]);
tap_tile_fn!(k10x1, 1, [0], [0 1 2 3 4 5 6 7 8 9]);
tap_tile_fn!(k11x1, 1, [0], [0 1 2 3 4 5 6 7 8 9 10]);
tap_tile_fn!(k12x1, 1, [0], [0 1 2 3 4 5 6 7 8 9 10 11]);
tap_tile_fn!(k1x2, 2, [0 1], [0]);
tap_tile_fn!(k2x2, 2, [0 1], [0 1]);
tap_tile_fn!(k3x2, 2, [0 1], [0 1 2]);
tap_tile_fn!(k4x2, 2, [0 1], [0 1 2 3]);
tap_tile_fn!(k5x2, 2, [0 1], [0 1 2 3 4]);
tap_tile_fn!(k6x2, 2, [0 1], [0 1 2 3 4 5]);
tap_tile_fn!(k7x2, 2, [0 1], [0 1 2 3 4 5 6]);
tap_tile_fn!(k8x2, 2, [0 1], [0 1 2 3 4 5 6 7]);
tap_tile_fn!(k9x2, 2, [0 1], [0 1 2 3 4 5 6 7 8]);
tap_tile_fn!(k10x2, 2, [0 1], [0 1 2 3 4 5 6 7 8 9]);
tap_tile_fn!(k11x2, 2, [0 1], [0 1 2 3 4 5 6 7 8 9 10]);
tap_tile_fn!(k12x2, 2, [0 1], [0 1 2 3 4 5 6 7 8 9 10 11]);
