//! Reductions over tokens.

/// `out[c] = (Σ_n x[n*c_stride + c]) / rows`: the global average pool before the head.
pub fn mean_rows(x: &[f32], rows: usize, channels: usize, out: &mut [f32]) {
    assert!(out.len() >= channels && x.len() >= rows * channels);
    let out = &mut out[..channels];
    out.fill(0.0);
    for r in 0..rows {
        for (o, v) in out.iter_mut().zip(&x[r * channels..][..channels]) {
            *o += v;
        }
    }
    let inv = rows as f32;
    for o in out.iter_mut() {
        *o /= inv;
    }
}
