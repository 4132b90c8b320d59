//! The int8 quantization scheme and the int8 packed-weight layout
//! (`docs/weight-format.md`, `docs/precision.md`).
//!
//! # Scheme
//! - **Weights**: symmetric, per output column: `sw[n] = max_k |B[k][n]| / 127`,
//!   `qw[k][n] = round_ties_even(B[k][n] * (127 / max_k |B[k][n]|))` in `-127..=127`
//!   (never -128), computed once when the weights are packed.
//! - **Activations**: symmetric, per row (per token), computed at run time by the
//!   kernel while it packs its rows of A, so nothing is calibrated:
//!   `sa[i] = max_k |A[i][k]| / 127`, `qa[i][k] = round_ties_even(A[i][k] * (127 /
//!   max_k |A[i][k]|))` in `-127..=127`, stored as the byte `qa + 128` (zero point 128)
//!   for the `u8 x s8` dot instructions (`vpdpbusd`, AMX `tdpbusd`).
//! - **Product**: `C[i][n] = ((Σ_k qa·qw) as f32 * sa[i]) * sw[n] + bias[n]`, in that
//!   order, without fused multiply-adds. The integer sum is exact, and the
//!   kernels that multiply `qa + 128` subtract the compensation `comp[n] = 128 · Σ_k
//!   qw[k][n]` stored beside the weights; so every int8 kernel computes the same bits
//!   as [`crate::gemm::reference::gemm_int8`], for any split of the work.
//!
//! Why `u8 x s8` with a zero point rather than `s8 x s8` (AMX `tdpbssd`): AVX512_VNNI
//! has only `vpdpbusd` (unsigned times signed), and one activation format for every
//! kernel keeps the AMX and VNNI kernels interchangeable at the bit level; the
//! compensation costs one subtraction per output. The integer sums cannot overflow
//! for `K <=` [`MAX_K`] (`|Σ qa·qw| <= 127² K < 2³¹`; the `u8` sums may wrap, and are
//! corrected with wrapping arithmetic).
//!
//! A row or column whose maximum is 0 has scale 0 (its products are 0); one holding a
//! NaN or an infinity has scale NaN, so the non-finite value propagates to every
//! output it touches instead of being lost in the quantization.
//!
//! # Layout
//! ```text
//! KQ = ceil(K / 64) * 64                        (K zero-padded to whole 64-deep blocks)
//! data[p][kq][j][t] = qw[4*kq + t][p*16 + j]    shape [panels(N), KQ/4, 16, 4], i8
//! scale[n] = sw[n], comp[n] = 128 * Σ_k qw[k][n] shape [panels(N) * 16], f32 / i32
//! ```
//! Each row `data[p][kq]` is 16 columns x 4 consecutive K values = 64 bytes: one zmm
//! operand of `vpdpbusd` (which multiplies 4 byte pairs per 32-bit lane) and one row of
//! an AMX B tile (`tdpbusd` reads B as rows of 16 dwords, each 4 bytes of K for one
//! column: the same grouping); a B tile is 16 consecutive rows, 64 values of K, which
//! is why K is padded to 64. Columns past `N` have weight 0, scale 0 and comp 0.

use crate::{panels, NR};

/// K is padded to a multiple of this in int8 panels (one AMX `tdpbusd` tile depth).
pub const INT8_K_BLOCK: usize = 64;

/// Longest reduction the int8 kernels accept: `127² * MAX_K < 2³¹`, so the exact sum
/// of products fits an `i32`.
pub const MAX_K: usize = 1 << 17;

/// The zero point of the quantized activations (`u8 = q + 128`).
pub const ZERO_POINT: i32 = 128;

/// K rounded up to whole [`INT8_K_BLOCK`]s.
pub const fn padded_k(k: usize) -> usize {
    k.div_ceil(INT8_K_BLOCK) * INT8_K_BLOCK
}

/// Bytes in one int8 panel of a `[K, *]` operand (`KQ/4` rows of 16 x 4 bytes).
pub const fn panel_len(k: usize) -> usize {
    padded_k(k) * NR
}

/// Length in bytes of the int8 data of a `[K, N]` operand.
pub const fn packed_len(k: usize, n: usize) -> usize {
    panels(n) * panel_len(k)
}

/// Length of the scale and compensation vectors of an `N`-column operand.
pub const fn columns_len(n: usize) -> usize {
    panels(n) * NR
}

/// The stored shape of the int8 data of a `[K, N]` operand: `[panels(N), KQ/4, 16, 4]`.
pub fn packed_shape(k: usize, n: usize) -> [usize; 4] {
    [panels(n), padded_k(k) / 4, NR, 4]
}

/// Offset of `qw[kk][p*16 + j]` in the int8 data.
#[inline]
pub const fn packed_index(k: usize, p: usize, kk: usize, j: usize) -> usize {
    p * panel_len(k) + (kk / 4) * 4 * NR + j * 4 + kk % 4
}

/// Borrowed int8 weights, as kernels read them (see the module doc).
#[derive(Clone, Copy, Debug)]
pub struct WeightsRef<'a> {
    /// Quantized weights, `[panels(N), KQ/4, 16, 4]`.
    pub data: &'a [i8],
    /// Per-column scales `sw`, [`columns_len`] long.
    pub scale: &'a [f32],
    /// Per-column compensations `128 * Σ_k qw`, [`columns_len`] long.
    pub comp: &'a [i32],
}

impl WeightsRef<'_> {
    /// `B[kk][col]` as the kernels see it, dequantized (`qw * sw`): for references.
    pub fn dequantized(&self, k: usize, kk: usize, col: usize) -> f32 {
        let q = self.data[packed_index(k, col / NR, kk, col % NR)];
        f32::from(q) * self.scale[col]
    }

    /// Whether the three parts are long enough for a `[K, N]` operand.
    pub fn check(&self, k: usize, n: usize) -> Result<(), String> {
        if self.data.len() < packed_len(k, n) {
            return Err(format!(
                "packed int8 B has {} bytes, need {}",
                self.data.len(),
                packed_len(k, n)
            ));
        }
        let cols = columns_len(n);
        if self.scale.len() < cols || self.comp.len() < cols {
            return Err(format!(
                "int8 B has {} scales and {} compensations, need {cols} each",
                self.scale.len(),
                self.comp.len()
            ));
        }
        if k > MAX_K {
            return Err(format!("int8 GEMM with k = {k} beyond the limit {MAX_K}"));
        }
        Ok(())
    }
}

/// Owned int8 weights: what [`pack_b`] and [`quantize_f32_panels`] produce.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Weights {
    /// See [`WeightsRef::data`].
    pub data: Vec<i8>,
    /// See [`WeightsRef::scale`].
    pub scale: Vec<f32>,
    /// See [`WeightsRef::comp`].
    pub comp: Vec<i32>,
}

impl Weights {
    /// Zeroed storage for a `[K, N]` operand.
    pub fn zeroed(k: usize, n: usize) -> Weights {
        Weights {
            data: vec![0; packed_len(k, n)],
            scale: vec![0.0; columns_len(n)],
            comp: vec![0; columns_len(n)],
        }
    }

    /// The borrowed view kernels take.
    pub fn view(&self) -> WeightsRef<'_> {
        WeightsRef {
            data: &self.data,
            scale: &self.scale,
            comp: &self.comp,
        }
    }
}

/// The scale of a row or column whose largest magnitude is `max_abs`, and the factor
/// that quantizes it: `(max_abs / 127, 127 / max_abs)`; `(0, 0)` for 0 and `(NaN, 0)`
/// for a NaN or infinity (see the module doc).
#[inline]
pub fn scale_of(max_abs: f32) -> (f32, f32) {
    if !max_abs.is_finite() {
        (f32::NAN, 0.0)
    } else if max_abs == 0.0 {
        (0.0, 0.0)
    } else {
        (max_abs / 127.0, 127.0 / max_abs)
    }
}

/// `max |x|` as the kernels compute it: the largest `bits(x) & 0x7fff_ffff` (for
/// non-negative floats the integer order is the float order, and a NaN is above
/// every number, so a NaN anywhere gives a NaN).
#[inline]
pub fn max_abs(x: &[f32]) -> f32 {
    f32::from_bits(
        x.iter()
            .map(|v| v.to_bits() & 0x7fff_ffff)
            .max()
            .unwrap_or(0),
    )
}

/// Quantizes one value with the factor of [`scale_of`]: `round_ties_even(x * inv)`,
/// in `-127..=127` whenever `|x| <=` the `max_abs` that gave `inv`.
#[inline]
pub fn quantize(x: f32, inv: f32) -> i8 {
    // Adding and subtracting 1.5 * 2^23 rounds to an integer, ties to even (the
    // default rounding), exactly as `round_ties_even` for |v| < 2^22; larger values
    // are clamped anyway. (Without SSE4.1 `round_ties_even` is a library call, which
    // made quantizing LeViT-384 at load take most of a second.)
    const MAGIC: f32 = 12_582_912.0;
    let v = (x * inv).clamp(-127.0, 127.0);
    ((v + MAGIC) - MAGIC) as i8
}

/// Quantizes a row-major `B [k, n]` and packs it (tests and tools).
pub fn pack_b(b: &[f32], k: usize, n: usize) -> Weights {
    assert!(b.len() >= k * n);
    let f32_panels = crate::gemm::pack_b(b, k, n);
    let mut out = Weights::zeroed(k, n);
    quantize_f32_panels(
        &f32_panels,
        k,
        n,
        &mut out.data,
        &mut out.scale,
        &mut out.comp,
    );
    out
}

/// Quantizes f32 panels (`[panels(n)][k][16]`, as [`crate::gemm::pack_b`] writes
/// them) into int8 weights: what a model does once at load when asked for int8 from an
/// f32 file. `data` must hold [`packed_len`]`(k, n)` bytes, `scale` and `comp`
/// [`columns_len`]`(n)` values; all three are overwritten there.
pub fn quantize_f32_panels(
    f32_panels: &[f32],
    k: usize,
    n: usize,
    data: &mut [i8],
    scale: &mut [f32],
    comp: &mut [i32],
) {
    let np = panels(n);
    assert!(f32_panels.len() >= np * k * NR);
    assert!(data.len() >= packed_len(k, n) && scale.len() >= columns_len(n));
    assert!(comp.len() >= columns_len(n));
    data[..packed_len(k, n)].fill(0);
    for p in 0..np {
        // Row-major over the panel (16 columns side by side): the column maxima, then
        // the quantized rows, each a pass the compiler vectorises.
        let src = &f32_panels[p * k * NR..][..k * NR];
        let mut max = [0u32; NR];
        for row in src.chunks_exact(NR) {
            for (m, x) in max.iter_mut().zip(row) {
                *m = (*m).max(x.to_bits() & 0x7fff_ffff);
            }
        }
        let mut inv = [0f32; NR];
        for j in 0..NR {
            let col = p * NR + j;
            let (s, i) = if col < n {
                scale_of(f32::from_bits(max[j]))
            } else {
                (0.0, 0.0)
            };
            scale[col] = s;
            inv[j] = i;
        }
        let mut sums = [0i32; NR];
        let dst = &mut data[p * panel_len(k)..][..panel_len(k)];
        for (kk, row) in src.chunks_exact(NR).enumerate() {
            let quad = &mut dst[(kk / 4) * 4 * NR..][..4 * NR];
            for j in 0..NR {
                let q = quantize(row[j], inv[j]);
                quad[j * 4 + kk % 4] = q;
                sums[j] += i32::from(q);
            }
        }
        for j in 0..NR {
            comp[p * NR + j] = sums[j].wrapping_mul(ZERO_POINT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantized_weights_round_trip_within_half_a_step() {
        for (k, n) in [(1, 1), (3, 17), (27, 16), (64, 33), (65, 5), (130, 40)] {
            let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.37).sin()).collect();
            let w = pack_b(&b, k, n);
            assert_eq!(w.data.len(), packed_shape(k, n).iter().product::<usize>());
            for col in 0..n {
                let max = (0..k).map(|kk| b[kk * n + col].abs()).fold(0.0, f32::max);
                let mut sum = 0;
                for kk in 0..k {
                    let q = w.data[packed_index(k, col / NR, kk, col % NR)];
                    assert!((-127..=127).contains(&q));
                    sum += i32::from(q);
                    let got = w.view().dequantized(k, kk, col);
                    let err = (got - b[kk * n + col]).abs();
                    assert!(err <= max / 127.0 * 0.5001, "k {k} n {n} ({kk},{col})");
                }
                assert_eq!(w.comp[col], 128 * sum);
                // The column's largest magnitude maps to exactly ±127 (an all-zero
                // column stays zero).
                assert!(
                    max == 0.0
                        || (0..k).any(|kk| w.data[packed_index(k, col / NR, kk, col % NR)]
                            .unsigned_abs()
                            == 127)
                );
            }
            for col in n..columns_len(n) {
                assert_eq!((w.scale[col], w.comp[col]), (0.0, 0));
            }
            // Padding (K past k, columns past n) is zero.
            for p in 0..panels(n) {
                for kk in 0..padded_k(k) {
                    for j in 0..NR {
                        if kk >= k || p * NR + j >= n {
                            assert_eq!(w.data[packed_index(k, p, kk, j)], 0);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn scales_of_zero_and_non_finite_rows() {
        assert_eq!(scale_of(0.0), (0.0, 0.0));
        assert!(scale_of(f32::INFINITY).0.is_nan());
        assert!(max_abs(&[1.0, f32::NAN, -3.0]).is_nan());
        assert_eq!(max_abs(&[1.0, -3.0, 2.0]), 3.0);
        assert_eq!(max_abs(&[]), 0.0);
        let (_, inv) = scale_of(3.0);
        assert_eq!(quantize(-3.0, inv), -127);
        assert_eq!(quantize(3.0, inv), 127);
        assert_eq!(quantize(0.0, inv), 0);
        // The add-and-subtract rounding is `round_ties_even`, ties and clamping
        // included.
        for i in -1100..=1100 {
            let v = i as f32 * 0.125;
            let want = v.round_ties_even().clamp(-127.0, 127.0) as i8;
            assert_eq!(quantize(v, 1.0), want, "{v}");
        }
        assert_eq!(quantize(f32::NAN, 1.0), 0);
    }
}
