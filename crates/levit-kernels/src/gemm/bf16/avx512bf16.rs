//! AVX512_BF16 dot kernel: activations rounded to bf16, pairs multiplied by
//! `vdpbf16ps` into f32 accumulators.
//!
//! Tiles, blocking and epilogues are the f32 AVX-512 kernel's (`gemm::avx512`: 12 rows
//! x 2 panels = 24 zmm accumulators, 2 B rows, 1 broadcast; 6 x 4 for calls of at
//! most 64 rows). Each tile first converts its A rows to bf16 pairs (round to nearest
//! even, `vcvtne2ps2bf16`: 32 values per instruction) into a stack buffer, [`KC`]
//! steps of K at a time ([`to_pairs`]); then per K pair it broadcasts each row's pair
//! (32 bits) and runs one `vdpbf16ps` per panel against the panel's 64-byte row of 16
//! weight pairs. Every output is one chain of `vdpbf16ps` over the pairs
//! `0..ceil(K/2)` in order, whatever the tile, chunk or thread split: the results are
//! deterministic. An odd K pairs the last step with a zero (A is never read past K;
//! B is zero-padded there).
//!
//! On Zen 4 `vdpbf16ps` does 32 multiply-adds where an f32 FMA does 16, so this is the
//! fast bf16 kernel there; Intel cores run it at half rate ([`Isa::best`] skips this
//! level on them).

use core::arch::x86_64::*;
use std::mem::MaybeUninit;

use crate::gemm::avx512::{
    rows_prepare, store_row, tile_family, tile_fn, MR, NP, WIDE_MR, WIDE_NP,
};
use crate::gemm::{Epilogue, RowPtrs, Tile, Tiles};
use crate::vecmath::avx512::{activate, mask};

/// Steps of K converted to bf16 per chunk: the buffer holds `MR` rows of `KC / 2`
/// pairs (24 KiB of stack); LeViT's K up to 1024 is one chunk.
const KC: usize = 1024;

/// Pairs of one row per block of the buffer (one 64-byte vector).
const BLOCK: usize = 16;

/// Reinterprets 32 u16 lanes as bf16.
#[inline(always)]
fn bh(v: __m512i) -> __m512bh {
    // SAFETY: both are 64-byte vectors of plain bits.
    unsafe { core::mem::transmute::<__m512i, __m512bh>(v) }
}

/// Rounds steps `k0 .. k0 + len` of every row in `rows` to bf16 pairs (pair `i` =
/// steps `2i`, `2i+1`, the even one in the low half; zero past `len`) into `dst`,
/// in blocks of [`BLOCK`] pairs: block `q` of row `r` at `dst[(q * rows.len() + r) *
/// BLOCK..]`, so that one K pair of all rows lies within a few cache lines.
///
/// Out of line: the tile's 24 accumulators are saved once around the call, rather
/// than competing with the conversion for registers in the K loop.
///
/// # Safety
/// AVX512_BF16 must be supported; each row must have `k0 + len` readable floats and
/// `dst` room for `len.div_ceil(32) * rows.len() * BLOCK` pairs.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")]
#[inline(never)]
unsafe fn to_pairs(rows: &[*const f32], k0: usize, len: usize, dst: *mut u32) {
    for (q, i) in (0..len).step_by(2 * BLOCK).enumerate() {
        let rest = len - i;
        let (lo_mask, hi_mask) = (mask(rest.min(16)), mask(rest.saturating_sub(16).min(16)));
        for (r, &row) in rows.iter().enumerate() {
            let src = row.wrapping_add(k0 + i);
            // SAFETY: the masks cover only steps < k0 + len (masked-off lanes are not
            // read); block q of row r is inside `dst`'s room.
            unsafe {
                let lo = _mm512_maskz_loadu_ps(lo_mask, src);
                let hi = _mm512_maskz_loadu_ps(hi_mask, src.wrapping_add(16));
                let dst = dst.add((q * rows.len() + r) * BLOCK).cast::<__m512bh>();
                dst.write_unaligned(_mm512_cvtne2ps_pbh(hi, lo));
            }
        }
    }
}

/// `acc[r][p] += dot(pair, b[p])` for each panel `p` of row `r`.
macro_rules! dot_row {
    ($acc:ident, $b:ident, $pair:expr, $r:literal, [$($p:literal)+]) => {{
        let av = bh(_mm512_set1_epi32($pair as i32));
        $( $acc[$r][$p] = _mm512_dpbf16_ps($acc[$r][$p], av, $b[$p]); )+
    }};
}

/// The K loop of a dot tile (the `$steps` of `tile_family!`).
macro_rules! dot_steps {
    ($t:ident, $a:ident, $acc:ident, $np:literal, $ps:tt, [$($r:literal)+], $value:ident, $advance:ident) => {
        // One run of A per row: only the f32 kernel takes segmented rows.
        debug_assert!($t.seg_len >= $t.k);
        const ROWS: usize = [$($r),+].len();
        let (b, stride) = ($t.b, $t.panel_stride);
        let mut buf = MaybeUninit::<[u32; KC / 2 * ROWS]>::uninit();
        let pairs = buf.as_mut_ptr().cast::<u32>();
        let mut k0 = 0;
        while k0 < $t.k {
            let len = KC.min($t.k - k0);
            // SAFETY: rows < mr have `t.k >= k0 + len` readable floats (Tile contract);
            // the buffer has room for KC/2 pairs of ROWS rows.
            unsafe { to_pairs(&$a[..], k0, len, pairs) };
            let n_pairs = len.div_ceil(2);
            for q in 0..n_pairs.div_ceil(BLOCK) {
                let strip = pairs.wrapping_add(q * BLOCK * ROWS);
                let rows = b.wrapping_add((k0 / 2 + q * BLOCK) * 32);
                for j in 0..BLOCK.min(n_pairs - q * BLOCK) {
                    // SAFETY: pair k0/2 + q*BLOCK + j < ceil(K/2) <= KP/2 rows of 32
                    // u16 in each of the np panels (Tile contract with bf16 panels);
                    // `to_pairs` wrote that pair of every row.
                    unsafe {
                        let mut bv = [bh(_mm512_setzero_si512()); $np];
                        for (p, bv) in bv.iter_mut().enumerate() {
                            *bv = bh(_mm512_loadu_si512(rows.add(p * stride + j * 32).cast()));
                        }
                        $( dot_row!($acc, bv, *strip.add($r * BLOCK + j), $r, $ps); )+
                    }
                }
            }
            k0 += len;
        }
    };
}

mod rows {
    super::tile_family!(
        RowPtrs,
        u16,
        "avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma",
        dot_steps,
        rows_prepare,
        rows_value,   // never invoked: A is read through the bf16 buffer
        rows_advance  // never invoked: one run of A per row
    );
}

/// The kernel's tiles: the f32 AVX-512 kernel's shapes on bf16 panels.
const TILES: Tiles<u16> = Tiles {
    mr: MR,
    np: NP,
    wide: Some((WIDE_MR, WIDE_NP)),
    panel_len: crate::bf16::panel_len,
    run: rows::run_tile,
};

crate::gemm::tiled_kernel!(
    bf16_kernel,
    Bf16,
    bf16,
    "avx512bf16_bf16_12x32",
    Avx512Bf16,
    TILES
);
