//! GEMM kernels as values, chosen by (precision, ISA) once when a model loads.
//!
//! A [`GemmKernel`] can only be obtained from [`GemmKernel::select`] or
//! [`GemmKernel::all`], which construct a kernel only where this CPU runs its
//! instructions: holding one is the proof that calling it is sound. Each kernel file
//! registers itself with one line in [`REGISTRY`]; tests loop over
//! [`GemmKernel::all`], so a new kernel is tested against the scalar reference the
//! moment it is registered.

use std::fmt;
use std::ops::Range;

use super::GemmArgs;
use crate::{Isa, Precision};

/// Work granularity a kernel prefers when a call is split between threads: row
/// ranges in multiples of `rows`, panel ranges in multiples of `panels` keep every
/// task on the kernel's full tiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    /// Rows of the tallest tile.
    pub rows: usize,
    /// Panels of the widest tile.
    pub panels: usize,
    /// Row ranges of a threaded split start at multiples of this: 1 for the register
    /// kernels (their driver balances its row tiles inside any range), the A tile's
    /// 16 rows for AMX (a range of 98 rows would end on a 2-row tile).
    pub row_step: usize,
}

/// Computes the block `rows` x (columns of `panels`) of one GEMM.
///
/// # Safety
/// `args` passed [`GemmArgs::check`]`(c_len)` and holds weights of the kernel's
/// precision; `c` is valid for reads and writes of `c_len` floats; the ranges are
/// non-empty and inside `0..m` and `0..panels(n)`; no other thread accesses the block
/// meanwhile; the kernel's ISA is supported (true for any constructed kernel).
pub(crate) type BlockFn = unsafe fn(&GemmArgs, *mut f32, usize, Range<usize>, Range<usize>);

/// One GEMM kernel: a precision, the ISA level it needs, a name that says both, and
/// the code.
#[derive(Clone, Copy)]
pub struct GemmKernel {
    pub(crate) name: &'static str,
    pub(crate) precision: Precision,
    pub(crate) isa: Isa,
    pub(crate) split: Split,
    pub(crate) block: BlockFn,
}

/// Every kernel, most capable first within each precision. A constructor returns
/// `None` where this CPU (or OS) cannot run the kernel.
const REGISTRY: &[fn() -> Option<GemmKernel>] = &[
    #[cfg(target_arch = "x86_64")]
    super::avx512::f32_kernel,
    #[cfg(target_arch = "x86_64")]
    super::avx2::f32_kernel,
    super::portable::f32_kernel,
    #[cfg(target_arch = "x86_64")]
    super::bf16::amx::bf16_kernel,
    #[cfg(target_arch = "x86_64")]
    super::bf16::avx512bf16::bf16_kernel,
    #[cfg(target_arch = "x86_64")]
    super::bf16::avx512::bf16_kernel,
    #[cfg(target_arch = "x86_64")]
    super::bf16::avx2::bf16_kernel,
    super::bf16::portable::bf16_kernel,
    #[cfg(target_arch = "x86_64")]
    super::int8::amx::int8_kernel,
    #[cfg(target_arch = "x86_64")]
    super::int8::avx512vnni::int8_kernel,
    #[cfg(target_arch = "x86_64")]
    super::int8::avx2::int8_kernel,
    super::int8::portable::int8_kernel,
];

/// The kernels of [`REGISTRY`] this CPU runs, built once (a constructor may ask the
/// OS for AMX state, so lookups should not rerun them).
fn available() -> &'static [GemmKernel] {
    static ALL: std::sync::OnceLock<Vec<GemmKernel>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| REGISTRY.iter().filter_map(|new| new()).collect())
}

impl GemmKernel {
    /// Every kernel this CPU can run, in registry order.
    pub fn all() -> Vec<GemmKernel> {
        available().to_vec()
    }

    /// The best kernel for `precision` whose ISA level `isa` includes (so a lower
    /// `LEVIT_ISA` also lowers the kernel), or `None` if there is none on this CPU.
    /// No allocation after the first call.
    pub fn select(precision: Precision, isa: Isa) -> Option<GemmKernel> {
        available()
            .iter()
            .find(|k| k.precision == precision && isa.includes(k.isa))
            .copied()
    }

    /// Name, e.g. `avx512_f32_12x32`: ISA, precision, tallest tile.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The weight precision it reads.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The ISA level it needs.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// How to split its calls between threads.
    pub fn split(&self) -> Split {
        self.split
    }

    /// `c = epilogue(a · b + bias)` for the whole output.
    ///
    /// # Panics
    /// If the operands do not satisfy [`GemmArgs::check`] or hold weights of another
    /// precision: the plan validates both once at load, so a panic here is a bug.
    pub fn run(&self, args: &GemmArgs, c: &mut [f32]) {
        self.run_block(args, c, 0..args.m, 0..crate::panels(args.n));
    }

    /// Computes the output block `rows` x (columns of `panels`), bit-identical to that
    /// block of [`GemmKernel::run`]. `c` is the whole output.
    ///
    /// # Panics
    /// As [`GemmKernel::run`], or if the ranges are not inside `0..m` and
    /// `0..panels(n)`.
    pub fn run_block(
        &self,
        args: &GemmArgs,
        c: &mut [f32],
        rows: Range<usize>,
        panels: Range<usize>,
    ) {
        // SAFETY: `c` is an exclusive borrow of `c.len()` floats.
        unsafe { self.run_block_raw(args, c.as_mut_ptr(), c.len(), rows, panels) }
    }

    /// [`GemmKernel::run_block`] on a raw output pointer, so that several threads can
    /// fill disjoint blocks of one output at once.
    ///
    /// # Safety
    /// `c` must be valid for reads and writes of `c_len` floats, and while this runs
    /// no other thread may access the elements of the block (rows `rows`, columns of
    /// `panels`). Other elements are never touched.
    ///
    /// # Panics
    /// As [`GemmKernel::run_block`].
    pub unsafe fn run_block_raw(
        &self,
        args: &GemmArgs,
        c: *mut f32,
        c_len: usize,
        rows: Range<usize>,
        panels: Range<usize>,
    ) {
        self.check(args, c_len)
            .unwrap_or_else(|e| panic!("gemm called with inconsistent operands: {e}"));
        assert!(
            rows.start <= rows.end && rows.end <= args.m,
            "gemm rows {rows:?} outside 0..{}",
            args.m
        );
        let np_total = crate::panels(args.n);
        assert!(
            panels.start <= panels.end && panels.end <= np_total,
            "gemm panels {panels:?} outside 0..{np_total}"
        );
        if rows.is_empty() || panels.is_empty() {
            return;
        }
        // SAFETY: `check` validated every index the block reads in `args`, the
        // precision, and that the block lies inside `c_len`; the ranges are non-empty
        // and in bounds; the caller guarantees `c` and exclusivity; the ISA is
        // supported since the kernel was constructed.
        unsafe { (self.block)(args, c, c_len, rows, panels) }
    }

    /// [`GemmArgs::check`] plus the weights' precision.
    pub fn check(&self, args: &GemmArgs, c_len: usize) -> Result<(), String> {
        if args.b.precision() != self.precision {
            return Err(format!(
                "{} weights given to the {} kernel {}",
                args.b.precision(),
                self.precision,
                self.name
            ));
        }
        args.check(c_len)
    }
}

impl fmt::Debug for GemmKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl PartialEq for GemmKernel {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for GemmKernel {}
