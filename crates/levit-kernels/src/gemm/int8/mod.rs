//! GEMM kernels for int8 weights ([`crate::int8`] has the scheme and the layout).
//!
//! Four kernels, one file each, all driven by the blocking loop [`drive`]:
//! - `amx.rs`: AMX `tdpbusd` tiles (32 rows x 2 panels);
//! - `avx512vnni.rs`: AVX512_VNNI `vpdpbusd`, 12 rows x 2 panels of zmm accumulators;
//! - `avx2.rs`: AVX2 without VNNI: `vpmaddubsw` on `|w|` and `sign(q, w)` (products of
//!   two 7-bit magnitudes, so the i16 pair sums cannot saturate: `2 * 127² < 2¹⁵`),
//!   then `vpmaddwd` by ones into i32;
//! - `portable.rs`: scalar integer loops.
//!
//! # The loop
//! A row tile of up to `mr` rows is quantized once (its per-row scales first, from a
//! pass over the whole row; then K in chunks of [`KC`] values) into a stack buffer,
//! row-major with a row stride of the chunk's padded length + 64 bytes (so that 32
//! rows do not all map to one L1 set); the tile kernels then sweep the panels in
//! groups of [`GROUP`] panels, accumulating i32 sums into a stack buffer of `mr x
//! GROUP*16`. When a group's last K chunk is done, the ISA's store pass applies
//! compensation, scales, bias and the epilogue and writes C with lane masks (columns
//! past `n`, rows outside the block are never written).
//!
//! # Determinism
//! A row's quantization depends only on the row; the integer sums are exact, whatever
//! the tile, chunk or thread computes them; and every store pass evaluates
//! `((acc - comp) as f32 * sa) * sw + bias` with the same IEEE operations. So every
//! int8 kernel gives the bits of [`crate::gemm::reference::gemm_int8`] (SiLU aside:
//! each vector family has its own `exp`, as in the f32 kernels).

#[cfg(target_arch = "x86_64")]
pub(crate) mod amx;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512vnni;
pub(crate) mod portable;

use core::mem::MaybeUninit;
use std::ops::Range;

use super::{Epilogue, GemmArgs};
use crate::int8::{scale_of, INT8_K_BLOCK};
use crate::NR;

/// Tallest row tile of any int8 kernel (AMX: two 16-row A tiles).
pub(crate) const MAX_MR: usize = 32;
/// K values of A quantized at once (multiple of [`INT8_K_BLOCK`]); longer rows are
/// done in chunks, their sums carried in the accumulator buffer.
pub(crate) const KC: usize = 2048;
/// Panels whose sums one accumulator buffer holds.
pub(crate) const GROUP: usize = 8;
/// Row stride (in i32) of the accumulator buffer.
const ACC_STRIDE: usize = GROUP * NR;

/// Stack scratch of one block call (about 84 KiB; worker threads have 2 MiB stacks).
#[repr(C, align(64))]
pub(crate) struct Scratch {
    a: [MaybeUninit<u8>; MAX_MR * (KC + INT8_K_BLOCK)],
    acc: [MaybeUninit<i32>; MAX_MR * ACC_STRIDE],
}

impl Scratch {
    pub(crate) fn uninit() -> MaybeUninit<Scratch> {
        MaybeUninit::uninit()
    }
}

/// One tile-kernel call: rows `0..h` of the quantized A times panels `0..np`, for one
/// K chunk.
///
/// Contract: `a + r*lda` holds `kq * 4` readable bytes for `r < h.next_multiple_of(
/// row_align)`; `b + p*panel_len` holds `kq * 64` readable bytes for `p < np`; `acc +
/// r*ldacc` holds `np * 16` i32 for the same rows, readable if not `first`, and
/// writable; `kq` is a multiple of 16 (whole 64-deep blocks), `used <= kq`.
pub(crate) struct Int8Tile {
    pub(crate) a: *const u8,
    pub(crate) lda: usize,
    /// 4-byte K groups of the chunk, padded to whole 64-deep blocks (AMX runs them all).
    pub(crate) kq: usize,
    /// The groups holding K values (the rest are zero; the vector kernels skip them).
    pub(crate) used: usize,
    pub(crate) b: *const i8,
    pub(crate) panel_len: usize,
    pub(crate) acc: *mut i32,
    pub(crate) ldacc: usize,
    pub(crate) first: bool,
    pub(crate) h: usize,
    pub(crate) np: usize,
}

/// One store pass: `h` rows x `cols` columns of finished sums.
///
/// Contract: `acc + r*ldacc` holds `cols` i32 for `r < h`; `sa` has `h` floats; `sw`,
/// `comp` and `bias` have `cols` values; `c + r*ldc` has `cols` floats for `r < h`,
/// which nothing else accesses meanwhile.
pub(crate) struct Int8Out {
    pub(crate) acc: *const i32,
    pub(crate) ldacc: usize,
    pub(crate) h: usize,
    pub(crate) cols: usize,
    pub(crate) sa: *const f32,
    pub(crate) sw: *const f32,
    /// Subtract `comp` first (the kernel summed `q + 128`).
    pub(crate) subtract: bool,
    pub(crate) comp: *const i32,
    pub(crate) bias: *const f32,
    pub(crate) c: *mut f32,
    pub(crate) ldc: usize,
    pub(crate) epilogue: Epilogue,
}

/// An int8 kernel's pieces, run by [`drive`].
pub(crate) struct Int8Tiles {
    /// Rows per row tile (`<= MAX_MR`).
    pub(crate) mr: usize,
    /// Panels per tile-kernel call.
    pub(crate) np: usize,
    /// A rows are padded (with zeros) to a multiple of this (AMX: 16-row tiles).
    pub(crate) row_align: usize,
    /// A holds `q` as i8 bytes (`false`: `q + 128` as u8, and `comp` is subtracted).
    pub(crate) signed_a: bool,
    /// `max bits(x) & 0x7fff_ffff` over `len > 0` floats at `src` ([`crate::int8::max_abs`]).
    pub(crate) max_bits: unsafe fn(src: *const f32, len: usize) -> u32,
    /// Writes `padded` bytes at `dst`: `quantize(src[k], inv) as u8 ^ flip` for `k <
    /// len`, then `flip` (the zero); reads only `src[..len]`.
    pub(crate) quantize:
        unsafe fn(src: *const f32, len: usize, padded: usize, inv: f32, flip: u8, dst: *mut u8),
    /// The tile kernel ([`Int8Tile`]'s contract, `h <= mr`, `np <= self.np`).
    pub(crate) run: unsafe fn(&Int8Tile),
    /// The store pass ([`Int8Out`]'s contract, `cols <= GROUP * 16`).
    pub(crate) store: unsafe fn(&Int8Out),
}

/// The blocking loop of the int8 kernels (module doc).
///
/// # Safety
/// As [`crate::gemm::kernel::BlockFn`] for int8 weights (the ranges non-empty); the
/// CPU runs `tiles`' functions (and, for AMX, the tiles are configured); `scratch` is
/// writable and used by nobody else.
pub(crate) unsafe fn drive(
    tiles: &Int8Tiles,
    args: &GemmArgs,
    c: *mut f32,
    rows: Range<usize>,
    panels: Range<usize>,
    scratch: *mut Scratch,
) {
    debug_assert!(tiles.mr <= MAX_MR && tiles.mr.is_multiple_of(tiles.row_align));
    let w = args
        .b
        .int8()
        .expect("int8 kernel given weights of another precision");
    let GemmArgs { k, n, ldc, .. } = *args;
    let panel_len = crate::int8::panel_len(k);
    let chunks = k.div_ceil(KC).max(1);
    let flip = if tiles.signed_a { 0 } else { 0x80 };
    // SAFETY: `scratch` is valid (caller); raw field pointers create no references to
    // uninitialised memory.
    let (abuf, accbuf) = unsafe {
        (
            (&raw mut (*scratch).a).cast::<u8>(),
            (&raw mut (*scratch).acc).cast::<i32>(),
        )
    };
    let mut sa = [0f32; MAX_MR];
    let mut inv = [0f32; MAX_MR];
    let mut i = rows.start;
    while i < rows.end {
        let h = tiles.mr.min(rows.end - i);
        let hp = h.next_multiple_of(tiles.row_align);
        // Row r's A: `check` proved rows < m hold k floats (only asked for if k > 0).
        // SAFETY: as just said, i + r < rows.end <= m.
        let row = |r: usize| unsafe { args.a.as_ptr().add(args.a_row_offset(i + r)) };
        for r in 0..h {
            let bits = if k > 0 {
                // SAFETY: row i + r holds k > 0 floats.
                unsafe { (tiles.max_bits)(row(r), k) }
            } else {
                0
            };
            (sa[r], inv[r]) = scale_of(f32::from_bits(bits));
        }
        let mut quantized = usize::MAX;
        let mut g0 = panels.start;
        while g0 < panels.end {
            let g_end = (g0 + GROUP).min(panels.end);
            for ch in 0..chunks {
                let k0 = ch * KC;
                let len = KC.min(k - k0.min(k));
                let padded = len.next_multiple_of(INT8_K_BLOCK);
                let lda = padded + INT8_K_BLOCK;
                if quantized != ch {
                    for (r, &inv) in inv.iter().enumerate().take(hp) {
                        // SAFETY: the buffer holds MAX_MR >= hp rows of KC + 64 >= lda
                        // bytes; row r < h holds k >= k0 + len floats (asked for only
                        // when len > 0, i.e. k > 0).
                        unsafe {
                            let dst = abuf.add(r * lda);
                            if r < h && len > 0 {
                                (tiles.quantize)(row(r).add(k0), len, padded, inv, flip, dst);
                            } else {
                                dst.write_bytes(flip, padded);
                            }
                        }
                    }
                    quantized = ch;
                }
                let mut p = g0;
                while p < g_end {
                    let np = tiles.np.min(g_end - p);
                    // SAFETY: panel p < panels(n) exists and holds padded_k(k)/4 >=
                    // (k0 + padded)/4 rows of 64 bytes; the accumulator columns of
                    // panels p - g0 .. +np < GROUP are inside the buffer.
                    let tile = unsafe {
                        Int8Tile {
                            a: abuf,
                            lda,
                            kq: padded / 4,
                            used: len.div_ceil(4),
                            b: w.data.as_ptr().add(p * panel_len + k0 * NR),
                            panel_len,
                            acc: accbuf.add((p - g0) * NR),
                            ldacc: ACC_STRIDE,
                            first: ch == 0,
                            h,
                            np,
                        }
                    };
                    // SAFETY: the tile meets `Int8Tile`'s contract (above; the A rows
                    // up to hp were written).
                    unsafe { (tiles.run)(&tile) };
                    p += np;
                }
            }
            let cols = n.min(g_end * NR) - g0 * NR;
            // SAFETY: the sums of rows < h, columns < cols were written by the tiles;
            // `check` proved scale, comp and bias hold n values and C the block.
            unsafe {
                (tiles.store)(&Int8Out {
                    acc: accbuf,
                    ldacc: ACC_STRIDE,
                    h,
                    cols,
                    sa: sa.as_ptr(),
                    sw: w.scale.as_ptr().add(g0 * NR),
                    subtract: !tiles.signed_a,
                    comp: w.comp.as_ptr().add(g0 * NR),
                    bias: args.bias.as_ptr().add(g0 * NR),
                    c: c.add(i * ldc + g0 * NR),
                    ldc,
                    epilogue: args.epilogue,
                })
            };
            g0 = g_end;
        }
        i += h;
    }
}

/// One output of the store pass, as every ISA computes it (the scalar form).
#[inline]
pub(crate) fn output(acc: i32, sa: f32, sw: f32, bias: f32, epilogue: Epilogue, c: f32) -> f32 {
    let y = (acc as f32 * sa) * sw + bias;
    match epilogue {
        Epilogue::BiasAct(act) => act.apply(y),
        Epilogue::BiasResidual => c + y,
    }
}

/// Defines a kernel file's registry constructor `$ctor()` (name `$name`, level
/// `Isa::$isa`, available where `$supported` holds) for the pieces `$tiles`.
macro_rules! int8_kernel {
    ($ctor:ident, $name:literal, $isa:ident, $supported:expr, $tiles:expr) => {
        /// The kernel, where this CPU runs it.
        pub(crate) fn $ctor() -> Option<$crate::gemm::GemmKernel> {
            ($supported).then_some($crate::gemm::GemmKernel {
                name: $name,
                precision: $crate::Precision::Int8,
                isa: $crate::Isa::$isa,
                split: $crate::gemm::Split {
                    rows: $tiles.mr,
                    panels: $tiles.np,
                    row_step: 1,
                },
                block: int8_block,
            })
        }

        /// # Safety
        /// As [`BlockFn`]($crate::gemm::kernel::BlockFn).
        unsafe fn int8_block(
            args: &$crate::gemm::GemmArgs,
            c: *mut f32,
            _c_len: usize,
            rows: std::ops::Range<usize>,
            panels: std::ops::Range<usize>,
        ) {
            let mut scratch = $crate::gemm::int8::Scratch::uninit();
            // SAFETY: forwarded from `BlockFn`'s contract; the kernel was constructed
            // only where its instructions run; `scratch` is this call's.
            unsafe {
                $crate::gemm::int8::drive(&$tiles, args, c, rows, panels, scratch.as_mut_ptr())
            }
        }
    };
}
pub(crate) use int8_kernel;
