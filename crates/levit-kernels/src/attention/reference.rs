//! Scalar attention: the truth for the SIMD paths.

use super::AttentionArgs;
use crate::bf16::{from_bf16, to_bf16};

/// One query row at a time: scores, max-subtracted softmax, weighted sum of v.
pub fn attention(args: &AttentionArgs, out: &mut [f32], scratch: &mut [f32]) {
    attention_rows(args, out, scratch, 0..args.shape.nq);
}

/// Query rows `rows` only; `out` starts at row `rows.start`.
pub fn attention_rows(
    args: &AttentionArgs,
    out: &mut [f32],
    scratch: &mut [f32],
    rows: core::ops::Range<usize>,
) {
    let s = args.shape;
    let scores = &mut scratch[..s.nk];
    let row_width = s.heads * s.val_dim;
    for h in 0..s.heads {
        for i in rows.clone() {
            let q = &args.q[args.q_view.at(i, h)..][..s.key_dim];
            let bias = &args.bias[(h * s.nq + i) * s.nk..][..s.nk];
            let mut max = f32::NEG_INFINITY;
            for (m, score) in scores.iter_mut().enumerate() {
                let k = &args.kv[args.k_view.at(m, h)..][..s.key_dim];
                let dot: f32 = q.iter().zip(k).map(|(a, b)| a * b).sum();
                *score = dot * s.scale + bias[m];
                max = max.max(*score);
            }
            let mut sum = 0.0f32;
            for score in scores.iter_mut() {
                *score = (*score - max).exp();
                sum += *score;
            }
            let o = &mut out[(i - rows.start) * row_width + h * s.val_dim..][..s.val_dim];
            o.fill(0.0);
            for (m, &p) in scores.iter().enumerate() {
                let v = &args.kv[args.v_view.at(m, h)..][..s.val_dim];
                for (o, v) in o.iter_mut().zip(v) {
                    *o += p * v;
                }
            }
            for o in o.iter_mut() {
                *o = args.act.apply(*o / sum);
            }
        }
    }
}

/// What the bf16 kernels compute (`amx_bf16.rs`), in scalar code: q, k, v and the
/// probabilities rounded to bf16, exact products summed in f32, the softmax in f32
/// (`e = exp(s - max)`, `Σ e` of the unrounded `e`), and
/// `out = act(Σ bf16(e)·bf16(v) * (1 / Σ e))`. Query rows `rows` only; `out` starts
/// at row `rows.start`; `scratch` needs `nk` floats.
pub fn attention_bf16_rows(
    args: &AttentionArgs,
    out: &mut [f32],
    scratch: &mut [f32],
    rows: core::ops::Range<usize>,
) {
    let bf = |x: f32| from_bf16(to_bf16(x));
    let s = args.shape;
    let scores = &mut scratch[..s.nk];
    let row_width = s.heads * s.val_dim;
    for h in 0..s.heads {
        for i in rows.clone() {
            let q = &args.q[args.q_view.at(i, h)..][..s.key_dim];
            let bias = &args.bias[(h * s.nq + i) * s.nk..][..s.nk];
            let mut max = f32::NEG_INFINITY;
            for (m, score) in scores.iter_mut().enumerate() {
                let k = &args.kv[args.k_view.at(m, h)..][..s.key_dim];
                let dot: f32 = q.iter().zip(k).map(|(&a, &b)| bf(a) * bf(b)).sum();
                *score = dot.mul_add(s.scale, bias[m]);
                max = max.max(*score);
            }
            let mut sum = 0.0f32;
            for score in scores.iter_mut() {
                let e = (*score - max).exp();
                sum += e;
                *score = bf(e);
            }
            let o = &mut out[(i - rows.start) * row_width + h * s.val_dim..][..s.val_dim];
            o.fill(0.0);
            for (m, &p) in scores.iter().enumerate() {
                let v = &args.kv[args.v_view.at(m, h)..][..s.val_dim];
                for (o, &v) in o.iter_mut().zip(v) {
                    *o += p * bf(v);
                }
            }
            let inv = 1.0 / sum;
            for o in o.iter_mut() {
                *o = args.act.apply(*o * inv);
            }
        }
    }
}
