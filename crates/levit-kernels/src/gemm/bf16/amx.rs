//! The AMX bf16 GEMM kernel `amx_bf16_32x32`: `tdpbf16ps` on Intel AMX tiles.
//!
//! # Tiles
//! All eight tile registers are configured as 16 rows x 64 bytes. A block of up to 32
//! rows x 2 panels (32 columns) keeps four f32 accumulator tiles `tmm0..tmm3`
//! (`C[ia][ip]` is `tmm(2*ia + ip)`), two A tiles `tmm4, tmm5` (16 rows x 32 bf16 of K
//! each) and two B tiles `tmm6, tmm7`. One 32-deep K block is 2 A loads, 2 B loads and
//! 4 `tdpbf16ps`: every loaded tile feeds two products, and four independent
//! accumulators cover the latency of the tile multiply. A B tile is 16 K-pair rows of
//! one bf16 panel (`crate::bf16`), 64 contiguous bytes per row, so it loads straight
//! from the packed weights with a 64-byte stride. Fewer rows (the last row tile) use
//! one A tile, an odd last panel one B tile; columns past `n` are computed on the
//! zero padding of B and never stored.
//!
//! # A conversion
//! A is f32 in memory (possibly gathered rows with a stride). Each row tile's rows
//! are rounded to bf16 (to nearest even, `vcvtne2ps2bf16`, exactly as
//! [`crate::bf16::to_bf16`]), zero-padded past K and past the last row, into a stack
//! buffer laid out as consecutive AMX A tiles: K block `kb`, tile row `r` holds 32
//! bf16 at `(kb * rows + r) * 32`, so every A tile is 1 KiB contiguous. This happens
//! once per row tile, then the row tile sweeps all of its panels. K longer than the
//! buffer ([`KC`] values) is cut into chunks: the accumulators of a group of
//! [`GROUP`] panels are parked in a stack buffer between chunks (an exact store and
//! reload), so the bits do not depend on chunking.
//!
//! # Epilogue
//! Finished accumulator tiles are stored (`tilestored`) to a stack buffer; bias,
//! activation or residual are applied with AVX-512 and stored with lane masks, so
//! columns past `n` and rows outside the block are never written. HardSwish divides
//! by 6 without the divider (`vecmath::avx512::div6`, bit-identical to the division): the divider
//! shares a port with the tile multiplies, and one division per output vector cost
//! about as much as the multiplies at K = 384.
//!
//! # Where the time goes
//! Measured on this kernel's host (Xeon with AMX, 2 cores): register-only
//! `tdpbf16ps` runs at about 1.4 TMAC/s per core, and stays there with all tiles
//! loaded from L1; with the B tiles from L2 a 2x2 tile reaches about 0.55-0.75
//! TMAC/s. So the kernel is bound by feeding B: a row tile sweeps all panels with
//! its A in L1 (converted once), B is prefetched into L1 two K blocks ahead where it
//! streams (few rows; [`prefetch_b`]), and the row tiles are as tall as the tiles
//! allow (32 rows: each B tile feeds two multiplies). With M <= 16 (one A tile) the
//! weights stream once from L2, L3 or memory and set the speed.
//!
//! Scratch lives on the stack: 64 KiB of A, 4 KiB of finished accumulators, 16 KiB
//! of parked ones (about 84 KiB; worker threads have 2 MiB stacks). Nothing is
//! allocated on the heap.
//!
//! # Determinism
//! Every output element is `acc = 0; acc = dp(acc, A[kb], B[kb])` for the 32-deep
//! blocks `kb = 0, 1, ..` in order, the same `tdpbf16ps` sequence whichever tile
//! (and whichever row or panel range of a threaded call) computes it; a product
//! element depends only on its own row of A and column of B. So results are
//! bit-identical however the work is split. Against the scalar reference (A rounded to
//! bf16, f32 sums in order) they differ by the summation order inside the tile unit.
//!
//! # Why inline assembly
//! Rust's AMX intrinsics are unstable, so the six tile instructions (`ldtilecfg`,
//! `tilezero`, `tileloadd`, `tdpbf16ps`, `tilestored`, `tilerelease`) are written with
//! `asm!`. The compiler never allocates tile registers, so the asm blocks need no
//! tile operands or clobbers; they are all `volatile` (not `pure`), so they stay in
//! program order. Tile state is per thread: each block call loads the configuration
//! first and releases the tiles at its end (about 0.1 us, against 10-300 us calls).

use core::arch::asm;
use core::arch::x86_64::*;
use core::mem::MaybeUninit;
use std::ops::Range;

use crate::bf16::padded_k;
use crate::gemm::kernel::{GemmKernel, Split};
use crate::gemm::{Epilogue, GemmArgs};
use crate::vecmath::avx512::{activate, mask};
use crate::{Isa, Precision, NR};

/// Rows of the tallest tile (two A tiles).
const MR: usize = 32;
/// Panels of the widest tile (two B tiles).
const NP: usize = 2;
/// K values per 32-deep block (one tile multiply).
const KB: usize = 32;
/// `u16`s of one bf16 tile (16 rows x 64 bytes), A or B.
const TILE_U16: usize = 16 * 32;
/// `f32`s of one accumulator tile (16 x 16).
const TILE_F32: usize = 16 * 16;
/// Tile row stride in bytes of every tile load and store.
const STRIDE: usize = 64;
/// K values of A converted at once (the A buffer: `MR * KC` bf16 = 64 KiB).
const KC: usize = 1024;
/// Panels whose accumulators are parked between K chunks when K exceeds [`KC`].
const GROUP: usize = 8;

/// The kernel, where this CPU runs it.
pub(crate) fn bf16_kernel() -> Option<GemmKernel> {
    Isa::Amx.is_supported().then_some(GemmKernel {
        name: "amx_bf16_32x32",
        precision: Precision::Bf16,
        isa: Isa::Amx,
        split: Split {
            rows: MR,
            panels: NP,
            row_step: 16,
        },
        block: amx_block,
    })
}

/// Stack scratch of one block call, 64-byte aligned for the tile loads and stores.
#[repr(C, align(64))]
struct Scratch {
    /// A of one row tile and K chunk, as consecutive A tiles (module doc).
    a: [MaybeUninit<u16>; MR * KC],
    /// Finished accumulators of one tile: tile `t` at `t * TILE_F32`.
    c: [MaybeUninit<f32>; 4 * TILE_F32],
    /// Accumulators parked between K chunks, `4 * TILE_F32` per panel pair of a group.
    part: [MaybeUninit<f32>; GROUP / NP * 4 * TILE_F32],
}

/// # Safety
/// As [`crate::gemm::kernel::BlockFn`].
unsafe fn amx_block(
    args: &GemmArgs,
    c: *mut f32,
    c_len: usize,
    rows: Range<usize>,
    panels: Range<usize>,
) {
    let b = args.b.bf16().expect("bf16 kernel given other weights");
    debug_assert!(b.len() >= crate::bf16::packed_len(args.k, args.n));
    debug_assert!(rows.end <= args.m && panels.end <= crate::panels(args.n));
    debug_assert!((rows.end - 1) * args.ldc + args.n <= c_len);
    let _ = c_len;
    let mut scratch = MaybeUninit::<Scratch>::uninit();
    // SAFETY: `BlockFn`'s contract: `args` passed `check`, so B holds panels(n) bf16
    // panels, bias n floats, every A row k floats, C every element of the block; the
    // ranges are non-empty and in bounds; the kernel exists only where AMX (and so
    // AVX512_BF16) runs and the OS granted the tile state. `scratch` is this call's.
    // `ldtilecfg` reads the 64 bytes of the static config (valid, palette 1) and
    // resets this thread's tiles; `tilerelease` touches no memory. Nothing else on this
    // thread uses tiles meanwhile (block calls do not nest), so `block` finds them
    // configured.
    unsafe {
        asm!("ldtilecfg [{}]", in(reg) crate::amx_os::TILES_16X64.0.as_ptr(), options(nostack, readonly, preserves_flags));
        block(args, b.as_ptr(), c, rows, panels, scratch.as_mut_ptr());
        asm!("tilerelease", options(nostack, nomem, preserves_flags));
    }
}

/// One tile's work (up to 2 A tiles x 2 panels) for one K chunk, as [`block`] runs it.
struct Job {
    /// The converted A chunk (module doc), `na` tiles per K block.
    a: *const u16,
    /// The first panel's first K block of this chunk in the packed B.
    b: *const u16,
    /// `u16`s per panel.
    panel_len: usize,
    /// K blocks in this chunk.
    nkb: usize,
    /// Whether the accumulators start at zero (first chunk) or are reloaded.
    first: bool,
    /// Where the accumulators go after this chunk: `Scratch::c` for the last chunk,
    /// a parking slot otherwise (and where they are reloaded from if not `first`).
    out: *mut f32,
    park: *mut f32,
    /// Whether to prefetch B into L1 [`PF_BLOCKS`] K blocks ahead, continuing into
    /// the next job's panels (starting at `next`) past this job's last block.
    prefetch: bool,
    next: *const u16,
}

/// How far ahead (in K blocks, 1 KiB per panel) B is prefetched into L1.
const PF_BLOCKS: usize = 2;
/// Calls of at most this many rows prefetch B (see [`prefetch_b`]).
const PF_MAX_ROWS: usize = 64;

/// Whether a row tile of `h` rows in a call of `rows` rows prefetches B into L1.
/// Prefetched B tiles hit L1 instead of L2 (+10-15 % where B streams: one or a few
/// row tiles, whose B comes from L3 or memory); but with many row tiles B is in L2
/// anyway and the prefetched lines evict the row tile's A from L1 (-35 % at M = 196,
/// K = 384-512, where A just fits), so tall calls prefetch only for short row tiles.
fn prefetch_b(rows: usize, h: usize) -> bool {
    rows <= PF_MAX_ROWS || h <= 16
}

/// `tileloadd tmm$t, [$p + 64*row]`.
macro_rules! load {
    ($t:literal, $p:expr) => {
        asm!(concat!("tileloadd tmm", $t, ", [{p} + {s}*1]"), p = in(reg) $p, s = in(reg) STRIDE,
            options(nostack, readonly, preserves_flags))
    };
}
/// `tilestored [$p + 64*row], tmm$t`.
macro_rules! store {
    ($t:literal, $p:expr) => {
        asm!(concat!("tilestored [{p} + {s}*1], tmm", $t), p = in(reg) $p, s = in(reg) STRIDE,
            options(nostack, preserves_flags))
    };
}

/// Generates the tile kernel of `na` A tiles x `np` B tiles: accumulators `$c`
/// (each with its A and B tile), A tiles `$a`, B tiles `$b`.
macro_rules! tile_fn {
    ($name:ident, [$($a:literal)+], [$($b:literal)+], [$(($c:literal, $ca:literal, $cb:literal))+]) => {
        /// # Safety
        /// The tiles are configured (16 x 64 bytes); `j.a` holds `j.nkb` K blocks of
        /// this tile's A tiles, `j.b` `np` panels of `j.nkb` K blocks `panel_len`
        /// apart; `j.out` (and `j.park` unless `first`) hold 4 accumulator tiles.
        #[inline(always)]
        unsafe fn $name(j: &Job) {
            const NA: usize = [$($a),+].len();
            // SAFETY: every tile load and store address below is inside the buffers
            // the contract names: accumulator tile t at t * TILE_F32 floats, A tile
            // `ia` of block kb at (kb * NA + ia) * TILE_U16, B tile of panel ip, block
            // kb at ip * panel_len + kb * TILE_U16, each 16 rows of 64 bytes. The
            // prefetches may point anywhere (past the last panel): a prefetch never
            // faults and reads nothing into the program, and its addresses are
            // computed with wrapping arithmetic.
            unsafe {
                if j.first {
                    $( asm!(concat!("tilezero tmm", $c), options(nostack, nomem, preserves_flags)); )+
                } else {
                    $( load!($c, j.park.add($c * TILE_F32)); )+
                }
                for kb in 0..j.nkb {
                    if j.prefetch {
                        let kp = kb + PF_BLOCKS;
                        let (base, kp) = if kp < j.nkb { (j.b, kp) } else { (j.next, kp - j.nkb) };
                        $(
                            let tile = base.wrapping_add(($b - 6) * j.panel_len + kp * TILE_U16);
                            for row in 0..16 {
                                _mm_prefetch::<_MM_HINT_T0>(tile.wrapping_add(row * 32).cast());
                            }
                        )+
                    }
                    $( load!($a, j.a.add((kb * NA + ($a - 4)) * TILE_U16)); )+
                    $( load!($b, j.b.add(($b - 6) * j.panel_len + kb * TILE_U16)); )+
                    $( asm!(concat!("tdpbf16ps tmm", $c, ", tmm", $ca, ", tmm", $cb),
                        options(nostack, nomem, preserves_flags)); )+
                }
                $( store!($c, j.out.add($c * TILE_F32)); )+
            }
        }
    };
}

tile_fn!(tile_2x2, [4 5], [6 7], [(0, 4, 6) (1, 4, 7) (2, 5, 6) (3, 5, 7)]);
tile_fn!(tile_2x1, [4 5], [6], [(0, 4, 6) (2, 5, 6)]);
tile_fn!(tile_1x2, [4], [6 7], [(0, 4, 6) (1, 4, 7)]);
tile_fn!(tile_1x1, [4], [6], [(0, 4, 6)]);

/// The blocking loop (module doc).
///
/// # Safety
/// As [`amx_block`], with the tiles configured; `b` is `args.b`'s bf16 slice and
/// `scratch` writable.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16,fma")]
unsafe fn block(
    args: &GemmArgs,
    b: *const u16,
    c: *mut f32,
    rows: Range<usize>,
    panels: Range<usize>,
    scratch: *mut Scratch,
) {
    let GemmArgs { k, n, ldc, .. } = *args;
    let nkb = padded_k(k) / KB;
    let chunk_kb = KC / KB;
    let chunks = nkb.div_ceil(chunk_kb).max(1);
    let panel_len = crate::bf16::panel_len(k);
    // SAFETY: `scratch` is valid (caller); raw field pointers create no references to
    // uninitialised memory.
    let (abuf, cbuf, park) = unsafe {
        (
            (&raw mut (*scratch).a).cast::<u16>(),
            (&raw mut (*scratch).c).cast::<f32>(),
            (&raw mut (*scratch).part).cast::<f32>(),
        )
    };
    // Without chunking one group holds every panel, so A is converted once per row
    // tile.
    let group = if chunks == 1 { panels.len() } else { GROUP };
    let mut i = rows.start;
    while i < rows.end {
        let h = MR.min(rows.end - i);
        let na = if h > 16 { 2 } else { 1 };
        let prefetch = prefetch_b(rows.len(), h);
        let mut g0 = panels.start;
        while g0 < panels.end {
            let g_end = (g0 + group).min(panels.end);
            for ch in 0..chunks {
                let kb0 = ch * chunk_kb;
                let ckb = chunk_kb.min(nkb - kb0.min(nkb));
                let last = ch + 1 == chunks;
                // SAFETY: rows i..i+h are in the block and passed `check`; the
                // buffer holds MR * KC >= na * 16 * ckb * KB values.
                unsafe { convert(args, i, h, na, kb0, ckb, abuf) };
                let mut p = g0;
                while p < g_end {
                    let np = NP.min(g_end - p);
                    // The parking slot of this panel pair: with chunks the group has
                    // GROUP panels, so slot < GROUP / NP and it lies inside `part`
                    // (without chunks it is never used).
                    let parked = park.wrapping_add((p - g0) / NP * 4 * TILE_F32);
                    let job = Job {
                        a: abuf,
                        // SAFETY: panel p < panels(n) exists and holds nkb >= kb0 + ckb
                        // blocks.
                        b: unsafe { b.add(p * panel_len + kb0 * TILE_U16) },
                        panel_len,
                        nkb: ckb,
                        first: ch == 0,
                        park: parked,
                        out: if last { cbuf } else { parked },
                        prefetch,
                        next: b.wrapping_add((p + np) * panel_len + kb0 * TILE_U16),
                    };
                    // SAFETY: the job meets the tile contract (above); tiles are
                    // configured by the caller.
                    unsafe {
                        match (na, np) {
                            (2, 2) => tile_2x2(&job),
                            (2, _) => tile_2x1(&job),
                            (_, 2) => tile_1x2(&job),
                            _ => tile_1x1(&job),
                        }
                    }
                    if last {
                        let cols = n.min((p + np) * NR) - p * NR;
                        // SAFETY: rows i..i+h and columns p*NR..p*NR+cols < n are in
                        // the block of C; bias holds n floats; `cbuf` the finished
                        // tiles.
                        unsafe {
                            epilogue(
                                cbuf,
                                h,
                                np,
                                cols,
                                args.bias.as_ptr().add(p * NR),
                                c.add(i * ldc + p * NR),
                                ldc,
                                args.epilogue,
                            )
                        };
                    }
                    p += np;
                }
            }
            g0 = g_end;
        }
        i += h;
    }
}

/// Rounds rows `i..i+h` of A, K blocks `kb0..kb0+nkb`, to bf16 in `dst` as `na` A
/// tiles per block (rows `h..na*16` and K past `k` zero).
///
/// # Safety
/// Rows `i..i+h` are rows of `args` that passed `check`; `h <= na * 16`; `dst` holds
/// `nkb * na * TILE_U16` values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn convert(
    args: &GemmArgs,
    i: usize,
    h: usize,
    na: usize,
    kb0: usize,
    nkb: usize,
    dst: *mut u16,
) {
    let k = args.k;
    let tile_rows = na * 16;
    for r in 0..tile_rows {
        let src = (r < h).then(|| {
            // SAFETY: row i + r < m passed `check` (its k values are in `args.a`).
            unsafe { args.a.as_ptr().add(args.a_row_offset(i + r)) }
        });
        for kb in 0..nkb {
            let k0 = (kb0 + kb) * KB;
            let v = match src {
                // SAFETY: the loads touch only values k0.. < k of the row; masked-off
                // lanes are not accessed.
                Some(src) => unsafe {
                    let (lo, hi) = if k0 + KB <= k {
                        (
                            _mm512_loadu_ps(src.add(k0)),
                            _mm512_loadu_ps(src.add(k0 + 16)),
                        )
                    } else {
                        let left = k - k0.min(k);
                        (
                            _mm512_maskz_loadu_ps(mask(left.min(16)), src.wrapping_add(k0)),
                            _mm512_maskz_loadu_ps(
                                mask(left.saturating_sub(16)),
                                src.wrapping_add(k0 + 16),
                            ),
                        )
                    };
                    core::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo))
                },
                None => _mm512_setzero_si512(),
            };
            // SAFETY: (kb * tile_rows + r) * 32 + 32 <= nkb * na * TILE_U16.
            unsafe { _mm512_storeu_si512(dst.add((kb * tile_rows + r) * KB).cast(), v) };
        }
    }
}

/// `C = epilogue(acc + bias)` for `h` rows x `cols` columns of a finished tile.
///
/// # Safety
/// `acc` holds the tile's accumulators (tile `2*ia + ip` for rows `16*ia..`, panel
/// `ip`); `bias` has `cols` floats; `c + r*ldc` has `cols` floats for `r < h`, which
/// nothing else accesses meanwhile; `(np-1)*16 < cols <= np*16`, `h <= 32`.
#[target_feature(enable = "avx512f,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn epilogue(
    acc: *const f32,
    h: usize,
    np: usize,
    cols: usize,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    epilogue: Epilogue,
) {
    let mut masks = [0 as __mmask16; NP];
    let mut bv = [_mm512_setzero_ps(); NP];
    for ip in 0..np {
        masks[ip] = mask(cols.saturating_sub(ip * NR).min(NR));
        // SAFETY: the mask covers only columns < cols, which `bias` holds.
        bv[ip] = unsafe { _mm512_maskz_loadu_ps(masks[ip], bias.wrapping_add(ip * NR)) };
    }
    for r in 0..h {
        for ip in 0..np {
            let t = 2 * (r / 16) + ip;
            // SAFETY: row r % 16 of accumulator tile t; row r < h of C with the
            // masked columns < cols (contract); masked-off lanes are not accessed.
            unsafe {
                let y = _mm512_add_ps(
                    _mm512_loadu_ps(acc.add(t * TILE_F32 + (r % 16) * NR)),
                    bv[ip],
                );
                let dst = c.wrapping_add(r * ldc + ip * NR);
                let y = match epilogue {
                    Epilogue::BiasAct(act) => activate(act, y),
                    Epilogue::BiasResidual => {
                        _mm512_add_ps(_mm512_maskz_loadu_ps(masks[ip], dst), y)
                    }
                };
                _mm512_mask_storeu_ps(dst, masks[ip], y);
            }
        }
    }
}
