//! The AMX bf16 attention kernel `amx_bf16_attention_16x16`: `q·kᵀ` and `p·V` on
//! Intel AMX tiles (`tdpbf16ps`), the scale, bias, softmax and activation in f32 with
//! AVX-512. The kernel of bf16 plans on the AMX level.
//!
//! # Why
//! On the Xeons with AMX, `vdpbf16ps` runs at half the f32 FMA rate, so bf16 pays
//! only through the tiles (about 1.2 TMAC/s per core, 13x the f32 FMAs). With both
//! products on the tiles, what is left is the softmax, so the softmax here is made
//! cheap as well: an `exp` accurate to 3e-6 (the probabilities are rounded to bf16,
//! 2e-3, right after) with one rounding trick in place of `vrndscaleps`.
//!
//! # Numbers (as [`super::reference::attention_bf16_rows`] computes them)
//! q, k, v and the probabilities are rounded to bf16 (to nearest even); the products
//! are exact and summed in f32 by the tile unit (in its own order); the scores
//! `s = dot * scale + bias`, their max, `e = exp(s - max)` and `Σ e` are f32; the
//! output is `act(Σ bf16(e)·bf16(v) * (1 / Σ e))`.
//!
//! # Tiles and scratch
//! All eight tiles are 16 rows x 64 bytes (as in the AMX GEMM). Per head, into the
//! caller's scratch:
//! - K as B tiles: for each block of 16 keys and each 32-deep block of `key_dim`, row
//!   `p` holds the bf16 pair `(k[m][2p], k[m][2p+1])` of each of the 16 keys `m` (a
//!   16x16 transpose of 32-bit pairs);
//! - V as B tiles: for each panel of 16 `val_dim` columns and each block of 32 keys,
//!   row `p` holds `(v[2p][j], v[2p+1][j])` for the 16 columns `j` (the bf16 GEMM
//!   panel layout, `crate::bf16`); keys past `nk` are zero.
//!
//! Then per block of up to 16 query rows: Q as one A tile per 32-deep block (rows
//! past the block and columns past `key_dim` zero); the score tiles, stored f32
//! `[16][nk16]`; per row, `s = acc * scale + bias` and its max in place, then
//! `bf16(exp(s - max))` into a `[16][nk32]` A operand (keys past `nk` zero) with its
//! f32 sum; then `p·V`, two panels per pass, each finished tile scaled by `1 / Σ e`,
//! activated and stored with lane masks.
//!
//! # Determinism
//! A row of a product tile depends only on its row of A: every output row is computed
//! by the same instructions whichever block (or thread's row range) holds it, and the
//! `key_dim` and key blocks are summed in one fixed order. So any split of the rows
//! gives the same bits.
//!
//! # Why inline assembly
//! As in `gemm/bf16/amx.rs`: Rust's AMX intrinsics are unstable. The tile asm blocks
//! are `volatile` and so stay in program order; the compiler never allocates tiles.

use core::arch::asm;
use core::arch::x86_64::*;
use core::ops::Range;

use super::kernel::AttentionKernel;
use super::{AttentionArgs, AttentionShape};
use crate::vecmath::avx512::{activate, mask};
use crate::{Isa, Precision};

/// Rows of a tile; f32 columns of a product tile; keys of a score tile.
const T: usize = 16;
/// bf16 values of one tile row (64 bytes): the depth of one `tdpbf16ps`.
const KB: usize = 32;
/// `u16`s of one bf16 tile.
const TILE_U16: usize = T * KB;
/// `f32`s of one product tile.
const TILE_F32: usize = T * T;
/// Row stride in bytes of the B tiles and of the finished product tiles.
const STRIDE: usize = 64;

/// The kernel, where this CPU (and OS) runs it.
pub(super) fn bf16_kernel() -> Option<AttentionKernel> {
    Isa::Amx.is_supported().then_some(AttentionKernel {
        name: "amx_bf16_attention_16x16",
        precision: Precision::Bf16,
        isa: Isa::Amx,
        rows: attention,
    })
}

/// Where the operands of one head and one row block live in the scratch (offsets in
/// floats, each region a whole number of 64-byte lines from the start).
struct Layout {
    /// `key_dim` padded to whole [`KB`] blocks.
    kdp: usize,
    /// Keys padded to whole score tiles (16) and to whole `p·V` blocks (32).
    nk16: usize,
    nk32: usize,
    /// `val_dim` padded to whole panels (16).
    vdp: usize,
    /// K tiles (`nk16 * kdp` bf16), V tiles (`nk32 * vdp` bf16), Q (`16 * kdp` bf16),
    /// probabilities (`16 * nk32` bf16), scores (`16 * nk16` f32), two finished
    /// product tiles.
    k: usize,
    v: usize,
    q: usize,
    p: usize,
    s: usize,
    c: usize,
    len: usize,
}

impl Layout {
    fn new(s: &AttentionShape) -> Layout {
        let kdp = s.key_dim.div_ceil(KB) * KB;
        let nk16 = s.nk.div_ceil(T) * T;
        let nk32 = s.nk.div_ceil(KB) * KB;
        let vdp = s.val_dim.div_ceil(T) * T;
        let mut len = 0;
        let mut take = |floats: usize| {
            let at = len;
            len += floats.div_ceil(16) * 16;
            at
        };
        let k = take(nk16 * kdp / 2);
        let v = take(nk32 * vdp / 2);
        let q = take(T * kdp / 2);
        let p = take(T * nk32 / 2);
        let s = take(T * nk16);
        let c = take(2 * TILE_F32);
        Layout {
            kdp,
            nk16,
            nk32,
            vdp,
            k,
            v,
            q,
            p,
            s,
            c,
            len,
        }
    }
}

/// Floats of scratch the kernel needs for `shape`.
pub(super) fn scratch_len(shape: &AttentionShape) -> usize {
    Layout::new(shape).len
}

/// `tileloadd tmm$t, [$p + $stride*row]`.
macro_rules! tile_load {
    ($t:literal, $p:expr, $stride:expr) => {
        asm!(concat!("tileloadd tmm", $t, ", [{p} + {s}*1]"), p = in(reg) $p, s = in(reg) $stride,
            options(nostack, readonly, preserves_flags))
    };
}
/// `tilestored [$p + $stride*row], tmm$t`.
macro_rules! tile_store {
    ($t:literal, $p:expr, $stride:expr) => {
        asm!(concat!("tilestored [{p} + {s}*1], tmm", $t), p = in(reg) $p, s = in(reg) $stride,
            options(nostack, preserves_flags))
    };
}
/// `tilezero tmm$t`.
macro_rules! tile_zero {
    ($t:literal) => {
        asm!(
            concat!("tilezero tmm", $t),
            options(nostack, nomem, preserves_flags)
        )
    };
}
/// `tdpbf16ps tmm$c, tmm$a, tmm$b`.
macro_rules! tile_dp {
    ($c:literal, $a:literal, $b:literal) => {
        asm!(
            concat!("tdpbf16ps tmm", $c, ", tmm", $a, ", tmm", $b),
            options(nostack, nomem, preserves_flags)
        )
    };
}

/// The [`super::kernel::RowsFn`] of this kernel.
///
/// # Safety
/// `RowsFn`'s contract; the kernel exists only where AMX runs (and so AVX512_BF16 and
/// AVX-512F/BW/VL/DQ) and the OS granted the tile state.
unsafe fn attention(
    args: &AttentionArgs,
    out: &mut [f32],
    scratch: &mut [f32],
    rows: Range<usize>,
) {
    // SAFETY: `ldtilecfg` reads the 64 bytes of the static config (palette 1, valid
    // shapes) and resets this thread's tiles; `tilerelease` touches no memory. Nothing
    // else on this thread uses tiles meanwhile (kernel calls do not nest), so `heads`
    // finds them configured. Its other needs are this function's contract.
    unsafe {
        asm!("ldtilecfg [{}]", in(reg) crate::amx_os::TILES_16X64.0.as_ptr(), options(nostack, readonly, preserves_flags));
        heads(args, out, scratch, rows);
        asm!("tilerelease", options(nostack, nomem, preserves_flags));
    }
}

/// Every head of rows `rows` (module doc).
///
/// # Safety
/// As [`attention`], with the tiles configured.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")]
unsafe fn heads(args: &AttentionArgs, out: &mut [f32], scratch: &mut [f32], rows: Range<usize>) {
    let s = args.shape;
    let l = Layout::new(&s);
    assert!(scratch.len() >= l.len, "attention scratch too small");
    let base = scratch.as_mut_ptr();
    // SAFETY: every region lies inside the first `l.len` floats of `scratch` (the
    // layout's construction), which the assert above proved exist.
    let (k, v, q, p, sc, c) = unsafe {
        (
            base.add(l.k).cast::<u16>(),
            base.add(l.v).cast::<u16>(),
            base.add(l.q).cast::<u16>(),
            base.add(l.p).cast::<u16>(),
            base.add(l.s),
            base.add(l.c),
        )
    };
    let row_width = s.heads * s.val_dim;
    for h in 0..s.heads {
        // SAFETY: `check` proved every k and v row of head h in bounds; the K and V
        // regions hold nk16 * kdp and nk32 * vdp values.
        unsafe {
            pack_keys(args, h, &l, k);
            pack_values(args, h, &l, v);
        }
        let mut i0 = rows.start;
        while i0 < rows.end {
            let r = T.min(rows.end - i0);
            let mut inv = [0.0f32; T];
            // SAFETY: q rows i0..i0+r < nq of head h, their bias rows and the output
            // rows (i - rows.start) < rows.len() are in bounds (`check` and the
            // `RowsFn` contract); the scratch regions have the layout's sizes; the
            // tiles are configured.
            unsafe {
                pack_queries(args, h, i0, r, &l, q);
                scores(&l, q, k, sc);
                for (rr, inv) in inv.iter_mut().enumerate().take(r) {
                    let bias = args.bias.as_ptr().add((h * s.nq + i0 + rr) * s.nk);
                    *inv = softmax_row(&s, &l, bias, sc.add(rr * l.nk16), p.add(rr * l.nk32));
                }
                let o = out
                    .as_mut_ptr()
                    .add((i0 - rows.start) * row_width + h * s.val_dim);
                values(args, &l, p, v, c, &inv, r, o, row_width);
            }
            i0 += r;
        }
    }
}

/// Rounds 32 floats at `src` (only the first `n <= 32` read, the rest zero) to 32
/// bf16.
///
/// # Safety
/// `src[..n]` is readable; the CPU runs AVX512_BF16.
#[inline(always)]
unsafe fn bf16x32(src: *const f32, n: usize) -> __m512i {
    // SAFETY: the masked loads read only `src[..n]`; masked-off lanes never fault.
    unsafe {
        let lo = _mm512_maskz_loadu_ps(mask(n.min(16)), src);
        let hi = _mm512_maskz_loadu_ps(mask(n.saturating_sub(16)), src.wrapping_add(16));
        // Low half from the second operand: [lo0 .. lo15, hi0 .. hi15].
        core::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo))
    }
}

/// Head `h`'s keys as B tiles (module doc): tile `(j, kb)` (keys `16j..`, `key_dim`
/// block `kb`) at `(j * kdp/32 + kb) * TILE_U16`.
///
/// # Safety
/// `check` holds for `args`; `dst` holds `nk16 * kdp` values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")]
unsafe fn pack_keys(args: &AttentionArgs, h: usize, l: &Layout, dst: *mut u16) {
    let s = args.shape;
    let nkdb = l.kdp / KB;
    for j in 0..l.nk16 / T {
        for kb in 0..nkdb {
            let d0 = kb * KB;
            let n = s.key_dim.saturating_sub(d0).min(KB);
            let mut rows = [_mm512_setzero_si512(); T];
            for (mm, row) in rows.iter_mut().enumerate() {
                let m = j * T + mm;
                if m < s.nk {
                    // SAFETY: key m < nk of head h has key_dim floats (`check`), so
                    // d0 + n <= key_dim are readable.
                    *row = unsafe { bf16x32(args.kv.as_ptr().add(args.k_view.at(m, h) + d0), n) };
                }
            }
            let t = transpose_16x16(&rows);
            let tile = (j * nkdb + kb) * TILE_U16;
            for (pp, row) in t.iter().enumerate() {
                // SAFETY: tile + 32 * pp + 32 <= nk16 * kdp (the contract).
                unsafe { _mm512_storeu_si512(dst.add(tile + pp * KB).cast(), *row) };
            }
        }
    }
}

/// The transpose of a 16x16 matrix of 32-bit elements (row `r` = `rows[r]`).
#[inline(always)]
fn transpose_16x16(rows: &[__m512i; T]) -> [__m512i; T] {
    // SAFETY: AVX-512F register shuffles only; callers are compiled with AVX-512F.
    unsafe {
        let r = rows;
        // 2x2 blocks of 32-bit elements within each 128-bit lane.
        let mut a = [_mm512_setzero_si512(); T];
        for i in 0..T / 2 {
            a[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
            a[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
        }
        // 4x4 blocks within each 128-bit lane.
        let mut b = [_mm512_setzero_si512(); T];
        for i in 0..T / 4 {
            let (x0, x1, x2, x3) = (a[4 * i], a[4 * i + 1], a[4 * i + 2], a[4 * i + 3]);
            b[4 * i] = _mm512_unpacklo_epi64(x0, x2);
            b[4 * i + 1] = _mm512_unpackhi_epi64(x0, x2);
            b[4 * i + 2] = _mm512_unpacklo_epi64(x1, x3);
            b[4 * i + 3] = _mm512_unpackhi_epi64(x1, x3);
        }
        // b[4i + c] lane g holds rows 4i..4i+4 of column 4g + c. Gather the 128-bit
        // lanes: first pairs of row groups, then pairs of those.
        let mut c = [_mm512_setzero_si512(); T];
        for i in 0..T / 8 {
            for cc in 0..4 {
                let (x, y) = (b[8 * i + cc], b[8 * i + 4 + cc]);
                c[8 * i + cc] = _mm512_shuffle_i32x4::<0x88>(x, y);
                c[8 * i + 4 + cc] = _mm512_shuffle_i32x4::<0xDD>(x, y);
            }
        }
        let mut out = [_mm512_setzero_si512(); T];
        for cc in 0..8 {
            let (x, y) = (c[cc], c[8 + cc]);
            out[cc] = _mm512_shuffle_i32x4::<0x88>(x, y);
            out[8 + cc] = _mm512_shuffle_i32x4::<0xDD>(x, y);
        }
        out
    }
}

/// Head `h`'s values as B tiles (module doc): tile `(c, kb)` (columns `16c..`, keys
/// `32kb..`) at `(c * nk32/32 + kb) * TILE_U16`.
///
/// # Safety
/// `check` holds for `args`; `dst` holds `nk32 * vdp` values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")]
unsafe fn pack_values(args: &AttentionArgs, h: usize, l: &Layout, dst: *mut u16) {
    let s = args.shape;
    let nkb = l.nk32 / KB;
    // Output word 2j is v[m][j], word 2j+1 is v[m+1][j].
    let interleave = _mm512_set_epi16(
        31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4,
        19, 3, 18, 2, 17, 1, 16, 0,
    );
    for c in 0..l.vdp / T {
        let j0 = c * T;
        let m = mask(s.val_dim.saturating_sub(j0).min(T));
        for kp in 0..l.nk32 / 2 {
            let mut v = [_mm512_setzero_ps(); 2];
            for (t, v) in v.iter_mut().enumerate() {
                let key = 2 * kp + t;
                if key < s.nk {
                    // SAFETY: value row key < nk of head h has val_dim floats (`check`);
                    // the mask covers only columns j0.. < val_dim.
                    *v = unsafe {
                        _mm512_maskz_loadu_ps(m, args.kv.as_ptr().add(args.v_view.at(key, h) + j0))
                    };
                }
            }
            // [v0 as bf16 .., v1 as bf16 ..] (low half from the second operand), then
            // interleaved into pairs.
            // SAFETY: a bit cast between two 64-byte vector types.
            let bf = unsafe {
                core::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(v[1], v[0]))
            };
            let pairs = _mm512_permutexvar_epi16(interleave, bf);
            let at = (c * nkb + kp / T) * TILE_U16 + (kp % T) * KB;
            // SAFETY: at + 32 <= nk32 * vdp (the contract).
            unsafe { _mm512_storeu_si512(dst.add(at).cast(), pairs) };
        }
    }
}

/// Query rows `i0..i0+r` of head `h` as bf16 A operand `[16][kdp]` (rows past `r` and
/// columns past `key_dim` zero).
///
/// # Safety
/// `check` holds for `args`; rows `i0..i0+r` are `< nq`, `r <= 16`; `dst` holds
/// `16 * kdp` values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")]
unsafe fn pack_queries(
    args: &AttentionArgs,
    h: usize,
    i0: usize,
    r: usize,
    l: &Layout,
    dst: *mut u16,
) {
    let s = args.shape;
    for rr in 0..T {
        for d0 in (0..l.kdp).step_by(KB) {
            let x = if rr < r {
                let n = s.key_dim.saturating_sub(d0).min(KB);
                // SAFETY: q row i0 + rr < nq of head h has key_dim floats (`check`).
                unsafe { bf16x32(args.q.as_ptr().add(args.q_view.at(i0 + rr, h) + d0), n) }
            } else {
                _mm512_setzero_si512()
            };
            // SAFETY: rr * kdp + d0 + 32 <= 16 * kdp.
            unsafe { _mm512_storeu_si512(dst.add(rr * l.kdp + d0).cast(), x) };
        }
    }
}

/// The score tiles of one row block: `sc[rr][m] = Σ_d q[rr][d] k[m][d]` for all 16
/// rows and `nk16` keys, two key tiles per pass.
///
/// # Safety
/// The tiles are configured; `q` holds `16 * kdp` values, `k` the key tiles and `sc`
/// `16 * nk16` floats.
#[inline(always)]
unsafe fn scores(l: &Layout, q: *const u16, k: *const u16, sc: *mut f32) {
    let nkdb = l.kdp / KB;
    let (q_stride, s_stride) = (l.kdp * 2, l.nk16 * 4);
    let tiles = l.nk16 / T;
    // SAFETY (whole body): A tile kb is 16 rows of 64 bytes at q + 32kb, kdp*2 bytes
    // apart (inside 16 * kdp values); key tile (j, kb) is 1 KiB at
    // (j * nkdb + kb) * TILE_U16 for j < nk16/16; score tile j is 16 rows of 64 bytes
    // at sc + 16j, nk16*4 bytes apart (inside 16 * nk16 floats).
    unsafe {
        let mut j = 0;
        while j + 2 <= tiles {
            tile_zero!(0);
            tile_zero!(1);
            for kb in 0..nkdb {
                tile_load!(4, q.add(kb * KB), q_stride);
                tile_load!(6, k.add((j * nkdb + kb) * TILE_U16), STRIDE);
                tile_load!(7, k.add(((j + 1) * nkdb + kb) * TILE_U16), STRIDE);
                tile_dp!(0, 4, 6);
                tile_dp!(1, 4, 7);
            }
            tile_store!(0, sc.add(j * T), s_stride);
            tile_store!(1, sc.add((j + 1) * T), s_stride);
            j += 2;
        }
        if j < tiles {
            tile_zero!(0);
            for kb in 0..nkdb {
                tile_load!(4, q.add(kb * KB), q_stride);
                tile_load!(6, k.add((j * nkdb + kb) * TILE_U16), STRIDE);
                tile_dp!(0, 4, 6);
            }
            tile_store!(0, sc.add(j * T), s_stride);
        }
    }
}

/// `log2(e)`.
const LOG2E: f32 = core::f32::consts::LOG2_E;
/// `2^f` on `[-1/2, 1/2]`, degree 4, relative error 2.7e-6 (least-squares fit to the
/// minimax polynomial, f32 Horner evaluation), constant term first.
const EXP2: [f32; 5] = [
    0.999_999_3,
    0.693_121_8,
    0.240_247_44,
    0.055_917_86,
    0.009_570_101,
];
/// `1.5 * 2^23`: adding and subtracting it rounds an f32 of magnitude < 2^22 to an
/// integer (to nearest even), on any FP port (`vrndscaleps` has one).
const ROUND: f32 = 12_582_912.0;

/// `2^t` for lanes `<= 0` (or NaN, which stays NaN), `t` clamped at -125: results
/// below `2^-125` (and the padded keys' `-inf`) give about `2^-125` instead, never a
/// subnormal (which would cost a microcode assist per vector). A probability that
/// small is invisible next to the row's max, which is 1.
#[inline(always)]
fn exp2_nonpositive(t: __m512) -> __m512 {
    // SAFETY: AVX-512F arithmetic only; callers are compiled with AVX-512F + FMA.
    unsafe {
        // max returns its second operand when either is NaN: keep `t` second.
        let t = _mm512_max_ps(_mm512_set1_ps(-125.0), t);
        let round = _mm512_set1_ps(ROUND);
        let n = _mm512_sub_ps(_mm512_add_ps(t, round), round);
        let f = _mm512_sub_ps(t, n);
        let mut p = _mm512_set1_ps(EXP2[4]);
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(EXP2[3]));
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(EXP2[2]));
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(EXP2[1]));
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(EXP2[0]));
        _mm512_scalef_ps(p, n)
    }
}

/// One row's softmax: `s = acc * scale + bias` in place (keys past `nk`: -inf), then
/// `bf16(exp(s - max))` into `p[..nk32]` (zero past `nk16`); returns `1 / Σ e`.
///
/// # Safety
/// `bias[..nk]` readable, `sc[..nk16]` and `p[..nk32]` writable; the CPU runs
/// AVX512_BF16.
#[inline(always)]
unsafe fn softmax_row(
    s: &AttentionShape,
    l: &Layout,
    bias: *const f32,
    sc: *mut f32,
    p: *mut u16,
) -> f32 {
    let nk = s.nk;
    // SAFETY (whole body): loads and stores stay in sc[..nk16] (vectors at 16c <
    // nk16), bias[..nk] (the last vector masked) and p[..nk32] (32 values at each
    // multiple of 32 below nk32).
    unsafe {
        let scale = _mm512_set1_ps(s.scale);
        let neg_inf = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut vmax = neg_inf;
        let full = nk / T;
        for c in 0..full {
            let x = _mm512_fmadd_ps(
                _mm512_loadu_ps(sc.add(c * T)),
                scale,
                _mm512_loadu_ps(bias.add(c * T)),
            );
            _mm512_storeu_ps(sc.add(c * T), x);
            vmax = _mm512_max_ps(vmax, x);
        }
        if full * T < nk {
            let m = mask(nk - full * T);
            let b = _mm512_maskz_loadu_ps(m, bias.add(full * T));
            let x = _mm512_fmadd_ps(_mm512_loadu_ps(sc.add(full * T)), scale, b);
            let x = _mm512_mask_mov_ps(neg_inf, m, x);
            _mm512_storeu_ps(sc.add(full * T), x);
            vmax = _mm512_max_ps(vmax, x);
        }
        let max = _mm512_reduce_max_ps(vmax);
        let log2e = _mm512_set1_ps(LOG2E);
        let max_log2e = _mm512_set1_ps(max * LOG2E);
        let (mut sum0, mut sum1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let mut c = 0;
        while c < l.nk32 {
            // exp(x - max) = 2^(x log2e - max log2e).
            let e0 = exp2_nonpositive(_mm512_fmsub_ps(
                _mm512_loadu_ps(sc.add(c)),
                log2e,
                max_log2e,
            ));
            let e1 = if c + T < l.nk16 {
                exp2_nonpositive(_mm512_fmsub_ps(
                    _mm512_loadu_ps(sc.add(c + T)),
                    log2e,
                    max_log2e,
                ))
            } else {
                _mm512_setzero_ps()
            };
            sum0 = _mm512_add_ps(sum0, e0);
            sum1 = _mm512_add_ps(sum1, e1);
            let pb = core::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(e1, e0));
            _mm512_storeu_si512(p.add(c).cast(), pb);
            c += KB;
        }
        1.0 / _mm512_reduce_add_ps(_mm512_add_ps(sum0, sum1))
    }
}

/// `out[rr][..val_dim] = act(Σ_m p[rr][m] v[m][..] * inv[rr])` for rows `rr < r`, two
/// panels of 16 columns per pass.
///
/// # Safety
/// The tiles are configured; `p` holds `16 * nk32` values, `v` the value tiles, `c`
/// two product tiles; `out + rr * row_width` holds `val_dim` floats for `rr < r`,
/// which nothing else accesses meanwhile.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn values(
    args: &AttentionArgs,
    l: &Layout,
    p: *const u16,
    v: *const u16,
    c: *mut f32,
    inv: &[f32; T],
    r: usize,
    out: *mut f32,
    row_width: usize,
) {
    let s = args.shape;
    let nkb = l.nk32 / KB;
    let panels = l.vdp / T;
    let p_stride = l.nk32 * 2;
    let mut c0 = 0;
    while c0 < panels {
        let two = c0 + 1 < panels;
        // SAFETY: A tile kb is 16 rows of 64 bytes at p + 32kb, nk32*2 bytes apart
        // (inside 16 * nk32 values); value tile (c, kb) is 1 KiB at
        // (c * nkb + kb) * TILE_U16 for c < panels; `c` holds two product tiles.
        unsafe {
            tile_zero!(0);
            tile_zero!(1);
            for kb in 0..nkb {
                tile_load!(4, p.add(kb * KB), p_stride);
                tile_load!(6, v.add((c0 * nkb + kb) * TILE_U16), STRIDE);
                tile_dp!(0, 4, 6);
                if two {
                    tile_load!(7, v.add(((c0 + 1) * nkb + kb) * TILE_U16), STRIDE);
                    tile_dp!(1, 4, 7);
                }
            }
            tile_store!(0, c, STRIDE);
            tile_store!(1, c.add(TILE_F32), STRIDE);
        }
        for pc in 0..if two { 2 } else { 1 } {
            let j0 = (c0 + pc) * T;
            let m = mask(s.val_dim.saturating_sub(j0).min(T));
            for (rr, &inv) in inv.iter().enumerate().take(r) {
                // SAFETY: row rr of finished tile pc; output row rr's columns j0.. <
                // val_dim (masked) are in bounds (the contract).
                unsafe {
                    let acc = _mm512_loadu_ps(c.add(pc * TILE_F32 + rr * T));
                    let y = activate(args.act, _mm512_mul_ps(acc, _mm512_set1_ps(inv)));
                    _mm512_mask_storeu_ps(out.add(rr * row_width + j0), m, y);
                }
            }
        }
        c0 += 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_16x16_transposes() {
        if !Isa::Avx512.is_supported() {
            return;
        }
        let m: Vec<i32> = (0..256).collect();
        let rows: [__m512i; T] =
            // SAFETY: AVX-512F is supported (checked above); each load reads 16 i32.
            core::array::from_fn(|r| unsafe { _mm512_loadu_si512(m[r * 16..].as_ptr().cast()) });
        let t = transpose_16x16(&rows);
        for (r, row) in t.iter().enumerate() {
            let mut got = [0i32; 16];
            // SAFETY: AVX-512F is supported; the store writes 16 i32.
            unsafe { _mm512_storeu_si512(got.as_mut_ptr().cast(), *row) };
            let want: Vec<i32> = (0..16).map(|c| m[c * 16 + r]).collect();
            assert_eq!(got.to_vec(), want, "row {r}");
        }
    }
}
