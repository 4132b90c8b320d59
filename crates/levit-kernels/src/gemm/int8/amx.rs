//! The AMX int8 GEMM kernel `amx_int8_32x32`: `tdpbusd` (u8 x s8 into i32) on Intel
//! AMX tiles.
//!
//! # Tiles
//! As the bf16 AMX kernel (`gemm/bf16/amx.rs`): all eight tiles are 16 rows x 64
//! bytes; a block of up to 32 rows x 2 panels keeps four i32 accumulator tiles
//! `tmm0..tmm3` (`C[ia][ip]` is `tmm(2*ia + ip)`), two A tiles `tmm4, tmm5` (16 rows x
//! 64 K bytes) and two B tiles `tmm6, tmm7`. `tdpbusd` reads B as 16 rows of 16
//! dwords, row `kq` dword `j` holding the 4 bytes `K = 4kq..4kq+4` of column `j`:
//! exactly one 64-byte row `[16][4]` of an int8 panel, so a B tile (64 K values) loads
//! straight from the packed weights with a 64-byte stride. A tiles load from the
//! quantized row buffer of the shared loop (`super::drive`) with its row stride; rows
//! past the block's last are zeros there (`row_align` 16).
//!
//! # Accumulators
//! The shared loop keeps a group's i32 sums in a stack buffer: a tile's accumulators
//! start at zero (`tilezero`) on the first K chunk, are reloaded from the buffer on the
//! others, and are stored there (`tilestored`) at the end of every chunk; the AVX-512
//! store pass then applies compensation, scales, bias and epilogue. The integer sums
//! are exact, so the bits equal every other int8 kernel's.
//!
//! # Why inline assembly
//! As for the bf16 kernel: Rust's AMX intrinsics are unstable. The asm blocks are
//! `volatile` and stay in program order; each block call loads the tile configuration
//! first and releases the tiles at its end.

use core::arch::asm;
use std::ops::Range;

use super::{Int8Tile, Int8Tiles, Scratch};
use crate::gemm::kernel::{GemmKernel, Split};
use crate::gemm::GemmArgs;
use crate::{Isa, Precision};

/// Rows of the tallest tile (two A tiles).
const MR: usize = 32;
/// Panels of the widest tile (two B tiles).
const NP: usize = 2;
/// Bytes of one 64-deep K block of a panel (one B tile).
const B_TILE: usize = 16 * 64;

/// The kernel's pieces: the AVX-512 quantization and store passes of the VNNI kernel.
const TILES: Int8Tiles = Int8Tiles {
    mr: MR,
    np: NP,
    row_align: 16,
    signed_a: false,
    max_bits: super::avx512vnni::max_bits,
    quantize: super::avx512vnni::quantize,
    run,
    store: super::avx512vnni::store,
};

/// The kernel, where this CPU runs it.
pub(crate) fn int8_kernel() -> Option<GemmKernel> {
    (Isa::Amx.is_supported() && crate::amx_os::amx_int8_usable()).then_some(GemmKernel {
        name: "amx_int8_32x32",
        precision: Precision::Int8,
        isa: Isa::Amx,
        split: Split {
            rows: MR,
            panels: NP,
            row_step: 16,
        },
        block: amx_block,
    })
}

/// # Safety
/// As [`crate::gemm::kernel::BlockFn`].
unsafe fn amx_block(
    args: &GemmArgs,
    c: *mut f32,
    _c_len: usize,
    rows: Range<usize>,
    panels: Range<usize>,
) {
    let mut scratch = Scratch::uninit();
    // SAFETY: `BlockFn`'s contract (operands checked, ranges in bounds, exclusive C);
    // the kernel exists only where AMX-INT8 (and AVX-512) runs and the OS granted the
    // tile state. `ldtilecfg` reads the 64 bytes of the static config (valid, palette
    // 1) and resets this thread's tiles; `tilerelease` touches no memory. Block calls
    // do not nest, so nothing else on this thread uses the tiles meanwhile.
    unsafe {
        asm!("ldtilecfg [{}]", in(reg) crate::amx_os::TILES_16X64.0.as_ptr(), options(nostack, readonly, preserves_flags));
        super::drive(&TILES, args, c, rows, panels, scratch.as_mut_ptr());
        asm!("tilerelease", options(nostack, nomem, preserves_flags));
    }
}

/// Runs one tile ([`Int8Tiles::run`]).
///
/// # Safety
/// The tiles are configured (16 x 64 bytes); [`Int8Tile`]'s contract with `h <= 32`
/// (A rows padded to 16), `np <= 2`.
unsafe fn run(t: &Int8Tile) {
    let na = if t.h > 16 { 2 } else { 1 };
    // SAFETY: forwarded.
    unsafe {
        match (na, t.np) {
            (2, 2) => tile_2x2(t),
            (2, _) => tile_2x1(t),
            (_, 2) => tile_1x2(t),
            _ => tile_1x1(t),
        }
    }
}

/// `tileloadd tmm$t, [$p + $s*row]`.
macro_rules! load {
    ($t:literal, $p:expr, $s:expr) => {
        asm!(concat!("tileloadd tmm", $t, ", [{p} + {s}*1]"), p = in(reg) $p, s = in(reg) $s,
            options(nostack, readonly, preserves_flags))
    };
}
/// `tilestored [$p + $s*row], tmm$t`.
macro_rules! store {
    ($t:literal, $p:expr, $s:expr) => {
        asm!(concat!("tilestored [{p} + {s}*1], tmm", $t), p = in(reg) $p, s = in(reg) $s,
            options(nostack, preserves_flags))
    };
}

/// Generates the tile kernel of `na` A tiles x `np` B tiles: accumulators `$c`
/// (with their A and B tiles), A tiles `$a`, B tiles `$b`.
macro_rules! tile_fn {
    ($name:ident, [$($a:literal)+], [$($b:literal)+], [$(($c:literal, $ca:literal, $cb:literal))+]) => {
        /// # Safety
        /// As [`run`], with `na` A tiles (`h <= 16 * na`) and `np` panels.
        #[inline(always)]
        unsafe fn $name(t: &Int8Tile) {
            let acc_stride = t.ldacc * 4;
            // Accumulator tile c (= 2 ia + ip) starts at row 16 ia, column 16 ip.
            let acc = |c: usize| t.acc.wrapping_add((c / 2) * 16 * t.ldacc + (c % 2) * 16);
            // SAFETY: every tile address is inside the buffers the contract names: the
            // accumulator rows < 16 na (the buffer has MAX_MR rows of np * 16 i32 from
            // `t.acc`), A rows < 16 na (padded, `lda` apart) at K block kb < kq / 16,
            // B panel ip < np at block kb (kq rows of 64 bytes); each 16 rows of 64
            // bytes at the given stride.
            unsafe {
                if t.first {
                    $( asm!(concat!("tilezero tmm", $c), options(nostack, nomem, preserves_flags)); )+
                } else {
                    $( load!($c, acc($c), acc_stride); )+
                }
                for kb in 0..t.kq / 16 {
                    $( load!($a, t.a.add(($a - 4) * 16 * t.lda + kb * 64), t.lda); )+
                    $( load!($b, t.b.add(($b - 6) * t.panel_len + kb * B_TILE), 64usize); )+
                    $( asm!(concat!("tdpbusd tmm", $c, ", tmm", $ca, ", tmm", $cb),
                        options(nostack, nomem, preserves_flags)); )+
                }
                $( store!($c, acc($c), acc_stride); )+
            }
        }
    };
}

tile_fn!(tile_2x2, [4 5], [6 7], [(0, 4, 6) (1, 4, 7) (2, 5, 6) (3, 5, 7)]);
tile_fn!(tile_2x1, [4 5], [6], [(0, 4, 6) (2, 5, 6)]);
tile_fn!(tile_1x2, [4], [6 7], [(0, 4, 6) (1, 4, 7)]);
tile_fn!(tile_1x1, [4], [6], [(0, 4, 6)]);
