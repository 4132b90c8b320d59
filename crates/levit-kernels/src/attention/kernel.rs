//! Attention kernels as values, chosen by (precision, ISA) like the GEMM kernels
//! ([`crate::gemm::GemmKernel`]).
//!
//! An [`AttentionKernel`] is obtained only from [`AttentionKernel::select`] or
//! [`AttentionKernel::all`], which construct a kernel only where this CPU runs its
//! instructions: holding one is the proof that calling it is sound. Each kernel file
//! registers itself with one line in [`REGISTRY`]; the tests loop over
//! [`AttentionKernel::all`], each against the reference of its precision.
//!
//! The precision of an attention kernel is that of its two products (`q·kᵀ` and
//! `p·V`); q, k, v, the scores, the softmax and the output are f32 in every kernel.
//! A bf16 plan on a level without a bf16 attention kernel (below AMX: there
//! `vdpbf16ps` runs at half the f32 FMA rate on Intel, and these products are a small
//! part of the time on AMD) runs the f32 kernel of its vector family, which reads the
//! same f32 activations.

use core::fmt;
use core::ops::Range;

use super::{reference, AttentionArgs};
use crate::{Isa, Precision};

/// Computes query rows `rows` (all heads) of one attention call into `out` (those rows
/// only) with `scratch`.
///
/// # Safety
/// The kernel's ISA runs on this CPU; `args.check(full out, scratch.len())` holds;
/// `out` holds `rows.len() * heads * val_dim` floats; `rows` is non-empty and inside
/// `0..nq`; `nk > 0` and `heads > 0`.
pub(super) type RowsFn = unsafe fn(&AttentionArgs, &mut [f32], &mut [f32], Range<usize>);

/// One attention kernel: the precision of its products, the ISA level it needs, a
/// name that says both, and the code.
#[derive(Clone, Copy)]
pub struct AttentionKernel {
    pub(super) name: &'static str,
    pub(super) precision: Precision,
    pub(super) isa: Isa,
    pub(super) rows: RowsFn,
}

/// Every kernel, most capable first within each precision. A constructor returns
/// `None` where this CPU (or OS) cannot run the kernel.
const REGISTRY: &[fn() -> Option<AttentionKernel>] = &[
    #[cfg(target_arch = "x86_64")]
    super::avx512::f32_kernel,
    #[cfg(target_arch = "x86_64")]
    super::avx2::f32_kernel,
    super::portable::f32_kernel,
    #[cfg(target_arch = "x86_64")]
    super::amx_bf16::bf16_kernel,
];

/// The kernels of [`REGISTRY`] this CPU runs, built once.
fn available() -> &'static [AttentionKernel] {
    static ALL: std::sync::OnceLock<Vec<AttentionKernel>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| REGISTRY.iter().filter_map(|new| new()).collect())
}

impl AttentionKernel {
    /// Every kernel this CPU can run, in registry order.
    pub fn all() -> Vec<AttentionKernel> {
        available().to_vec()
    }

    /// The kernel a `precision` step runs on level `isa`: the best of that precision
    /// whose ISA the level includes (so a lower `LEVIT_ISA` lowers it too), else, for
    /// a reduced precision, the f32 kernel of the level (module doc). No allocation
    /// after the first call, so the hot path may call it per step.
    ///
    /// # Panics
    /// If `isa` is not supported by this CPU (there is always an f32 kernel for a
    /// supported level).
    pub fn select(precision: Precision, isa: Isa) -> AttentionKernel {
        // Without this, an unsupported level would find a lower level's kernel.
        assert!(
            isa.is_supported(),
            "attention: the {isa} path is not supported here"
        );
        let find = |p: Precision| {
            available()
                .iter()
                .find(|k| k.precision == p && isa.includes(k.isa))
                .copied()
        };
        find(precision)
            .or_else(|| find(Precision::F32))
            .expect("every supported level includes an f32 attention kernel")
    }

    /// Name, e.g. `avx512_f32_attention`, `amx_bf16_attention_16x16`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The precision of its products.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The ISA level it needs.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The whole call; `scratch` needs [`super::AttentionShape::scratch_len`].
    ///
    /// # Panics
    /// If the operands do not satisfy [`AttentionArgs::check`] (validated at plan
    /// time).
    pub fn run(&self, args: &AttentionArgs, out: &mut [f32], scratch: &mut [f32]) {
        self.run_rows(args, out, scratch, 0..args.shape.nq);
    }

    /// Computes only query rows `rows` (all heads). `out` holds just those rows
    /// (`rows.len() * heads * val_dim` floats), so threads can split one call over
    /// disjoint row ranges, each with its own scratch. Bit-identical to the same rows
    /// of [`AttentionKernel::run`].
    ///
    /// # Panics
    /// If the operands do not satisfy [`AttentionArgs::check`] for those rows, or
    /// `rows` is not inside `0..nq`.
    pub fn run_rows(
        &self,
        args: &AttentionArgs,
        out: &mut [f32],
        scratch: &mut [f32],
        rows: Range<usize>,
    ) {
        let s = args.shape;
        assert!(
            rows.start <= rows.end && rows.end <= s.nq,
            "attention rows {rows:?} outside 0..{}",
            s.nq
        );
        // `check` sizes the output for all rows; this call's output holds only `rows`.
        let rows_out = rows.len() * s.heads * s.val_dim;
        if let Err(e) = args.check(s.out_len(), scratch.len()) {
            panic!("attention called with inconsistent operands: {e}");
        }
        assert!(
            out.len() >= rows_out,
            "attention out: {} floats, need {rows_out}",
            out.len()
        );
        if rows.is_empty() {
            return;
        }
        if s.nk == 0 || s.heads == 0 {
            // Degenerate shapes (0/0 softmax or nothing to do): the reference defines them.
            reference::attention_rows(args, out, scratch, rows);
            return;
        }
        // SAFETY: a kernel is constructed only where its ISA runs (`REGISTRY`); the
        // checks above are the rest of `RowsFn`'s contract.
        unsafe { (self.rows)(args, out, scratch, rows) }
    }
}

impl fmt::Debug for AttentionKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl fmt::Display for AttentionKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}
