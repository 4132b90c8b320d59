//! The portable int8 GEMM kernel `portable_int8_12x32`: plain integer loops on every
//! target. A holds the signed `q` (no zero point, so no compensation); each output
//! sums its 4-byte K groups in order, which LLVM vectorises across the 16 columns of a
//! panel.

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
            let mut sum = [0i32; NR];
            if !t.first {
                sum.copy_from_slice(acc);
            }
            for (quad, rows) in a.chunks_exact(4).zip(b.chunks_exact(4 * NR)) {
                for (j, s) in sum.iter_mut().enumerate() {
                    let w = &rows[4 * j..4 * j + 4];
                    let dot: i32 = (0..4).map(|t| i32::from(quad[t]) * i32::from(w[t])).sum();
                    *s = s.wrapping_add(dot);
                }
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
