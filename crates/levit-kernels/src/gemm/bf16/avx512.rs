//! AVX-512 widening bf16 kernel: bf16 weights widened exactly to f32, f32 FMAs on f32
//! activations.
//!
//! The tiles, blocking and epilogues are the f32 kernel's (`gemm::avx512`: 12 rows x
//! 2 panels, and 6 x 4 for calls of at most 64 rows); only the K loop differs. One
//! 64-byte row of a bf16 panel holds the 16 columns of two K steps as pairs, so one
//! load serves two steps: `u32 << 16` is the even step's f32, `u32 & 0xFFFF0000` the
//! odd one's (two ALU ops per two steps, no conversion instruction). Each output is
//! the f32 kernel's FMA chain over `k = 0..K` in order, on the widened weights: the
//! results are bit-identical to `avx512_f32_12x32` on `B` widened to f32, and the
//! weights stream at half the bytes.

use crate::gemm::avx512::{
    fma_row, rows_prepare, rows_value, store_row, tile_family, tile_fn, MR, NP, WIDE_MR, WIDE_NP,
};
use crate::gemm::{Epilogue, RowPtrs, Tile, Tiles};
use crate::vecmath::avx512::{activate, mask};

/// The K loop of a widening tile (the `$steps` of `tile_family!`): pairs
/// `kp < K/2` do steps `2kp` and `2kp+1` from one B row per panel; an odd K ends with
/// one step on the even halves of the last row (A is never read at `K`).
macro_rules! bf16w_steps {
    ($t:ident, $a:ident, $acc:ident, $np:literal, $ps:tt, [$($r:literal)+], $value:ident, $advance:ident) => {
        // One run of A per row: only the f32 kernel takes segmented rows.
        debug_assert!($t.seg_len >= $t.k);
        let (b, stride) = ($t.b, $t.panel_stride);
        let high = _mm512_set1_epi32(0xFFFF_0000_u32 as i32);
        // The B rows of pair `kp`, widened: (even step, odd step) per panel.
        let widen = |kp: usize| {
            let mut even = [_mm512_setzero_ps(); $np];
            let mut odd = [_mm512_setzero_ps(); $np];
            for p in 0..$np {
                // SAFETY: each of the `np` panels (`stride` apart) holds `KP/2 >= kp+1`
                // rows of 32 u16 (Tile contract with bf16 panels).
                let row = unsafe { _mm512_loadu_si512(b.add(p * stride + kp * 32).cast()) };
                even[p] = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(row));
                odd[p] = _mm512_castsi512_ps(_mm512_and_si512(row, high));
            }
            (even, odd)
        };
        for kp in 0..$t.k / 2 {
            let (k0, k1) = (2 * kp, 2 * kp + 1);
            let (even, odd) = widen(kp);
            // SAFETY: the A values of rows < mr at steps < t.k are readable (Tile
            // contract) and k1 < t.k.
            unsafe {
                $( fma_row!($acc, even, _mm512_set1_ps($value!($a, k0, $r)), $r, $ps); )+
                $( fma_row!($acc, odd, _mm512_set1_ps($value!($a, k1, $r)), $r, $ps); )+
            }
        }
        if $t.k % 2 == 1 {
            let k0 = $t.k - 1;
            let (even, _) = widen(k0 / 2);
            // SAFETY: as above, k0 < t.k.
            unsafe {
                $( fma_row!($acc, even, _mm512_set1_ps($value!($a, k0, $r)), $r, $ps); )+
            }
        }
    };
}

mod rows {
    super::tile_family!(
        RowPtrs,
        u16,
        "avx512f,avx512vl,avx512dq,avx512bw,fma",
        bf16w_steps,
        rows_prepare,
        rows_value,
        rows_advance // never invoked: one run of A per row
    );
}

/// The kernel's tiles: the f32 kernel's shapes on bf16 panels.
const TILES: Tiles<u16> = Tiles {
    mr: MR,
    np: NP,
    wide: Some((WIDE_MR, WIDE_NP)),
    panel_len: crate::bf16::panel_len,
    run: rows::run_tile,
};

crate::gemm::tiled_kernel!(bf16_kernel, Bf16, bf16, "avx512_bf16w_12x32", Avx512, TILES);
