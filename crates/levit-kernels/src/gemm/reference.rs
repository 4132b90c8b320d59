//! Scalar GEMM: the truth every SIMD path is tested against.

use super::{Epilogue, GemmArgs};
use crate::bf16;

/// Plain triple loop over the packed operand, summing `k` in order. bf16 weights are
/// widened exactly to f32 (what the widening kernels compute, bit for bit).
pub fn gemm(args: &GemmArgs, c: &mut [f32]) {
    gemm_with(args, c, |a| a);
}

/// [`gemm`] with every A value rounded to bf16 first: the operands the bf16 dot
/// instructions (AMX, `vdpbf16ps`) multiply. Their accumulation order inside a dot
/// instruction is the hardware's, so those kernels match this within a tolerance,
/// not bit for bit.
pub fn gemm_bf16_activations(args: &GemmArgs, c: &mut [f32]) {
    gemm_with(args, c, |a| bf16::from_bf16(bf16::to_bf16(a)));
}

fn gemm_with(args: &GemmArgs, c: &mut [f32], round_a: impl Fn(f32) -> f32) {
    let GemmArgs { m, k, n, .. } = *args;
    for i in 0..m {
        let a_row = &args.a[args.a_row_offset(i)..][..k];
        for col in 0..n {
            let mut acc = 0.0f32;
            for (kk, &a) in a_row.iter().enumerate() {
                acc += round_a(a) * args.b.at(k, kk, col);
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
