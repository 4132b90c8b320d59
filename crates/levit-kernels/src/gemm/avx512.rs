//! AVX-512 GEMM micro-kernels.
//!
//! Tile: up to [`MR`] = 12 rows x 2 panels (32 columns = 2 zmm per row), i.e. 24
//! accumulators + 2 B vectors + 1 broadcast = 27 of the 32 zmm registers. Per `k` step
//! the tile loads 2 B vectors and broadcasts 12 A values for 24 FMAs, which keeps the
//! FMA pipes (not the load ports) the bottleneck. A 1-panel variant covers an odd
//! panel count; smaller `MR` variants cover the row remainder (the driver balances row
//! tiles, e.g. 49 = 10+10+10+10+9, so there is no 1-row straggler). Partial column
//! panels are computed in full (B is zero-padded) and stored with a lane mask.

use super::{f32_panel_len, Tiles};
use super::{Epilogue, RowPtrs, Taps, Tile};
use crate::vecmath::avx512::{activate, mask};

/// How many K steps ahead each f32 tile asks for its B rows (one 64-byte line per
/// panel and step) to be brought into L1. The hardware prefetchers stop at each 4 KiB
/// page of a panel (64 steps); the hint does not.
///
/// Measured on SPR, 1 thread. Kernel, best of 150 interleaved samples, GFLOP/s
/// without -> with: 196x384x768 144 -> 160 (weights in L2) and 126 -> 146 (from
/// memory); 1568x384x768 127 -> 144; 49x512x1152 from memory 91 -> 118; 16x768x1536
/// (6x4 tiles) from memory 65 -> 85. Engine, the two kernels alternating rep by rep
/// in one process: LeViT-384 +6-17 %, LeViT-128S +4-9 %, at batch 1 and 8. Prefetching
/// 24 steps ahead helped the small-M cases a little more and the 196-row case less.
const B_PREFETCH_STEPS: usize = 8;

/// Tallest row tile.
pub(crate) const MR: usize = 12;
/// Widest tile, in panels, of the tall tiles.
pub(crate) const NP: usize = 2;
/// The wide tiles for few rows: up to 6 rows x 4 panels (24 accumulators, 4 B vectors,
/// 1 broadcast). When M is small, B is read from memory or L3 once and is the
/// bottleneck: 4 panel streams in flight fetch it faster than 2 (LeViT-128S, 1 thread:
/// the GEMMs of the 49- and 16-token stages went from 44.8 to 48 GMAC/s).
pub(crate) const WIDE_MR: usize = 6;
/// Widest wide tile, in panels.
pub(crate) const WIDE_NP: usize = 4;

/// Generates a family of tile kernels for one kind of A operand (`$a`, read by the
/// macro `$value!(a, kk, r)` after `$prepare!(t)`), and `run_tile` dispatching to them.
///
/// The long form also names the element type of packed B (`$w`), the target features
/// and the macro running the K loop (`$steps`, see [`f32_steps`]): the bf16 kernels
/// (`super::bf16`) reuse the tiles and epilogues with their own B loads.
macro_rules! tile_family {
    ($a:ty, $steps:ident, $prepare:ident, $value:ident, $advance:ident) => {
        tile_family!(
            $a,
            f32,
            "avx512f,avx512vl,avx512dq,avx512bw,fma",
            $steps,
            $prepare,
            $value,
            $advance
        );
    };
    ($a:ty, $w:ty, $feat:literal, $steps:ident, $prepare:ident, $value:ident, $advance:ident) => {
        use core::arch::x86_64::*;

        use super::*;

        /// Runs one `mr x np` tile.
        ///
        /// # Safety
        /// The CPU must support the family's target features; `t` must satisfy
        /// [`Tile`]'s contract with `1 <= mr <= MR`, `1 <= np <= NP`, or
        /// `1 <= mr <= WIDE_MR`, `1 <= np <= WIDE_NP`.
        pub(crate) unsafe fn run_tile(mr: usize, np: usize, t: &Tile<$a, $w>) {
            // SAFETY: forwarded from this function's contract (every tile has the same).
            unsafe {
                match (mr, np) {
                    (1, 1) => t1x1(t),
                    (1, 2) => t1x2(t),
                    (2, 1) => t2x1(t),
                    (2, 2) => t2x2(t),
                    (3, 1) => t3x1(t),
                    (3, 2) => t3x2(t),
                    (4, 1) => t4x1(t),
                    (4, 2) => t4x2(t),
                    (5, 1) => t5x1(t),
                    (5, 2) => t5x2(t),
                    (6, 1) => t6x1(t),
                    (6, 2) => t6x2(t),
                    (7, 1) => t7x1(t),
                    (7, 2) => t7x2(t),
                    (8, 1) => t8x1(t),
                    (8, 2) => t8x2(t),
                    (9, 1) => t9x1(t),
                    (9, 2) => t9x2(t),
                    (10, 1) => t10x1(t),
                    (10, 2) => t10x2(t),
                    (11, 1) => t11x1(t),
                    (11, 2) => t11x2(t),
                    (12, 1) => t12x1(t),
                    (12, 2) => t12x2(t),
                    (1, 3) => t1x3(t),
                    (1, 4) => t1x4(t),
                    (2, 3) => t2x3(t),
                    (2, 4) => t2x4(t),
                    (3, 3) => t3x3(t),
                    (3, 4) => t3x4(t),
                    (4, 3) => t4x3(t),
                    (4, 4) => t4x4(t),
                    (5, 3) => t5x3(t),
                    (5, 4) => t5x4(t),
                    (6, 3) => t6x3(t),
                    (6, 4) => t6x4(t),
                    _ => unreachable!("tile {mr}x{np}"),
                }
            }
        }

        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t1x1, 1, [0], [0]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t2x1, 1, [0], [0 1]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t3x1, 1, [0], [0 1 2]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t4x1, 1, [0], [0 1 2 3]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t5x1, 1, [0], [0 1 2 3 4]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t6x1, 1, [0], [0 1 2 3 4 5]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t7x1, 1, [0], [0 1 2 3 4 5 6]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t8x1, 1, [0], [0 1 2 3 4 5 6 7]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t9x1, 1, [0], [0 1 2 3 4 5 6 7 8]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t10x1, 1, [0], [0 1 2 3 4 5 6 7 8 9]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t11x1, 1, [0], [0 1 2 3 4 5 6 7 8 9 10]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t12x1, 1, [0], [0 1 2 3 4 5 6 7 8 9 10 11]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t1x3, 3, [0 1 2], [0]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t2x3, 3, [0 1 2], [0 1]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t3x3, 3, [0 1 2], [0 1 2]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t4x3, 3, [0 1 2], [0 1 2 3]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t5x3, 3, [0 1 2], [0 1 2 3 4]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t6x3, 3, [0 1 2], [0 1 2 3 4 5]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t1x4, 4, [0 1 2 3], [0]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t2x4, 4, [0 1 2 3], [0 1]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t3x4, 4, [0 1 2 3], [0 1 2]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t4x4, 4, [0 1 2 3], [0 1 2 3]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t5x4, 4, [0 1 2 3], [0 1 2 3 4]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t6x4, 4, [0 1 2 3], [0 1 2 3 4 5]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t1x2, 2, [0 1], [0]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t2x2, 2, [0 1], [0 1]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t3x2, 2, [0 1], [0 1 2]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t4x2, 2, [0 1], [0 1 2 3]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t5x2, 2, [0 1], [0 1 2 3 4]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t6x2, 2, [0 1], [0 1 2 3 4 5]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t7x2, 2, [0 1], [0 1 2 3 4 5 6]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t8x2, 2, [0 1], [0 1 2 3 4 5 6 7]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t9x2, 2, [0 1], [0 1 2 3 4 5 6 7 8]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t10x2, 2, [0 1], [0 1 2 3 4 5 6 7 8 9]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t11x2, 2, [0 1], [0 1 2 3 4 5 6 7 8 9 10]);
        tile_fn!(($a, $w, $feat, $steps, $prepare, $value, $advance), t12x2, 2, [0 1], [0 1 2 3 4 5 6 7 8 9 10 11]);
    };
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

/// The K loop of an f32 tile over one run of A per row: `acc[r][p] += A[r][kk] *
/// B[kk][p]` for kk = 0..k in order, one B vector per panel and one broadcast per row
/// each step.
///
/// This loop must stay free of anything that moves the row pointers: with a branch
/// per step that could move them ([`f32_segmented_steps`]), LLVM stored all 12 row
/// pointers of the 12-row tiles back to the stack on every step, and the tile went
/// front-end bound (SPR, 1 thread: 196x384x768 at 126 against 144 GFLOP/s here).
macro_rules! f32_steps {
    ($t:ident, $a:ident, $acc:ident, $np:literal, $ps:tt, [$($r:literal)+], $value:ident, $advance:ident) => {
        debug_assert!($t.seg_len >= $t.k);
        let (b, stride) = ($t.b, $t.panel_stride);
        for kk in 0..$t.k {
            f32_step!(b, stride, kk, $a, $acc, $np, $ps, [$($r)+], $value);
        }
    };
}

/// [`f32_steps`] for A rows made of runs of `seg_len` steps `seg_stride` apart (the
/// implicit-GEMM convolution, [`super::gemm_segmented`]): between runs the row
/// pointers move so that `a[r] + kk` stays the address of step kk.
///
/// A 3x3 convolution has three runs, and they get three plain loops one after the
/// other, each as tight as [`f32_steps`]'s. Any other run count takes the general
/// loop, whose per-step branch costs the 12-row tiles their row pointers (see
/// [`f32_steps`]); nesting a loop over the steps of a run inside a loop over runs
/// made LLVM spill the accumulators instead.
macro_rules! f32_segmented_steps {
    ($t:ident, $a:ident, $acc:ident, $np:literal, $ps:tt, [$($r:literal)+], $value:ident, $advance:ident) => {
        let (b, stride) = ($t.b, $t.panel_stride);
        let (len, jump) = ($t.seg_len, $t.seg_stride.wrapping_sub($t.seg_len));
        if $t.k == 3 * len {
            for kk in 0..len {
                f32_step!(b, stride, kk, $a, $acc, $np, $ps, [$($r)+], $value);
            }
            $advance!($a, jump, [$($r)+]);
            for kk in len..2 * len {
                f32_step!(b, stride, kk, $a, $acc, $np, $ps, [$($r)+], $value);
            }
            $advance!($a, jump, [$($r)+]);
            for kk in 2 * len..3 * len {
                f32_step!(b, stride, kk, $a, $acc, $np, $ps, [$($r)+], $value);
            }
        } else {
            let mut seg_end = len;
            for kk in 0..$t.k {
                if kk == seg_end {
                    $advance!($a, jump, [$($r)+]);
                    seg_end += len;
                }
                f32_step!(b, stride, kk, $a, $acc, $np, $ps, [$($r)+], $value);
            }
        }
    };
}

/// Step `kk` of an f32 tile: `np` B vectors, then each row's broadcast times them.
macro_rules! f32_step {
    ($b:ident, $stride:ident, $kk:ident, $a:ident, $acc:ident, $np:literal, $ps:tt, [$($r:literal)+], $value:ident) => {
        // SAFETY: `t.b` holds `np` panels of `t.k * 16` floats `stride` apart and the
        // A values of rows < mr at kk < t.k are readable (Tile contract).
        unsafe {
            let mut bv = [_mm512_setzero_ps(); $np];
            for (p, bv) in bv.iter_mut().enumerate() {
                *bv = _mm512_loadu_ps($b.add(p * $stride + $kk * 16));
                // A hint, never a read: near the end of a panel it may fetch a line
                // of the next panel or of nothing at all (prefetches do not fault),
                // hence `wrapping_add`.
                let ahead = $b.wrapping_add(p * $stride + ($kk + B_PREFETCH_STEPS) * 16);
                _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
            }
            $( fma_row!($acc, bv, _mm512_set1_ps($value!($a, $kk, $r)), $r, $ps); )+
        }
    };
}

macro_rules! tile_fn {
    (($a:ty, $w:ty, $feat:literal, $steps:ident, $prepare:ident, $value:ident, $advance:ident),
     $name:ident, $np:literal, $ps:tt, [$($r:literal)+]) => {
        #[target_feature(enable = $feat)]
        unsafe fn $name(t: &Tile<$a, $w>) {
            const R: usize = [$($r),+].len();
            debug_assert!(t.cols >= 1 && t.cols <= $np * 16 && t.cols > ($np - 1) * 16);
            let mut acc = [[_mm512_setzero_ps(); $np]; R];
            #[allow(unused_mut)]
            let mut a = $prepare!(t, [$($r)+]);
            $steps!(t, a, acc, $np, $ps, [$($r)+], $value, $advance);
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

/// Row pointers, copied out of the tile so they stay in registers.
macro_rules! rows_prepare {
    ($t:ident, [$($r:literal)+]) => { [$($t.a[$r]),+] };
}
macro_rules! rows_value {
    ($a:ident, $kk:ident, $r:literal) => {
        *$a[$r].add($kk)
    };
}
macro_rules! rows_advance {
    ($a:ident, $by:expr, [$($r:literal)+]) => {{
        let by = $by;
        $( $a[$r] = $a[$r].wrapping_add(by); )+
    }};
}
/// One base pointer and the tap table: each `k` step loads one offset, then the rows'
/// broadcasts share one address register with constant displacements.
macro_rules! taps_prepare {
    ($t:ident, [$($r:literal)+]) => {
        $t.a
    };
}
macro_rules! taps_value {
    ($a:ident, $kk:ident, $r:literal) => {
        *$a.base.add(*$a.koff.add($kk) as usize + 2 * $r)
    };
}

// The tile generator and its row-operand pieces, for the bf16 kernels' families.
pub(crate) use {fma_row, rows_prepare, rows_value, store_row, tile_family, tile_fn};

/// Kernels reading A rows in place (`GemmArgs`), one run per row.
pub(crate) mod rows {
    tile_family!(RowPtrs, f32_steps, rows_prepare, rows_value, rows_advance);
}

/// Kernels reading A rows in place in several runs per row ([`super::gemm_segmented`]).
pub(crate) mod segmented_rows {
    tile_family!(
        RowPtrs,
        f32_segmented_steps,
        rows_prepare,
        rows_value,
        rows_advance
    );
}

/// Kernels reading A through a tap table (`TapsArgs`).
pub(crate) mod taps {
    // A tap table indexes all of K: one run, nothing to move (`f32_steps` never
    // expands its advance macro).
    tile_family!(Taps, f32_steps, taps_prepare, taps_value, no_advance);
}

/// The f32 kernel's tiles.
pub(crate) const F32_TILES: Tiles<f32> = Tiles {
    mr: MR,
    np: NP,
    wide: Some((WIDE_MR, WIDE_NP)),
    panel_len: f32_panel_len,
    run: rows::run_tile,
};

/// [`F32_TILES`] on A rows made of several runs ([`super::gemm_segmented`]), tall
/// tiles only: a convolution's small weights stay cached, so wide tiles would not help.
pub(crate) const F32_SEGMENTED_TILES: Tiles<f32> = Tiles {
    wide: None,
    run: segmented_rows::run_tile,
    ..F32_TILES
};

super::tiled_kernel!(f32_kernel, F32, f32, "avx512_f32_12x32", Avx512, F32_TILES);
