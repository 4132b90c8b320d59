//! Scalar GEMM: the truth every SIMD path is tested against.

use super::{Epilogue, GemmArgs};
use crate::NR;

/// Plain triple loop over the packed operand, summing `k` in order.
pub fn gemm(args: &GemmArgs, c: &mut [f32]) {
    let GemmArgs { m, k, n, .. } = *args;
    for i in 0..m {
        let a_row = &args.a[args.a_row_offset(i)..][..k];
        for col in 0..n {
            let (p, j) = (col / NR, col % NR);
            let panel = &args.b[p * k * NR..][..k * NR];
            let mut acc = 0.0f32;
            for (kk, &a) in a_row.iter().enumerate() {
                acc += a * panel[kk * NR + j];
            }
            let y = acc + args.bias[col];
            let out = &mut c[i * args.ldc + col];
            *out = match args.epilogue {
                Epilogue::BiasAct(act) => act.apply(y),
                Epilogue::BiasResidual => *out + y,
            };
        }
    }
}
