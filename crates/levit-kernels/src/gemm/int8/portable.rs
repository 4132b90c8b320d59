//! The portable int8 GEMM kernel `portable_int8_12x32`: plain integer loops on every
//! target. A holds the signed `q` (no zero point, so no compensation); the products of
//! a 64-byte weight row are formed elementwise in i16 and summed in 64 i32 lanes,
//! which LLVM vectorises with the baseline SIMD of any target.

use super::{int8_kernel, output, Int8Out, Int8Tile, Int8Tiles};
use crate::int8::quantize;
use crate::NR;

/// The kernel's pieces.
const TILES: Int8Tiles = Int8Tiles {
    mr: 12,
    np: 2,
    row_align: 1,
    signed_a: true,
    max_bits,
    quantize: quantize_row,
    run,
    store,
};

int8_kernel!(int8_kernel, "portable_int8_12x32", Portable, true, TILES);

/// # Safety
/// `src` holds `len` floats.
unsafe fn max_bits(src: *const f32, len: usize) -> u32 {
    // SAFETY: the caller guarantees `len` readable floats.
    let x = unsafe { core::slice::from_raw_parts(src, len) };
    x.iter()
        .map(|v| v.to_bits() & 0x7fff_ffff)
        .max()
        .unwrap_or(0)
}

/// # Safety
/// `src` holds `len` floats, `dst` `padded >= len` writable bytes.
unsafe fn quantize_row(
    src: *const f32,
    len: usize,
    padded: usize,
    inv: f32,
    flip: u8,
    dst: *mut u8,
) {
    // SAFETY: the caller guarantees both spans; they do not overlap (f32 activations
    // and the kernel's own stack buffer).
    let (x, out) = unsafe {
        (
            core::slice::from_raw_parts(src, len),
            core::slice::from_raw_parts_mut(dst, padded),
        )
    };
    let (head, tail) = out.split_at_mut(len);
    for (o, &v) in head.iter_mut().zip(x) {
        *o = quantize(v, inv) as u8 ^ flip;
    }
    tail.fill(flip);
}

/// # Safety
/// [`Int8Tile`]'s contract.
unsafe fn run(t: &Int8Tile) {
    for r in 0..t.h {
        // SAFETY: row r < h of A holds kq * 4 >= used * 4 bytes (contract).
        let a = unsafe { core::slice::from_raw_parts(t.a.add(r * t.lda).cast::<i8>(), t.used * 4) };
        for p in 0..t.np {
            // SAFETY: panel p < np holds kq rows of 64 bytes; the accumulator row r
            // holds np * 16 i32, read only when not `first` (contract).
            let (b, acc) = unsafe {
                (
                    core::slice::from_raw_parts(t.b.add(p * t.panel_len), t.used * 4 * NR),
                    core::slice::from_raw_parts_mut(t.acc.add(r * t.ldacc + p * NR), NR),
                )
            };
            // One i32 lane per weight byte of a 64-byte row (column j, K offset t at
            // lane 4j + t): elementwise i16 products (|q·w| <= 127² fits) and i32 sums
            // vectorise on every target; the 4 lanes of a column are summed at the end.
            let mut lanes = [0i32; 4 * NR];
            for (quad, row) in a.chunks_exact(4).zip(b.chunks_exact(4 * NR)) {
                // The quad repeated for each column, built before the product loop
                // so that loop is purely elementwise.
                // (Copies of one 8-byte quad: 3x faster than indexing `quad[l % 4]`.)
                let quad: [i16; 4] = core::array::from_fn(|t| i16::from(quad[t]));
                let mut qv = [0i16; 4 * NR];
                for c in qv.chunks_exact_mut(4) {
                    c.copy_from_slice(&quad);
                }
                for ((lane, &w), &q) in lanes.iter_mut().zip(row).zip(&qv) {
                    *lane = lane.wrapping_add(i32::from(q * i16::from(w)));
                }
            }
            let mut sum = [0i32; NR];
            if !t.first {
                sum.copy_from_slice(acc);
            }
            for (s, l) in sum.iter_mut().zip(lanes.chunks_exact(4)) {
                *s = s.wrapping_add(
                    l[0].wrapping_add(l[1])
                        .wrapping_add(l[2])
                        .wrapping_add(l[3]),
                );
            }
            acc.copy_from_slice(&sum);
        }
    }
}

/// # Safety
/// [`Int8Out`]'s contract.
unsafe fn store(o: &Int8Out) {
    for r in 0..o.h {
        for j in 0..o.cols {
            // SAFETY: row r < h, column j < cols of every operand (contract).
            unsafe {
                let mut acc = *o.acc.add(r * o.ldacc + j);
                if o.subtract {
                    acc = acc.wrapping_sub(*o.comp.add(j));
                }
                let dst = o.c.add(r * o.ldc + j);
                *dst = output(
                    acc,
                    *o.sa.add(r),
                    *o.sw.add(j),
                    *o.bias.add(j),
                    o.epilogue,
                    *dst,
                );
            }
        }
    }
}
