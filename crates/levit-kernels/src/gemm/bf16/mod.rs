//! GEMM kernels for bf16 weights (`crate::bf16` describes the K-pair panel layout).
//!
//! Two kinds, chosen by what the CPU does well:
//! - bf16 dot kernels round the activations to bf16 too and multiply pairs in the
//!   hardware's dot instruction, accumulating in f32: `amx.rs` (AMX tiles,
//!   `tdpbf16ps`) and `avx512bf16.rs` (`vdpbf16ps`);
//! - widening kernels (`avx512.rs`, `avx2.rs`, `portable.rs`) widen each weight
//!   exactly to f32 and run f32 FMAs on f32 activations: bit-identical to their
//!   ISA's f32 kernel on the widened weights, and they halve the weight bytes streamed.
//!
//! Except AMX, each reuses its f32 sibling's tiles, epilogues and blocking loop
//! ([`drive`](super::drive) on `u16` panels); only the K loop, which reads the pairs,
//! is its own. Each sums an output in one fixed order whatever the row or panel split,
//! so its results are deterministic.

#[cfg(target_arch = "x86_64")]
pub(crate) mod amx;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512bf16;
pub(crate) mod portable;
