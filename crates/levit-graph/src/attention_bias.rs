//! Attention-bias indexing (reference §3.3) and the gathered per-head tables.
//!
//! Query `(qy, qx)` on the query grid sits at `(qy*stride, qx*stride)` on the key grid;
//! its bias for key `(ky, kx)` is `table[h][|qy*stride - ky| * r_in + |qx*stride - kx|]`.
//! `stride` is 1 for plain attention and 2 for the subsampling one.

use crate::AttnDims;

/// Index of the bias-table column for query `q` and key `k` (both flat, row-major) of an
/// attention with query stride `stride` (`AttnDims::stride`).
pub fn bias_index(r_in: usize, r_out: usize, stride: usize, q: usize, k: usize) -> usize {
    let (qy, qx) = (q / r_out * stride, q % r_out * stride);
    let (ky, kx) = (k / r_in, k % r_in);
    qy.abs_diff(ky) * r_in + qx.abs_diff(kx)
}

/// Gathers `table` (`[heads][row_stride]`, first `r_in²` columns used) into
/// `out` = `[heads][nq][nk]`. Same result as [`bias_index`] per element, but each
/// output row is one contiguous copy (load time matters: LeViT-384 gathers 1.2 M
/// values, and per-element or per-key-row copies were a quarter of its load).
///
/// Why one copy per row: for a query column `x = qx * stride`, let
/// `mirror[j][kx] = table[h][|j| * r_in + |x - kx|]` for `j` in `-(r_in-1)..r_in`,
/// stored from `j = -(r_in-1)` on. The row of query `(qy, qx)` holds, for each key row
/// `ky`, `mirror[ky - y]` with `y = qy * stride`: key rows `0..r_in` are the
/// consecutive `j = -y..r_in-y`, which start `(r_in - 1 - y) * r_in` floats into
/// `mirror`.
pub fn gather(a: &AttnDims, table: &[f32], row_stride: usize, out: &mut [f32]) {
    let (nq, nk, r_in, r_out, stride) = (a.nq(), a.nk(), a.r_in, a.r_out, a.stride);
    assert!(out.len() >= a.heads * nq * nk && table.len() >= a.heads * row_stride);
    assert!(
        (r_out - 1) * stride < r_in,
        "queries must lie on the key grid"
    );
    let mut mirror = vec![0.0f32; (2 * r_in - 1) * r_in];
    for h in 0..a.heads {
        let row = &table[h * row_stride..][..nk];
        for qx in 0..r_out {
            let x = qx * stride;
            for (j, dst) in mirror.chunks_exact_mut(r_in).enumerate() {
                let dy = j.abs_diff(r_in - 1);
                let src = &row[dy * r_in..][..r_in];
                for (kx, d) in dst.iter_mut().enumerate() {
                    *d = src[x.abs_diff(kx)];
                }
            }
            for qy in 0..r_out {
                let start = (r_in - 1 - qy * stride) * r_in;
                let q = qy * r_out + qx;
                out[(h * nq + q) * nk..][..nk].copy_from_slice(&mirror[start..][..nk]);
            }
        }
    }
}

/// Flat key-grid token index of each query token of a stride-2 subsample
/// (`x.view(R, R, C)[::2, ::2]`, row-major).
pub fn subsample_rows(r_in: usize) -> Vec<u32> {
    let r_out = (r_in - 1) / 2 + 1;
    (0..r_out * r_out)
        .map(|q| ((q / r_out * 2) * r_in + (q % r_out) * 2) as u32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsample_7_to_4_keeps_even_rows_and_columns() {
        assert_eq!(
            subsample_rows(7),
            vec![0, 2, 4, 6, 14, 16, 18, 20, 28, 30, 32, 34, 42, 44, 46, 48]
        );
        let ids = subsample_rows(14);
        assert_eq!(ids.len(), 49);
        assert_eq!(&ids[..8], &[0, 2, 4, 6, 8, 10, 12, 28]);
        assert_eq!(*ids.last().unwrap(), 12 * 14 + 12);
    }

    #[test]
    fn subsample_bias_row_matches_reference_example() {
        // Reference §3.3: AS 7->4, query 1 = (0,1) -> input (0,2).
        let row: Vec<usize> = (0..14).map(|k| bias_index(7, 4, 2, 1, k)).collect();
        assert_eq!(row, vec![2, 1, 0, 1, 2, 3, 4, 9, 8, 7, 8, 9, 10, 11]);
    }

    #[test]
    fn gather_agrees_with_bias_index() {
        for (r_in, r_out, s) in [
            (14, 14, 1),
            (14, 7, 2),
            (7, 4, 2),
            (4, 4, 1),
            (5, 3, 2),
            (2, 1, 2),
            (1, 1, 2),
            (1, 1, 1),
        ] {
            let a = AttnDims {
                heads: 2,
                key_dim: 1,
                val_dim: 1,
                r_in,
                r_out,
                stride: s,
                dim_in: 1,
                dim_out: 1,
            };
            let stride = r_in * r_in + 3;
            let table: Vec<f32> = (0..2 * stride).map(|i| i as f32).collect();
            let mut out = vec![0.0; 2 * a.nq() * a.nk()];
            gather(&a, &table, stride, &mut out);
            for h in 0..2 {
                for q in 0..a.nq() {
                    for k in 0..a.nk() {
                        let want = table[h * stride + bias_index(r_in, r_out, s, q, k)];
                        assert_eq!(out[(h * a.nq() + q) * a.nk() + k], want);
                    }
                }
            }
        }
    }

    #[test]
    fn plain_bias_index_is_symmetric_distance() {
        for q in 0..196usize {
            for k in 0..196 {
                let (dy, dx) = ((q / 14).abs_diff(k / 14), (q % 14).abs_diff(k % 14));
                assert_eq!(bias_index(14, 14, 1, q, k), dy * 14 + dx);
                assert_eq!(bias_index(14, 14, 1, q, k), bias_index(14, 14, 1, k, q));
            }
        }
    }
}
