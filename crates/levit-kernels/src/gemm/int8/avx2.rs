//! The AVX2 int8 GEMM kernel `avx2_int8_4x16`, for CPUs without VNNI (AVX-VNNI is not
//! on every AVX2 CPU, and AVX-512 CPUs before Cascade Lake lack AVX512_VNNI).
//!
//! A holds the signed `q` (no zero point). Per 4 K values, one row and 8 columns:
//! `vpsignb` gives `sign(q, w)`, `vpmaddubsw(|w|, sign(q, w))` sums pairs of products
//! into i16 (both factors at most 127 in magnitude, so a pair is at most `2 * 127² =
//! 32258`: it cannot saturate, unlike `u8 x s8` products), and `vpmaddwd` by ones
//! sums the two pairs into the column's i32 lane. So the sums are exact, the same as
//! every other int8 kernel's.
//!
//! Tile: up to 4 rows x 1 panel: 8 accumulators, 2 B vectors and their magnitudes, a
//! broadcast, ones and temporaries in the 16 ymm registers. A row tile of 12 rows runs
//! three of them per panel.

use core::arch::x86_64::*;

use super::{int8_kernel, Int8Out, Int8Tile, Int8Tiles};
use crate::gemm::Epilogue;
use crate::vecmath::avx2::{activate, mask};
use crate::Isa;

/// Rows of one register tile.
const TR: usize = 4;

/// The kernel's pieces.
const TILES: Int8Tiles = Int8Tiles {
    mr: 12,
    np: 1,
    row_align: 1,
    signed_a: true,
    max_bits,
    quantize,
    run,
    store,
};

int8_kernel!(
    int8_kernel,
    "avx2_int8_4x16",
    Avx2,
    Isa::Avx2.is_supported(),
    TILES
);

/// # Safety
/// AVX2; `src` holds `len` floats.
#[target_feature(enable = "avx2")]
unsafe fn max_bits(src: *const f32, len: usize) -> u32 {
    let abs = _mm256_set1_epi32(0x7fff_ffff);
    let mut m = _mm256_setzero_si256();
    let mut k = 0;
    while k < len {
        // SAFETY: the mask covers only floats k.. < len (masked-off lanes are not read).
        let v = unsafe { _mm256_maskload_epi32(src.add(k).cast(), mask((len - k).min(8))) };
        m = _mm256_max_epu32(m, _mm256_and_si256(v, abs));
        k += 8;
    }
    let m = _mm_max_epu32(_mm256_castsi256_si128(m), _mm256_extracti128_si256::<1>(m));
    let m = _mm_max_epu32(m, _mm_shuffle_epi32::<0b01_00_11_10>(m));
    let m = _mm_max_epu32(m, _mm_shuffle_epi32::<0b10_11_00_01>(m));
    _mm_cvtsi128_si32(m) as u32
}

/// # Safety
/// AVX2; `src` holds `len` floats, `dst` `padded` bytes (a multiple of 8, `>= len`).
#[target_feature(enable = "avx2")]
unsafe fn quantize(src: *const f32, len: usize, padded: usize, inv: f32, flip: u8, dst: *mut u8) {
    debug_assert!(padded.is_multiple_of(8) && padded >= len);
    let (inv, flip) = (_mm256_set1_ps(inv), _mm_set1_epi8(flip as i8));
    let mut k = 0;
    while k < padded {
        let lanes = mask(len.saturating_sub(k).min(8));
        // SAFETY: the mask covers only floats k.. < len (masked-off lanes read as 0 and
        // quantize to 0); the store writes bytes k..k+8 <= padded.
        unsafe {
            let x = _mm256_maskload_ps(src.wrapping_add(k), lanes);
            // Round to nearest even (default MXCSR); |x * inv| <= 127, no saturation.
            let q = _mm256_cvtps_epi32(_mm256_mul_ps(x, inv));
            let q = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256::<1>(q));
            let q = _mm_xor_si128(_mm_packs_epi16(q, q), flip);
            _mm_storel_epi64(dst.add(k).cast(), q);
        }
        k += 8;
    }
}

/// # Safety
/// AVX2; [`Int8Tile`]'s contract with `np == 1`.
#[target_feature(enable = "avx2")]
unsafe fn run(t: &Int8Tile) {
    debug_assert_eq!(t.np, 1);
    let mut r = 0;
    while r < t.h {
        let rows = TR.min(t.h - r);
        // SAFETY: forwarded from the contract, for rows r..r+rows < h.
        unsafe {
            match rows {
                1 => tile::<1>(t, r),
                2 => tile::<2>(t, r),
                3 => tile::<3>(t, r),
                _ => tile::<4>(t, r),
            }
        }
        r += rows;
    }
}

/// Rows `r0..r0 + R` of one panel.
///
/// # Safety
/// AVX2; [`Int8Tile`]'s contract, `r0 + R <= h`.
#[target_feature(enable = "avx2")]
unsafe fn tile<const R: usize>(t: &Int8Tile, r0: usize) {
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_si256(); 2]; R];
    for (r, acc) in acc.iter_mut().enumerate() {
        if !t.first {
            for (h, acc) in acc.iter_mut().enumerate() {
                // SAFETY: accumulator row r0 + r < h holds 16 readable i32 (contract).
                *acc = unsafe { _mm256_loadu_si256(t.acc.add((r0 + r) * t.ldacc + 8 * h).cast()) };
            }
        }
    }
    for kq in 0..t.used {
        // SAFETY: the panel holds kq rows of 64 bytes (contract).
        let b = unsafe {
            [
                _mm256_loadu_si256(t.b.add(kq * 64).cast()),
                _mm256_loadu_si256(t.b.add(kq * 64 + 32).cast()),
            ]
        };
        let mag = [_mm256_abs_epi8(b[0]), _mm256_abs_epi8(b[1])];
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: row r0 + r < h of A holds kq * 4 bytes (contract).
            let q = unsafe {
                t.a.add((r0 + r) * t.lda + 4 * kq)
                    .cast::<i32>()
                    .read_unaligned()
            };
            let q = _mm256_set1_epi32(q);
            for h in 0..2 {
                let pairs = _mm256_maddubs_epi16(mag[h], _mm256_sign_epi8(q, b[h]));
                acc[h] = _mm256_add_epi32(acc[h], _mm256_madd_epi16(pairs, ones));
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        for (h, acc) in acc.iter().enumerate() {
            // SAFETY: accumulator row r0 + r < h holds 16 writable i32 (contract).
            unsafe { _mm256_storeu_si256(t.acc.add((r0 + r) * t.ldacc + 8 * h).cast(), *acc) };
        }
    }
}

/// # Safety
/// AVX2 + FMA; [`Int8Out`]'s contract.
#[target_feature(enable = "avx2,fma")]
unsafe fn store(o: &Int8Out) {
    let mut j = 0;
    while j < o.cols {
        let m = mask((o.cols - j).min(8));
        // SAFETY: the mask covers only columns j.. < cols of sw, comp and bias.
        let (sw, comp, bias) = unsafe {
            (
                _mm256_maskload_ps(o.sw.add(j), m),
                _mm256_maskload_epi32(o.comp.add(j).cast(), m),
                _mm256_maskload_ps(o.bias.add(j), m),
            )
        };
        for r in 0..o.h {
            // SAFETY: row r < h of acc and C, columns j.. < cols under the mask; sa has
            // h floats (contract).
            unsafe {
                let mut acc = _mm256_maskload_epi32(o.acc.add(r * o.ldacc + j).cast(), m);
                if o.subtract {
                    acc = _mm256_sub_epi32(acc, comp);
                }
                let y = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_set1_ps(*o.sa.add(r)));
                let y = _mm256_add_ps(_mm256_mul_ps(y, sw), bias);
                let dst = o.c.add(r * o.ldc + j);
                let y = match o.epilogue {
                    Epilogue::BiasAct(act) => activate(act, y),
                    Epilogue::BiasResidual => _mm256_add_ps(_mm256_maskload_ps(dst, m), y),
                };
                _mm256_maskstore_ps(dst, m, y);
            }
        }
        j += 8;
    }
}
