//! Kernels for LeViT inference. Pure functions on slices: nothing here knows about
//! LeViT, files or allocation. Every kernel has a scalar `reference` beside it that is
//! the truth the SIMD paths are tested against.
//!
//! Layout conventions shared by all kernels:
//! - activations are row-major `[rows, channels]` f32 slices with explicit strides;
//! - GEMM right-hand operands are pre-packed in panels of [`NR`] columns
//!   (`packed[p][k][j] = B[k][p*NR + j]`, zero-padded), see [`gemm`].
//!
//! SIMD paths ([`Isa`]): AVX-512, AVX2 + FMA (x86-64 only, `core::arch` intrinsics in
//! `#[target_feature]` functions) and portable (`wide`, every target). `unsafe` lives
//! only inside the kernel modules; the public entry points validate the operands
//! (`check`) and assert that the requested path is supported by the CPU before
//! calling into it, so every public function is safe to call with any `Isa`
//! (an unsupported one panics).

#![deny(unsafe_op_in_unsafe_fn)]

pub mod activation;
mod amx_os;
pub mod attention;
pub mod bf16;
pub mod conv;
pub mod gemm;
pub mod int8;
pub mod isa;
pub mod parallel;
pub mod peak;
pub mod precision;
pub mod reduce;
pub mod vecmath;

pub use activation::Activation;
pub use isa::Isa;
pub use precision::Precision;

/// Width of one packed weight panel, in f32 columns (one 64-byte cache line).
pub const NR: usize = 16;

/// Number of panels needed for `n` output columns.
pub const fn panels(n: usize) -> usize {
    n.div_ceil(NR)
}

/// Length in f32 of a packed `[K, N]` operand.
pub const fn packed_len(k: usize, n: usize) -> usize {
    panels(n) * k * NR
}
