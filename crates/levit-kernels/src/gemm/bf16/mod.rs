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

/// Defines a kernel file's registry constructor `bf16_kernel()` for the tiles
/// `$tiles` run by the shared blocking loop ([`drive`](super::drive)) on bf16 panels:
/// the kernel `$name` of level `Isa::$isa`, split by its tall tile.
macro_rules! drive_kernel {
    ($name:literal, $isa:ident, $tiles:expr) => {
        /// The kernel, where this CPU runs it.
        pub(crate) fn bf16_kernel() -> Option<$crate::gemm::GemmKernel> {
            $crate::Isa::$isa
                .is_supported()
                .then_some($crate::gemm::GemmKernel {
                    name: $name,
                    precision: $crate::Precision::Bf16,
                    isa: $crate::Isa::$isa,
                    split: $crate::gemm::Split {
                        rows: $tiles.mr,
                        panels: $tiles.np,
                    },
                    block,
                })
        }

        /// # Safety
        /// As [`BlockFn`]($crate::gemm::kernel::BlockFn).
        unsafe fn block(
            args: &$crate::gemm::GemmArgs,
            c: *mut f32,
            c_len: usize,
            rows: std::ops::Range<usize>,
            panels: std::ops::Range<usize>,
        ) {
            let b = args.b.bf16().expect("bf16 kernel given other weights");
            // SAFETY: forwarded from `BlockFn`'s contract; `b` is `args.b`'s bf16
            // slice and the kernel was constructed only where `$isa` is supported.
            unsafe {
                $crate::gemm::drive(
                    &$tiles,
                    args,
                    b,
                    $crate::gemm::Segments::whole(args.k),
                    c,
                    c_len,
                    rows,
                    panels,
                )
            }
        }
    };
}
use drive_kernel;
