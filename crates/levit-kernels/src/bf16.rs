//! bfloat16 numbers and the bf16 packed-weight layout.
//!
//! A bf16 value is the upper 16 bits of an f32 (sign, 8-bit exponent, 7-bit
//! mantissa), stored as its `u16` bit pattern. Packed GEMM weights in bf16 interleave
//! K pairs, as `vdpbf16ps` and AMX `tdpbf16ps` read them (`docs/weight-format.md`):
//!
//! ```text
//! KP = ceil(K / 32) * 32                        (K zero-padded to whole 32-deep blocks)
//! packed[p][kp][j][t] = bf16(B[2*kp + t][p*16 + j])   shape [panels(N), KP/2, 16, 2]
//! ```
//!
//! Each row `packed[p][kp]` is 16 pairs = 64 bytes: one cache line, one zmm register,
//! one row of an AMX B tile (an AMX B tile is 16 consecutive rows, 32 values of K).

use crate::{panels, NR};

/// K is padded to a multiple of this in bf16 panels (one AMX tile depth).
pub const BF16_K_BLOCK: usize = 32;

/// K rounded up to whole [`BF16_K_BLOCK`]s.
pub const fn padded_k(k: usize) -> usize {
    k.div_ceil(BF16_K_BLOCK) * BF16_K_BLOCK
}

/// `u16`s in one bf16 panel of a `[K, *]` operand (`KP/2` rows of 16 pairs).
pub const fn panel_len(k: usize) -> usize {
    padded_k(k) * NR
}

/// Length in `u16` of a bf16-packed `[K, N]` operand.
pub const fn packed_len(k: usize, n: usize) -> usize {
    panels(n) * panel_len(k)
}

/// The stored shape of a bf16-packed `[K, N]` operand: `[panels(N), KP/2, 16, 2]`.
pub fn packed_shape(k: usize, n: usize) -> [usize; 4] {
    [panels(n), padded_k(k) / 2, NR, 2]
}

/// Rounds an f32 to the nearest bf16, ties to even (as `vcvtne2ps2bf16`); NaN stays a
/// (quiet) NaN, infinities stay infinite.
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) as u16) | 0x0040;
    }
    let round = 0x7FFF + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

/// The f32 a bf16 stands for (exact).
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Packs a row-major `B [k, n]` into bf16 panels.
pub fn pack_b(b: &[f32], k: usize, n: usize) -> Vec<u16> {
    assert!(b.len() >= k * n);
    let mut out = vec![0; packed_len(k, n)];
    let pl = panel_len(k);
    for p in 0..panels(n) {
        for kk in 0..k {
            for j in 0..NR {
                let col = p * NR + j;
                if col < n {
                    out[p * pl + (kk / 2) * 2 * NR + j * 2 + kk % 2] = to_bf16(b[kk * n + col]);
                }
            }
        }
    }
    out
}

/// Repacks f32 panels (`[panels(n)][k][16]`, as [`crate::gemm::pack_b`] writes them)
/// into bf16 panels: what a model does once at load when asked for bf16 from an f32
/// file. `out` must hold [`packed_len`]`(k, n)` values.
pub fn repack_f32_panels(f32_panels: &[f32], k: usize, n: usize, out: &mut [u16]) {
    let np = panels(n);
    assert!(f32_panels.len() >= np * k * NR && out.len() >= packed_len(k, n));
    let pl = panel_len(k);
    for p in 0..np {
        let src = &f32_panels[p * k * NR..][..k * NR];
        let dst = &mut out[p * pl..][..pl];
        // Two f32 rows (k = 2kp, 2kp+1) become one row of 16 interleaved pairs.
        let (pairs, odd) = src.as_chunks::<{ 2 * NR }>();
        let (dst_pairs, dst_rest) = dst.as_chunks_mut::<{ 2 * NR }>();
        for (rows, out) in pairs.iter().zip(dst_pairs.iter_mut()) {
            let (even, odd) = rows.split_at(NR);
            for j in 0..NR {
                out[2 * j] = to_bf16(even[j]);
                out[2 * j + 1] = to_bf16(odd[j]);
            }
        }
        debug_assert!(dst_rest.is_empty());
        // An odd K's last row pairs with zero; then the padding rows up to KP.
        let tail = &mut dst_pairs[pairs.len()..];
        for out in tail.iter_mut() {
            out.fill(0);
        }
        if let Some(out) = tail.first_mut() {
            for (j, &x) in odd.iter().enumerate() {
                out[2 * j] = to_bf16(x);
            }
        }
    }
}

/// The bf16 value at `B[kk][p*16 + j]` of a bf16-packed operand (for references and
/// tests).
pub fn packed_at(packed: &[u16], k: usize, p: usize, kk: usize, j: usize) -> u16 {
    packed[p * panel_len(k) + (kk / 2) * 2 * NR + j * 2 + kk % 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3F80);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0).
        assert_eq!(to_bf16(f32::from_bits(0x3F80_8000)), 0x3F80);
        // Just above halfway rounds up.
        assert_eq!(to_bf16(f32::from_bits(0x3F80_8001)), 0x3F81);
        // Halfway with an odd lower neighbour rounds up to even.
        assert_eq!(to_bf16(f32::from_bits(0x3F81_8000)), 0x3F82);
        assert_eq!(to_bf16(-2.5), 0xC020);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
        assert_eq!(to_bf16(f32::MAX), 0x7F80, "overflow rounds to infinity");
        for x in [0.0f32, -0.0, 3.140625, -1e-30, 65504.0] {
            let r = from_bf16(to_bf16(x));
            assert!((r - x).abs() <= x.abs() * (1.0 / 256.0), "{x} -> {r}");
        }
    }

    #[test]
    fn repacking_f32_panels_equals_packing_the_matrix() {
        for (k, n) in [(1, 1), (27, 16), (31, 17), (32, 33), (33, 48), (64, 5)] {
            let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.37).sin()).collect();
            let want = pack_b(&b, k, n);
            let mut got = vec![7u16; packed_len(k, n)];
            repack_f32_panels(&crate::gemm::pack_b(&b, k, n), k, n, &mut got);
            assert_eq!(got, want, "k {k} n {n}");
            for kk in 0..k {
                for col in 0..n {
                    let h = packed_at(&want, k, col / NR, kk, col % NR);
                    assert_eq!(h, to_bf16(b[kk * n + col]));
                }
            }
            assert_eq!(
                packed_shape(k, n).iter().product::<usize>(),
                packed_len(k, n)
            );
        }
    }
}
