//! Portable GEMM micro-kernel on `wide::f32x8` (the aarch64 path).
//!
//! Tile: up to [`MR`] = 4 rows x 1 panel (16 columns = 2 f32x8 per row): 8 vector
//! accumulators. On aarch64 that is 16 of the 32 NEON registers (room for B and the
//! broadcasts); on x86 without target features it stays within 16 xmm registers as
//! well as `wide`'s SSE2 lowering allows. Partial panels are stored column by column.

use wide::f32x8;

use super::{f32_panel_len, Tiles};
use super::{Epilogue, RowPtrs, Tile};
use crate::vecmath::portable::activate;

/// Tallest row tile.
pub(crate) const MR: usize = 4;
/// Widest tile, in panels.
pub(crate) const NP: usize = 1;

/// Runs one `mr x 1` tile.
///
/// # Safety
/// `t` must satisfy [`Tile`]'s contract with `1 <= mr <= MR`, `np == 1`.
pub(crate) unsafe fn run_tile(mr: usize, np: usize, t: &Tile) {
    debug_assert_eq!(np, 1);
    // One run of A per row: only AVX-512 takes segmented rows (`gemm_segmented`).
    debug_assert!(t.seg_len >= t.k);
    // SAFETY: forwarded from this function's contract (`t` meets `Tile`'s, and the
    // match picks the tile height `mr`).
    unsafe {
        match mr {
            1 => tile::<1>(t),
            2 => tile::<2>(t),
            3 => tile::<3>(t),
            4 => tile::<4>(t),
            _ => unreachable!("tile {mr}x{np}"),
        }
    }
}

#[inline]
unsafe fn load8(p: *const f32) -> f32x8 {
    // SAFETY: caller guarantees 8 readable floats at `p`.
    f32x8::new(unsafe { core::ptr::read_unaligned(p as *const [f32; 8]) })
}

unsafe fn tile<const R: usize>(t: &Tile) {
    debug_assert!(t.cols >= 1 && t.cols <= 16 && t.panel_stride == t.k * 16);
    let zero = f32x8::splat(0.0);
    let mut acc = [[zero; 2]; R];
    let mut a = [core::ptr::null::<f32>(); R];
    a.copy_from_slice(&t.a[..R]);
    for kk in 0..t.k {
        // SAFETY: the panel holds `t.k * 16` floats and each `t.a[r]` has `t.k`
        // readable floats (Tile contract); kk < t.k.
        unsafe {
            let b0 = load8(t.b.add(kk * 16));
            let b1 = load8(t.b.add(kk * 16 + 8));
            for r in 0..R {
                let av = f32x8::splat(*a[r].add(kk));
                acc[r][0] = av.mul_add(b0, acc[r][0]);
                acc[r][1] = av.mul_add(b1, acc[r][1]);
            }
        }
    }
    // SAFETY: forwarded from this function's contract.
    unsafe { store(t, &acc) }
}

/// The epilogue of an `R x 1` tile: `C = act(acc + bias)` or `C += acc + bias` on the
/// tile's `cols` columns (shared with the bf16 kernel, `super::bf16::portable`).
///
/// # Safety
/// `t` must satisfy [`Tile`]'s contract with `mr == R`, `np == 1`.
#[inline]
pub(crate) unsafe fn store<const R: usize, W>(t: &Tile<RowPtrs, W>, acc: &[[f32x8; 2]; R]) {
    let cols = t.cols;
    let mut bias = [0.0f32; 16];
    // SAFETY: `t.bias` holds `cols` floats (Tile contract).
    bias[..cols].copy_from_slice(unsafe { core::slice::from_raw_parts(t.bias, cols) });
    let bias = [
        f32x8::new(bias[..8].try_into().unwrap()),
        f32x8::new(bias[8..].try_into().unwrap()),
    ];
    for (r, acc) in acc.iter().enumerate() {
        let mut y = [0.0f32; 16];
        for h in 0..2 {
            let v = acc[h] + bias[h];
            let v = match t.epilogue {
                Epilogue::BiasAct(act) => activate(act, v),
                Epilogue::BiasResidual => v,
            };
            y[h * 8..][..8].copy_from_slice(&v.to_array());
        }
        // SAFETY: row r < R, columns < cols of it are inside C (Tile contract), and no
        // other reference to C is live while the kernel runs.
        let dst = unsafe { core::slice::from_raw_parts_mut(t.c.add(r * t.ldc), cols) };
        match t.epilogue {
            Epilogue::BiasAct(_) => dst.copy_from_slice(&y[..cols]),
            Epilogue::BiasResidual => {
                for (d, y) in dst.iter_mut().zip(&y) {
                    *d += *y;
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

super::tiled_kernel!(
    f32_kernel,
    F32,
    f32,
    "portable_f32_4x16",
    Portable,
    F32_TILES
);
