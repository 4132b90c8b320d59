//! The AVX512_VNNI int8 GEMM kernel `avx512_vnni_int8_12x32`: `vpdpbusd` (u8 x s8, four
//! byte products summed into each i32 lane).
//!
//! Tile: up to 12 rows x 2 panels = 24 zmm accumulators, 2 B vectors (one 64-byte row
//! `[16 columns][4 K]` of a panel each) and a broadcast of the row's 4 A bytes: per 4
//! K values, 2 B loads and 12 broadcasts (load-port only) feed 24 `vpdpbusd`, 1536
//! multiply-adds. Smaller tiles (generated with literal indices, like the f32 tiles,
//! so LLVM keeps the accumulators in registers) cover the last rows and an odd panel.
//!
//! Also home of the AVX-512 quantization and store passes, which the AMX kernel shares
//! (they need only AVX-512F/BW).
//!
//! No separate ISA level: AVX512_VNNI is checked by this kernel's constructor. Every
//! CPU with AVX512_BF16 or AMX has it; an AVX-512 CPU without it (Skylake-SP) gets the
//! AVX2 int8 kernel at the `avx512` level, since selection takes the first registered
//! kernel its level includes that this CPU runs.

use core::arch::x86_64::*;

use super::{int8_kernel, Int8Out, Int8Tile, Int8Tiles};
use crate::gemm::Epilogue;
use crate::vecmath::avx512::{activate, mask};
use crate::Isa;

/// Rows of the tallest tile.
const MR: usize = 12;
/// Panels of the widest tile.
const NP: usize = 2;

/// The kernel's pieces.
const TILES: Int8Tiles = Int8Tiles {
    mr: MR,
    np: NP,
    row_align: 1,
    signed_a: false,
    max_bits,
    quantize,
    run,
    store,
};

/// Whether this CPU runs the kernel: the AVX-512 level plus AVX512_VNNI.
fn supported() -> bool {
    Isa::Avx512.is_supported() && std::arch::is_x86_feature_detected!("avx512vnni")
}

int8_kernel!(
    int8_kernel,
    "avx512_vnni_int8_12x32",
    Avx512,
    supported(),
    TILES
);

/// `max bits(x) & 0x7fff_ffff` over `len` floats.
///
/// # Safety
/// AVX-512F; `src` holds `len` floats.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn max_bits(src: *const f32, len: usize) -> u32 {
    let abs = _mm512_set1_epi32(0x7fff_ffff);
    let mut m = _mm512_setzero_si512();
    let mut k = 0;
    while k < len {
        let lanes = mask((len - k).min(16));
        // SAFETY: the mask covers only floats k.. < len.
        let v = unsafe { _mm512_maskz_loadu_epi32(lanes, src.add(k).cast()) };
        m = _mm512_max_epu32(m, _mm512_and_si512(v, abs));
        k += 16;
    }
    _mm512_reduce_max_epu32(m)
}

/// The quantization pass ([`Int8Tiles::quantize`]).
///
/// # Safety
/// AVX-512F/BW; `src` holds `len` floats, `dst` `padded` bytes (`padded` a multiple of
/// 16, `>= len`).
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn quantize(
    src: *const f32,
    len: usize,
    padded: usize,
    inv: f32,
    flip: u8,
    dst: *mut u8,
) {
    debug_assert!(padded.is_multiple_of(16) && padded >= len);
    let (inv, flip) = (_mm512_set1_ps(inv), _mm_set1_epi8(flip as i8));
    let mut k = 0;
    while k < padded {
        let lanes = mask(len.saturating_sub(k).min(16));
        // SAFETY: the mask covers only floats k.. < len; masked-off lanes are 0, which
        // quantizes to 0; the store writes bytes k..k+16 <= padded.
        unsafe {
            let x = _mm512_maskz_loadu_ps(lanes, src.wrapping_add(k));
            // Round to nearest even (the default MXCSR mode, as `round_ties_even`);
            // |x * inv| <= 127 (module doc of `crate::int8`), so the narrowing never
            // saturates.
            let q = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(x, inv)));
            _mm_storeu_si128(dst.add(k).cast(), _mm_xor_si128(q, flip));
        }
        k += 16;
    }
}

/// The store pass ([`Int8Tiles::store`]).
///
/// # Safety
/// AVX-512F; [`Int8Out`]'s contract.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,fma")]
pub(crate) unsafe fn store(o: &Int8Out) {
    let mut j = 0;
    while j < o.cols {
        let m = mask((o.cols - j).min(16));
        // SAFETY: the mask covers only columns j.. < cols of sw, comp and bias.
        let (sw, comp, bias) = unsafe {
            (
                _mm512_maskz_loadu_ps(m, o.sw.add(j)),
                _mm512_maskz_loadu_epi32(m, o.comp.add(j).cast()),
                _mm512_maskz_loadu_ps(m, o.bias.add(j)),
            )
        };
        for r in 0..o.h {
            // SAFETY: row r < h of acc and C, columns j.. < cols under the mask; sa has
            // h floats (contract).
            unsafe {
                let mut acc = _mm512_maskz_loadu_epi32(m, o.acc.add(r * o.ldacc + j).cast());
                if o.subtract {
                    acc = _mm512_sub_epi32(acc, comp);
                }
                let y = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), _mm512_set1_ps(*o.sa.add(r)));
                let y = _mm512_add_ps(_mm512_mul_ps(y, sw), bias);
                let dst = o.c.add(r * o.ldc + j);
                let y = match o.epilogue {
                    Epilogue::BiasAct(act) => activate(act, y),
                    Epilogue::BiasResidual => _mm512_add_ps(_mm512_maskz_loadu_ps(m, dst), y),
                };
                _mm512_mask_storeu_ps(dst, m, y);
            }
        }
        j += 16;
    }
}

/// Runs one tile ([`Int8Tiles::run`]).
///
/// # Safety
/// AVX512_VNNI; [`Int8Tile`]'s contract with `h <= MR`, `np <= NP`.
unsafe fn run(t: &Int8Tile) {
    // SAFETY: forwarded (every tile has the same contract).
    unsafe {
        match (t.h, t.np) {
            (1, 1) => t1x1(t),
            (2, 1) => t2x1(t),
            (3, 1) => t3x1(t),
            (4, 1) => t4x1(t),
            (5, 1) => t5x1(t),
            (6, 1) => t6x1(t),
            (7, 1) => t7x1(t),
            (8, 1) => t8x1(t),
            (9, 1) => t9x1(t),
            (10, 1) => t10x1(t),
            (11, 1) => t11x1(t),
            (12, 1) => t12x1(t),
            (1, 2) => t1x2(t),
            (2, 2) => t2x2(t),
            (3, 2) => t3x2(t),
            (4, 2) => t4x2(t),
            (5, 2) => t5x2(t),
            (6, 2) => t6x2(t),
            (7, 2) => t7x2(t),
            (8, 2) => t8x2(t),
            (9, 2) => t9x2(t),
            (10, 2) => t10x2(t),
            (11, 2) => t11x2(t),
            (12, 2) => t12x2(t),
            (h, np) => unreachable!("tile {h}x{np}"),
        }
    }
}

/// `vpdpbusd` of one row's 4 A bytes into its accumulators of every panel.
macro_rules! dot_row {
    ($t:ident, $acc:ident, $bv:ident, $kq:ident, $r:literal, [$($p:literal)+]) => {{
        // SAFETY: row r < h holds kq * 4 bytes (contract).
        let av = _mm512_set1_epi32(unsafe {
            $t.a.add($r * $t.lda + 4 * $kq).cast::<i32>().read_unaligned()
        });
        $( $acc[$r][$p] = _mm512_dpbusd_epi32($acc[$r][$p], av, $bv[$p]); )+
    }};
}

/// Loads (or zeroes) and stores one row's accumulators.
macro_rules! acc_row {
    (load, $t:ident, $acc:ident, $r:literal, [$($p:literal)+]) => {{
        $(
            // SAFETY: accumulator row r < h has np * 16 readable i32 (contract).
            $acc[$r][$p] = unsafe { _mm512_loadu_si512($t.acc.add($r * $t.ldacc + $p * 16).cast()) };
        )+
    }};
    (store, $t:ident, $acc:ident, $r:literal, [$($p:literal)+]) => {{
        $(
            // SAFETY: accumulator row r < h has np * 16 writable i32 (contract).
            unsafe { _mm512_storeu_si512($t.acc.add($r * $t.ldacc + $p * 16).cast(), $acc[$r][$p]) };
        )+
    }};
}

macro_rules! tile_fn {
    ($name:ident, $np:literal, $ps:tt, [$($r:literal)+]) => {
        /// # Safety
        /// AVX512_VNNI; [`Int8Tile`]'s contract for this tile's rows and panels.
        #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
        unsafe fn $name(t: &Int8Tile) {
            const R: usize = [$($r),+].len();
            debug_assert!(t.h == R && t.np == $np);
            let mut acc = [[_mm512_setzero_si512(); $np]; R];
            if !t.first {
                $( acc_row!(load, t, acc, $r, $ps); )+
            }
            for kq in 0..t.used {
                let mut bv = [_mm512_setzero_si512(); $np];
                for (p, bv) in bv.iter_mut().enumerate() {
                    // SAFETY: panel p < np holds kq rows of 64 bytes (contract).
                    *bv = unsafe { _mm512_loadu_si512(t.b.add(p * t.panel_len + kq * 64).cast()) };
                }
                $( dot_row!(t, acc, bv, kq, $r, $ps); )+
            }
            $( acc_row!(store, t, acc, $r, $ps); )+
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
