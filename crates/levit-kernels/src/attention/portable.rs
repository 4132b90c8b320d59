//! Portable attention on `wide::f32x8` (the aarch64 path), in safe code.
//!
//! Same plan as `avx512.rs`: scores in blocks of up to [`QB`] = 4 query rows x 16 keys
//! (2 f32x8) = 8 accumulators (16 NEON registers on aarch64); `p·V` over the 4 rows x
//! 16 columns of `val_dim` (8 accumulators). Partial vectors go through small arrays.

use wide::f32x8;

use super::{AttentionArgs, KEY_PAD, QB};
use crate::vecmath::portable::{activate, exp, load_partial};

/// Runs attention on the portable path (`args` already checked, `nk > 0`).
pub(super) fn attention(
    args: &AttentionArgs,
    out: &mut [f32],
    scratch: &mut [f32],
    rows: core::ops::Range<usize>,
) {
    let s = args.shape;
    debug_assert!(s.nk > 0 && KEY_PAD.is_multiple_of(16));
    let nkp = s.nk.div_ceil(KEY_PAD) * KEY_PAD;
    let (kt, rest) = scratch.split_at_mut(s.key_dim * nkp);
    let probs = &mut rest[..QB * nkp];
    let row_width = s.heads * s.val_dim;
    for h in 0..s.heads {
        super::transpose_keys(args, h, nkp, kt);
        let mut i0 = rows.start;
        while i0 < rows.end {
            let r = QB.min(rows.end - i0);
            let max = match r {
                1 => scores::<1>(args, h, i0, kt, nkp, probs),
                2 => scores::<2>(args, h, i0, kt, nkp, probs),
                3 => scores::<3>(args, h, i0, kt, nkp, probs),
                _ => scores::<4>(args, h, i0, kt, nkp, probs),
            };
            let mut sums = [1.0f32; QB];
            for rr in 0..r {
                sums[rr] = softmax_row(&mut probs[rr * nkp..][..nkp], max[rr]);
            }
            let mut j0 = 0;
            while j0 < s.val_dim {
                let w = 16.min(s.val_dim - j0);
                match r {
                    1 => pv::<1>(
                        args,
                        h,
                        j0,
                        w,
                        probs,
                        nkp,
                        &sums,
                        row_width,
                        &mut out[(i0 - rows.start) * row_width..],
                    ),
                    2 => pv::<2>(
                        args,
                        h,
                        j0,
                        w,
                        probs,
                        nkp,
                        &sums,
                        row_width,
                        &mut out[(i0 - rows.start) * row_width..],
                    ),
                    3 => pv::<3>(
                        args,
                        h,
                        j0,
                        w,
                        probs,
                        nkp,
                        &sums,
                        row_width,
                        &mut out[(i0 - rows.start) * row_width..],
                    ),
                    _ => pv::<4>(
                        args,
                        h,
                        j0,
                        w,
                        probs,
                        nkp,
                        &sums,
                        row_width,
                        &mut out[(i0 - rows.start) * row_width..],
                    ),
                }
                j0 += w;
            }
            i0 += r;
        }
    }
}

/// Scores of query rows `i0..i0+R` of head `h` into `probs` (padded keys: -inf);
/// returns the row maxima.
fn scores<const R: usize>(
    args: &AttentionArgs,
    h: usize,
    i0: usize,
    kt: &[f32],
    nkp: usize,
    probs: &mut [f32],
) -> [f32; QB] {
    let s = args.shape;
    let q: [&[f32]; R] =
        core::array::from_fn(|r| &args.q[args.q_view.at(i0 + r, h)..][..s.key_dim]);
    let mut vmax = [f32::NEG_INFINITY; QB];
    for c in (0..nkp).step_by(16) {
        let mut acc = [[f32x8::splat(0.0); 2]; R];
        for d in 0..s.key_dim {
            let k = &kt[d * nkp + c..][..16];
            let k0 = f32x8::new(k[..8].try_into().unwrap());
            let k1 = f32x8::new(k[8..].try_into().unwrap());
            for r in 0..R {
                let qv = f32x8::splat(q[r][d]);
                acc[r][0] = qv.mul_add(k0, acc[r][0]);
                acc[r][1] = qv.mul_add(k1, acc[r][1]);
            }
        }
        let valid = s.nk.saturating_sub(c).min(16);
        for r in 0..R {
            let bias = &args.bias[(h * s.nq + i0 + r) * s.nk..][..s.nk];
            let row = &mut probs[r * nkp + c..][..16];
            for (half, acc) in acc[r].iter().enumerate() {
                let sv = (*acc * f32x8::splat(s.scale)).to_array();
                for (l, &x) in sv.iter().enumerate() {
                    let m = half * 8 + l;
                    row[m] = if m < valid {
                        x + bias[c + m]
                    } else {
                        f32::NEG_INFINITY
                    };
                    vmax[r] = vmax[r].max(row[m]);
                }
            }
        }
    }
    vmax
}

/// `p = exp(s - max)` in place over one padded row; returns `Σ p`.
fn softmax_row(row: &mut [f32], max: f32) -> f32 {
    let mv = f32x8::splat(max);
    let mut sum = f32x8::splat(0.0);
    for c in row.chunks_exact_mut(8) {
        let e = exp(f32x8::new((&*c).try_into().unwrap()) - mv);
        c.copy_from_slice(&e.to_array());
        sum += e;
    }
    sum.reduce_add()
}

/// `out[r][h*val_dim + j0 ..][..w] = act((Σ_m p[r][m] v[m][j0..]) / sum[r])`, where
/// `out` starts at the block's first query row.
#[allow(clippy::too_many_arguments)]
fn pv<const R: usize>(
    args: &AttentionArgs,
    h: usize,
    j0: usize,
    w: usize,
    probs: &[f32],
    nkp: usize,
    sums: &[f32; QB],
    row_width: usize,
    out: &mut [f32],
) {
    let s = args.shape;
    let mut acc = [[f32x8::splat(0.0); 2]; R];
    for m in 0..s.nk {
        let v = &args.kv[args.v_view.at(m, h) + j0..][..w];
        let v0 = load_partial(v, w.min(8));
        let v1 = if w > 8 {
            load_partial(&v[8..], w - 8)
        } else {
            f32x8::splat(0.0)
        };
        for r in 0..R {
            let p = f32x8::splat(probs[r * nkp + m]);
            acc[r][0] = p.mul_add(v0, acc[r][0]);
            acc[r][1] = p.mul_add(v1, acc[r][1]);
        }
    }
    for r in 0..R {
        let sum = f32x8::splat(sums[r]);
        let o = &mut out[r * row_width + h * s.val_dim + j0..][..w];
        let lo = activate(args.act, acc[r][0] / sum).to_array();
        let hi = activate(args.act, acc[r][1] / sum).to_array();
        for (j, o) in o.iter_mut().enumerate() {
            *o = if j < 8 { lo[j] } else { hi[j - 8] };
        }
    }
}
