//! Scalar attention: the truth for the SIMD paths.

use super::AttentionArgs;

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
