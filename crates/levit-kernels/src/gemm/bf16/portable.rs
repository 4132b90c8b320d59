//! Portable widening bf16 kernel on `wide` (the aarch64 path): bf16 weights widened
//! exactly to f32, f32 multiply-adds on f32 activations.
//!
//! The tile, blocking and epilogue are the f32 portable kernel's (`gemm::portable`: up
//! to 4 rows x 1 panel, 8 f32x8 accumulators). One 64-byte row of a bf16 panel holds
//! two K steps as pairs: `u32 << 16` is the even step's f32, `u32 & 0xFFFF0000` the odd
//! one's. Each output is the f32 kernel's `mul_add` chain over `k = 0..K` in order on
//! the widened weights: bit-identical to `portable_f32_4x16` on `B` widened to f32.

use wide::{f32x8, u32x8};

use crate::gemm::portable::{store, MR, NP};
use crate::gemm::{RowPtrs, Tile, Tiles};

type BTile = Tile<RowPtrs, u16>;

/// Runs one `mr x 1` tile.
///
/// # Safety
/// `t` must satisfy [`Tile`]'s contract (bf16 panels) with `1 <= mr <= MR`, `np == 1`.
unsafe fn run_tile(mr: usize, np: usize, t: &BTile) {
    // One run of A per row: only the f32 AVX-512 kernel takes segmented rows.
    debug_assert!(np == 1 && t.seg_len >= t.k);
    const HEIGHTS: [unsafe fn(&BTile); MR] = [tile::<1>, tile::<2>, tile::<3>, tile::<4>];
    // SAFETY: forwarded from this function's contract (`HEIGHTS[mr - 1]` is the
    // `mr`-row tile).
    unsafe { HEIGHTS[mr - 1](t) }
}

/// One K step: `acc[r] += A[r][kk] * b` for the tile's 16 columns.
///
/// # Safety
/// `a[r]` has `kk + 1` readable floats for every `r`.
#[inline(always)]
unsafe fn step<const R: usize>(
    acc: &mut [[f32x8; 2]; R],
    a: &[*const f32; R],
    kk: usize,
    b: [f32x8; 2],
) {
    for r in 0..R {
        // SAFETY: forwarded from this function's contract.
        let av = f32x8::splat(unsafe { *a[r].add(kk) });
        acc[r][0] = av.mul_add(b[0], acc[r][0]);
        acc[r][1] = av.mul_add(b[1], acc[r][1]);
    }
}

unsafe fn tile<const R: usize>(t: &BTile) {
    debug_assert!(t.cols >= 1 && t.cols <= 16);
    let mut acc = [[f32x8::splat(0.0); 2]; R];
    let mut a = [core::ptr::null::<f32>(); R];
    a.copy_from_slice(&t.a[..R]);
    let high = u32x8::splat(0xFFFF_0000);
    // Pair `kp`'s row, widened: ([even step] x 2 halves, [odd step] x 2 halves).
    let widen = |kp: usize| {
        // SAFETY: the panel holds `KP/2 > kp` rows of 32 u16 (Tile contract).
        let row = unsafe { core::ptr::read_unaligned(t.b.add(kp * 32).cast::<[[u32; 8]; 2]>()) };
        let row = row.map(u32x8::new);
        let even = row.map(|v| wide::bytemuck::cast::<u32x8, f32x8>(v << 16));
        let odd = row.map(|v| wide::bytemuck::cast::<u32x8, f32x8>(v & high));
        (even, odd)
    };
    for kp in 0..t.k / 2 {
        let (even, odd) = widen(kp);
        // SAFETY: each row has t.k > 2kp + 1 readable floats (Tile contract).
        unsafe {
            step(&mut acc, &a, 2 * kp, even);
            step(&mut acc, &a, 2 * kp + 1, odd);
        }
    }
    if t.k % 2 == 1 {
        // An odd K ends with the even half of the last row (A is not read at K).
        let (even, _) = widen(t.k / 2);
        // SAFETY: as above, t.k - 1 < t.k.
        unsafe { step(&mut acc, &a, t.k - 1, even) };
    }
    // SAFETY: forwarded from this function's contract.
    unsafe { store(t, &acc) }
}

/// The kernel's tiles: the f32 portable kernel's shapes on bf16 panels.
const TILES: Tiles<u16> = Tiles {
    mr: MR,
    np: NP,
    wide: None,
    panel_len: crate::bf16::panel_len,
    run: run_tile,
};

crate::gemm::tiled_kernel!(
    bf16_kernel,
    Bf16,
    bf16,
    "portable_bf16w_4x16",
    Portable,
    TILES
);
