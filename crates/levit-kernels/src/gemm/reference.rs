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

/// The int8 truth: each row of A quantized as [`crate::int8`] specifies, exact
/// integer sums against the quantized weights, then `((Σ qa·qw) as f32 * sa) * sw +
/// bias` and the epilogue. Every int8 kernel gives these bits (SiLU within its `exp`).
///
/// # Panics
/// If the weights are not int8 or the operands do not satisfy [`GemmArgs::check`].
pub fn gemm_int8(args: &GemmArgs, c: &mut [f32]) {
    use crate::int8;
    let w = args.b.int8().expect("gemm_int8: int8 weights only");
    args.check(c.len())
        .expect("gemm_int8: inconsistent operands");
    let GemmArgs { m, k, n, .. } = *args;
    let mut q = vec![0i8; k];
    for i in 0..m {
        let a_row = if k > 0 {
            &args.a[args.a_row_offset(i)..][..k]
        } else {
            &[][..]
        };
        let (sa, inv) = int8::scale_of(int8::max_abs(a_row));
        for (q, &x) in q.iter_mut().zip(a_row) {
            *q = int8::quantize(x, inv);
        }
        for col in 0..n {
            let (p, j) = (col / crate::NR, col % crate::NR);
            let mut acc = 0i32;
            for (kk, &qa) in q.iter().enumerate() {
                let qw = w.data[int8::packed_index(k, p, kk, j)];
                acc = acc.wrapping_add(i32::from(qa) * i32::from(qw));
            }
            let out = &mut c[i * args.ldc + col];
            *out = super::int8::output(acc, sa, w.scale[col], args.bias[col], args.epilogue, *out);
        }
    }
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
