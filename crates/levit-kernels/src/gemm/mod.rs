//! Packed GEMM with fused epilogues: `C[m, n] = epilogue(A[m, :] · B[:, n] + bias[n])`.
//!
//! `B` (the weights) is pre-packed at conversion time in panels of [`NR`] columns:
//! `packed[p][k][j] = B[k][p*NR + j]` (zero-padded past `n`). `A` (activations) is read
//! in place, row `i` starting at `a[row(i) * lda]`, where `row(i)` is `i` or, for the
//! stride-2 query subsampling, `a_rows[i]` (a gather table computed at plan time).

//!
//! # Paths
//! Each SIMD path ([`Isa`]) has a register-tiled micro-kernel (`avx512.rs`, `avx2.rs`,
//! `portable.rs`; see their docs for the tile shapes) driven by one shared blocking
//! loop here:
//! - output columns are split into chunks of panels whose packed B fits in about
//!   half of L2 (`B_CHUNK_BYTES`), so B is streamed from L2, not memory, once per
//!   row tile;
//! - inside a chunk, rows are cut into balanced tiles of at most `MR` rows (196 rows
//!   with `MR = 12` become 12x4 + 11x13), and each row tile sweeps the chunk's panels
//!   with its A rows hot in L1/L2;
//! - a call of at most `WIDE_MAX_ROWS` rows uses the path's wide tiles if it has
//!   them (AVX-512: 6 rows x 4 panels; 49 rows become 6x4 + 5x5): with few rows the
//!   weights stream from memory once and more panel streams in flight fetch them faster.
//!
//! Each output element is one FMA chain over `k = 0..K` in order starting from 0,
//! whatever tile or block computes it, so a path's results do not depend on how the
//! work is split (rows, panels or threads): they are deterministic.

/// Defines a kernel file's registry constructor `$ctor()` for the tiles `$tiles` run
/// by the shared blocking loop ([`drive`]): the kernel `$name` of precision
/// `Precision::$precision` (weights read with `PackedB::$slice`) and level `Isa::$isa`,
/// split by its tall tile. Every register-tiled kernel, f32 or bf16, registers this way.
macro_rules! tiled_kernel {
    ($ctor:ident, $precision:ident, $slice:ident, $name:literal, $isa:ident, $tiles:expr) => {
        /// The kernel, where this CPU runs it.
        pub(crate) fn $ctor() -> Option<$crate::gemm::GemmKernel> {
            $crate::Isa::$isa
                .is_supported()
                .then_some($crate::gemm::GemmKernel {
                    name: $name,
                    precision: $crate::Precision::$precision,
                    isa: $crate::Isa::$isa,
                    split: $crate::gemm::Split {
                        rows: $tiles.mr,
                        panels: $tiles.np,
                        row_step: 1,
                    },
                    block: tiled_block,
                })
        }

        /// # Safety
        /// As [`BlockFn`]($crate::gemm::kernel::BlockFn).
        unsafe fn tiled_block(
            args: &$crate::gemm::GemmArgs,
            c: *mut f32,
            c_len: usize,
            rows: std::ops::Range<usize>,
            panels: std::ops::Range<usize>,
        ) {
            let b = args
                .b
                .$slice()
                .expect(concat!($name, " given weights of another precision"));
            // SAFETY: forwarded from `BlockFn`'s contract; `b` is `args.b`'s slice in
            // the kernel's precision and the kernel was constructed only where `$isa`
            // is supported.
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
pub(crate) use tiled_kernel;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod bf16;
mod int8;
mod kernel;
mod portable;
pub mod reference;

use std::ops::Range;

pub use kernel::{GemmKernel, Split};

use crate::{packed_len, Activation, Isa, Precision, NR};

/// The packed right operand (weights) of a GEMM, in the layout of its precision:
/// f32 panels `[panels(n)][k][NR]` ([`pack_b`]) or bf16 K-pair panels
/// `[panels(n)][KP/2][NR][2]` ([`crate::bf16::pack_b`]).
#[derive(Clone, Copy, Debug)]
pub enum PackedB<'a> {
    /// f32 panels.
    F32(&'a [f32]),
    /// bf16 K-pair panels (bit patterns).
    Bf16(&'a [u16]),
    /// int8 K-quad panels with per-column scales and compensations ([`crate::int8`]).
    Int8(crate::int8::WeightsRef<'a>),
}

impl<'a> PackedB<'a> {
    /// The precision of the stored weights.
    pub fn precision(&self) -> Precision {
        match self {
            PackedB::F32(_) => Precision::F32,
            PackedB::Bf16(_) => Precision::Bf16,
            PackedB::Int8(_) => Precision::Int8,
        }
    }

    /// Values stored (in the element type of the precision).
    pub fn len(&self) -> usize {
        match self {
            PackedB::F32(b) => b.len(),
            PackedB::Bf16(b) => b.len(),
            PackedB::Int8(b) => b.data.len(),
        }
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values a `[k, n]` operand needs in this precision.
    pub fn needed(&self, k: usize, n: usize) -> usize {
        match self {
            PackedB::F32(_) => packed_len(k, n),
            PackedB::Bf16(_) => crate::bf16::packed_len(k, n),
            PackedB::Int8(_) => crate::int8::packed_len(k, n),
        }
    }

    /// The f32 panels, if that is the precision.
    pub fn f32(&self) -> Option<&'a [f32]> {
        match *self {
            PackedB::F32(b) => Some(b),
            _ => None,
        }
    }

    /// The bf16 panels, if that is the precision.
    pub fn bf16(&self) -> Option<&'a [u16]> {
        match *self {
            PackedB::Bf16(b) => Some(b),
            _ => None,
        }
    }

    /// The int8 weights, if that is the precision.
    pub fn int8(&self) -> Option<crate::int8::WeightsRef<'a>> {
        match *self {
            PackedB::Int8(b) => Some(b),
            _ => None,
        }
    }

    /// `B[kk][col]` as an f32 (bf16 widened exactly, int8 dequantized): for references
    /// and tests.
    pub fn at(&self, k: usize, kk: usize, col: usize) -> f32 {
        let (p, j) = (col / NR, col % NR);
        match *self {
            PackedB::F32(b) => b[(p * k + kk) * NR + j],
            PackedB::Bf16(b) => crate::bf16::from_bf16(crate::bf16::packed_at(b, k, p, kk, j)),
            PackedB::Int8(b) => b.dequantized(k, kk, col),
        }
    }
}

/// What happens to an output tile before it is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epilogue {
    /// `C = act(acc + bias)`.
    BiasAct(Activation),
    /// `C = C + (acc + bias)`: the residual add of a LeViT block, in place.
    BiasResidual,
}

/// Operands of one GEMM call. Shapes are checked by [`GemmArgs::check`] (debug builds
/// assert it inside the kernels; the plan checks it once at load).
#[derive(Clone, Copy, Debug)]
pub struct GemmArgs<'a> {
    /// Rows of the output.
    pub m: usize,
    /// Reduction length.
    pub k: usize,
    /// Columns of the output.
    pub n: usize,
    /// Left operand, row-major with row stride `lda`.
    pub a: &'a [f32],
    /// Row stride of `a` in f32.
    pub lda: usize,
    /// Optional row gather: output row `i` reads `a` row `a_rows[i]`.
    pub a_rows: Option<&'a [u32]>,
    /// Packed right operand.
    pub b: PackedB<'a>,
    /// Bias, at least `n` long.
    pub bias: &'a [f32],
    /// Row stride of the output in f32.
    pub ldc: usize,
    /// Fused epilogue.
    pub epilogue: Epilogue,
}

impl GemmArgs<'_> {
    /// Validates every index the kernels will touch for an output of `c_len` floats.
    pub fn check(&self, c_len: usize) -> Result<(), String> {
        let GemmArgs { m, k, n, .. } = *self;
        if m == 0 || n == 0 {
            return Ok(());
        }
        check_b_and_c(m, k, n, self.b, self.bias, self.ldc, c_len)?;
        if k > 0 && self.lda < k {
            return Err(format!("lda {} shorter than k {k}", self.lda));
        }
        self.check_a_rows(k)
    }

    /// The A part of [`GemmArgs::check`] (`m > 0`): the `span` floats from the start of
    /// every row are in `a`.
    fn check_a_rows(&self, span: usize) -> Result<(), String> {
        let m = self.m;
        let max_row = match self.a_rows {
            Some(rows) => {
                if rows.len() < m {
                    return Err(format!("row table has {} entries, need {m}", rows.len()));
                }
                rows[..m].iter().copied().max().unwrap_or(0) as usize
            }
            None => m - 1,
        };
        if span > 0 && self.a.len() < max_row * self.lda + span {
            return Err(format!(
                "A of {} floats with lda {} too small for row {max_row} spanning {span}",
                self.a.len(),
                self.lda
            ));
        }
        Ok(())
    }

    /// Offset of the first element of output row `i`'s A row.
    #[inline]
    pub fn a_row_offset(&self, i: usize) -> usize {
        match self.a_rows {
            Some(rows) => rows[i] as usize * self.lda,
            None => i * self.lda,
        }
    }
}

/// The checks of B, bias and C shared by [`GemmArgs`] and [`TapsArgs`] (`m, n > 0`).
fn check_b_and_c(
    m: usize,
    k: usize,
    n: usize,
    b: PackedB,
    bias: &[f32],
    ldc: usize,
    c_len: usize,
) -> Result<(), String> {
    if let PackedB::Int8(b) = b {
        b.check(k, n)?;
    }
    if b.len() < b.needed(k, n) {
        return Err(format!(
            "packed {} B has {} values, need {}",
            b.precision(),
            b.len(),
            b.needed(k, n)
        ));
    }
    if bias.len() < n {
        return Err(format!("bias has {} floats, need {n}", bias.len()));
    }
    if ldc < n || c_len < (m - 1) * ldc + n {
        return Err(format!(
            "output of {c_len} floats with ldc {ldc} too small for {m}x{n}"
        ));
    }
    Ok(())
}

/// Runs the GEMM with the best kernel of `isa` for the precision of `args.b`
/// ([`GemmKernel::select`]). The engine selects its kernels once at load and calls
/// [`GemmKernel::run`]; this is the convenience for tests and tools.
///
/// # Panics
/// If the operands do not satisfy [`GemmArgs::check`] (callers, the plan, validate
/// shapes once at load, so a panic here is a bug, never bad user input), or `isa` has
/// no kernel for that precision on this CPU.
pub fn gemm(isa: Isa, args: &GemmArgs, c: &mut [f32]) {
    kernel_for(isa, args).run(args, c);
}

/// Computes only the output columns of `panels` (panel `p` is columns
/// `p*NR .. min((p+1)*NR, n)`), for all rows. Results are bit-identical to the same
/// columns of [`gemm`].
///
/// # Panics
/// As [`gemm`], or if `panels` is not inside `0..panels(n)`.
pub fn gemm_panels(isa: Isa, args: &GemmArgs, c: &mut [f32], panels: Range<usize>) {
    kernel_for(isa, args).run_block(args, c, 0..args.m, panels);
}

/// Computes only output rows `rows`, all columns. Bit-identical to those rows of
/// [`gemm`].
///
/// # Panics
/// As [`gemm`], or if `rows` is not inside `0..m`.
pub fn gemm_rows(isa: Isa, args: &GemmArgs, c: &mut [f32], rows: Range<usize>) {
    kernel_for(isa, args).run_block(args, c, rows, 0..crate::panels(args.n));
}

/// Computes the output block `rows` x (columns of `panels`). Bit-identical to that
/// block of [`gemm`]. `c` is the whole output, indexed as in [`gemm`].
///
/// # Panics
/// As [`gemm`], or if the ranges are not inside `0..m` and `0..panels(n)`.
pub fn gemm_block(
    isa: Isa,
    args: &GemmArgs,
    c: &mut [f32],
    rows: Range<usize>,
    panels: Range<usize>,
) {
    kernel_for(isa, args).run_block(args, c, rows, panels);
}

fn kernel_for(isa: Isa, args: &GemmArgs) -> GemmKernel {
    let precision = args.b.precision();
    GemmKernel::select(precision, isa)
        .unwrap_or_else(|| panic!("gemm: no {precision} kernel for the {isa} path here"))
}

/// Bytes of packed B one row tile sweeps before moving to the next row tile.
const B_CHUNK_BYTES: usize = 384 * 1024;

/// Tallest row tile of any path.
const MAX_MR: usize = 12;

/// A rows of a tile: row `r`'s values are `a[r][0..k]`.
pub(crate) type RowPtrs = [*const f32; MAX_MR];

/// A values of a tile read through a tap table: row `r`'s `k`-th value is
/// `base[koff[k] + 2r]` (see [`TapsArgs`]).
#[derive(Clone, Copy)]
pub(crate) struct Taps {
    pub(crate) base: *const f32,
    pub(crate) koff: *const u32,
}

/// One micro-kernel call: `mr` rows of A (`a`) times `np` consecutive panels.
///
/// Contract (what a tile kernel may assume):
/// - the A values of rows `r < mr` and `k` steps `kk < k` are readable (`RowPtrs`:
///   `a[r]` points to `k` floats; `Taps`: `base[koff[kk] + 2r]`, `koff` has `k`
///   entries);
/// - `b` points to `np` panels of `k * NR` readable floats, `panel_stride` apart;
/// - `bias` points to `cols` readable floats, with `(np-1)*NR < cols <= np*NR`;
/// - for `r < mr`, `c + r*ldc` points to `cols` floats that the kernel may read and
///   write and that nothing else accesses meanwhile.
pub(crate) struct Tile<A = RowPtrs, W = f32> {
    pub(crate) a: A,
    /// Packed B in its precision's element type (`f32`, or `u16` bf16 pairs).
    pub(crate) b: *const W,
    pub(crate) panel_stride: usize,
    pub(crate) k: usize,
    /// K steps per run of A (`>= k`: one contiguous run; only the AVX-512 row kernels
    /// take several, see [`gemm_segmented`]).
    pub(crate) seg_len: usize,
    /// Distance in A between the starts of consecutive runs of a row.
    pub(crate) seg_stride: usize,
    pub(crate) bias: *const f32,
    pub(crate) c: *mut f32,
    pub(crate) ldc: usize,
    pub(crate) cols: usize,
    pub(crate) epilogue: Epilogue,
}

/// A register-tiled micro-kernel family and its tile limits, run by [`drive`]. `W`
/// is the element type of its packed B.
pub(crate) struct Tiles<W> {
    pub(crate) mr: usize,
    pub(crate) np: usize,
    /// Tile limits for calls of at most [`WIDE_MAX_ROWS`] rows, if the path has them.
    pub(crate) wide: Option<(usize, usize)>,
    /// Elements of B per panel for a reduction of `k`.
    pub(crate) panel_len: fn(usize) -> usize,
    pub(crate) run: unsafe fn(usize, usize, &Tile<RowPtrs, W>),
}

/// f32 panels hold `k * NR` floats.
pub(crate) const fn f32_panel_len(k: usize) -> usize {
    k * NR
}

/// Calls with at most this many rows use the path's wide tiles (see `avx512.rs`).
const WIDE_MAX_ROWS: usize = 64;

/// The blocking loop shared by all paths (see the module doc).
///
/// # Safety
/// `args` passed `check(c_len)` for a `c` valid for `c_len` floats, `b` is `args.b`'s
/// slice in the kernel's precision, the ranges are non-empty and in bounds, the
/// kernel's ISA is supported, and nothing else accesses the block meanwhile.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn drive<W>(
    kernel: &Tiles<W>,
    args: &GemmArgs,
    b: &[W],
    segments: Segments,
    c: *mut f32,
    c_len: usize,
    rows: Range<usize>,
    panels: Range<usize>,
) {
    debug_assert!(kernel.mr <= MAX_MR);
    let GemmArgs { k, n, ldc, .. } = *args;
    // Wide tiles help when B streams from memory (the segmented convolution tiles,
    // whose small weights stay cached, have none).
    let (mr_max, np_max) = match kernel.wide {
        Some(wide) if rows.len() <= WIDE_MAX_ROWS => wide,
        _ => (kernel.mr, kernel.np),
    };
    let panel_len = (kernel.panel_len)(k);
    let panel_bytes = panel_len * core::mem::size_of::<W>();
    let chunk = (B_CHUNK_BYTES / panel_bytes.max(1)).max(np_max) / np_max * np_max;
    let tiles = rows.len().div_ceil(mr_max);
    let (base, extra) = (rows.len() / tiles, rows.len() % tiles);
    let mut p0 = panels.start;
    while p0 < panels.end {
        let p_end = (p0 + chunk).min(panels.end);
        let mut i = rows.start;
        for t in 0..tiles {
            let mr = base + usize::from(t < extra);
            let mut a = [args.a.as_ptr(); MAX_MR];
            if k > 0 {
                for (r, a) in a.iter_mut().enumerate().take(mr) {
                    // SAFETY: `check` proved row `i + r`'s A row (k floats) is in `args.a`.
                    *a = unsafe { args.a.as_ptr().add(args.a_row_offset(i + r)) };
                }
            }
            let mut p = p0;
            while p < p_end {
                let np = np_max.min(p_end - p);
                let cols = n.min((p + np) * NR) - p * NR;
                debug_assert!((p + np) * panel_len <= b.len() && p * NR + cols <= n);
                debug_assert!((i + mr - 1) * ldc + p * NR + cols <= c_len);
                debug_assert!(
                    k == 0
                        || (i..i + mr).all(|r| {
                            let span = (k / segments.len - 1) * segments.stride + segments.len;
                            args.a_row_offset(r) + span <= args.a.len()
                        })
                );
                // SAFETY: p < panels(n) and `check` proved B holds panels(n) panels of
                // `panel_len` values and bias n floats; row i < m and column p*NR < n,
                // so the C offset is inside `c_len` (>= (m-1)*ldc + n).
                let tile = unsafe {
                    Tile {
                        a,
                        b: b.as_ptr().add(p * panel_len),
                        panel_stride: panel_len,
                        k,
                        seg_len: segments.len,
                        seg_stride: segments.stride,
                        bias: args.bias.as_ptr().add(p * NR),
                        c: c.add(i * ldc + p * NR),
                        ldc,
                        cols,
                        epilogue: args.epilogue,
                    }
                };
                // SAFETY: the tile meets `Tile`'s contract (pointers above; cols in
                // ((np-1)*NR, np*NR] since panel p+np-1 exists); mr and np are within
                // the path's tall or wide limits; the ISA was checked when the kernel was
                // constructed.
                unsafe { (kernel.run)(mr, np, &tile) };
                p += np;
            }
            i += mr;
        }
        p0 = p_end;
    }
}

/// How a row of A covers K: runs of `len` floats, `stride` apart (one run of `k`
/// floats for a plain GEMM).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segments {
    /// K steps per run.
    pub len: usize,
    /// Distance in A between the starts of consecutive runs.
    pub stride: usize,
}

impl Segments {
    /// One contiguous run of `k` floats.
    pub const fn whole(k: usize) -> Segments {
        Segments { len: k, stride: k }
    }
}

/// The paths whose kernels read A rows in several runs ([`gemm_segmented`], f32).
pub fn segmented_supported(isa: Isa) -> bool {
    cfg!(target_arch = "x86_64") && isa.vector() == Isa::Avx512 && isa.is_supported()
}

/// [`gemm`] with each A row made of `k / segments.len` runs of `segments.len` floats,
/// `segments.stride` apart: row `i`, step `s*len + j` reads `a[row(i) + s*stride + j]`
/// (rows may overlap). A 3x3 convolution over an HWC image reads its rows this way
/// straight from the image, one run per kernel row, with no im2col copy.
/// Bit-identical to [`gemm`] on the gathered rows.
///
/// # Panics
/// If `isa` is not [`segmented_supported`], `segments.len` does not divide `k`, or the
/// operands do not fit (as [`GemmArgs::check`], each row spanning
/// `(k/len - 1)*stride + len` floats of `a`).
pub fn gemm_segmented(isa: Isa, args: &GemmArgs, segments: Segments, c: &mut [f32]) {
    assert!(segmented_supported(isa), "gemm_segmented: no {isa} kernel");
    let GemmArgs { m, k, n, .. } = *args;
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        k > 0 && segments.len > 0 && k.is_multiple_of(segments.len),
        "gemm_segmented: runs of {} do not divide k = {k}",
        segments.len
    );
    let span = (k / segments.len - 1) * segments.stride + segments.len;
    let b = args.b.f32().expect("gemm_segmented: f32 weights only");
    if let Err(e) = check_b_and_c(m, k, n, args.b, args.bias, args.ldc, c.len())
        .and_then(|()| args.check_a_rows(span))
    {
        panic!("gemm_segmented called with inconsistent operands: {e}");
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the checks above cover B, bias, C and every run of every A row; `c` is
    // an exclusive borrow; the ISA was checked by `segmented_supported`.
    unsafe {
        drive(
            &avx512::F32_SEGMENTED_TILES,
            args,
            b,
            segments,
            c.as_mut_ptr(),
            c.len(),
            0..m,
            0..crate::panels(n),
        )
    }
}

/// A GEMM whose left operand is read through a tap table instead of rows:
/// `A[i][k] = a[koff[k] + 2*i]`. The first (RGB) convolution uses it to read its 27
/// taps per output pixel straight from zero-padded image rows, with no im2col copy.
#[derive(Clone, Copy, Debug)]
pub struct TapsArgs<'a> {
    /// Rows of the output (output pixels, stepping 2 floats through `a`).
    pub m: usize,
    /// Reduction length (`koff.len()`).
    pub k: usize,
    /// Columns of the output.
    pub n: usize,
    /// The padded image rows the taps read.
    pub a: &'a [f32],
    /// Offset in `a` of row 0's value `k`.
    pub koff: &'a [u32],
    /// Packed right operand, f32 `[panels(n)][k][NR]`.
    pub b: &'a [f32],
    /// Bias, at least `n` long.
    pub bias: &'a [f32],
    /// Row stride of the output in f32.
    pub ldc: usize,
    /// Fused epilogue.
    pub epilogue: Epilogue,
}

impl TapsArgs<'_> {
    /// The paths with a tap-table kernel (others build im2col rows instead).
    pub fn supported(isa: Isa) -> bool {
        cfg!(target_arch = "x86_64") && isa.vector() == Isa::Avx512 && isa.is_supported()
    }

    /// Validates every index the kernel will touch for an output of `c_len` floats.
    pub fn check(&self, c_len: usize) -> Result<(), String> {
        let TapsArgs { m, k, n, .. } = *self;
        if m == 0 || n == 0 {
            return Ok(());
        }
        if self.koff.len() < k {
            return Err(format!(
                "tap table has {} entries, need {k}",
                self.koff.len()
            ));
        }
        check_b_and_c(m, k, n, PackedB::F32(self.b), self.bias, self.ldc, c_len)?;
        let last = self.koff[..k].iter().copied().max().unwrap_or(0) as usize + 2 * (m - 1);
        if k > 0 && last >= self.a.len() {
            return Err(format!("taps read a[{last}] of {} floats", self.a.len()));
        }
        Ok(())
    }
}

/// Runs a [`TapsArgs`] GEMM on `isa`, which must be one [`TapsArgs::supported`] lists.
///
/// # Panics
/// If the operands do not satisfy [`TapsArgs::check`] or `isa` has no tap kernel.
pub fn gemm_taps(isa: Isa, args: &TapsArgs, c: &mut [f32]) {
    assert!(TapsArgs::supported(isa), "gemm_taps: no {isa} kernel");
    if let Err(e) = args.check(c.len()) {
        panic!("gemm_taps called with inconsistent operands: {e}");
    }
    if args.m == 0 || args.n == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let TapsArgs { m, k, n, ldc, .. } = *args;
        let tiles = m.div_ceil(avx512::MR);
        let (base, extra) = (m / tiles, m % tiles);
        let np_total = crate::panels(n);
        let mut i = 0;
        for t in 0..tiles {
            let mr = base + usize::from(t < extra);
            let mut p = 0;
            while p < np_total {
                let np = avx512::NP.min(np_total - p);
                let cols = n.min((p + np) * NR) - p * NR;
                // SAFETY: `check` proved B holds panels(n) panels of k*NR floats, bias n
                // floats, the output (m-1)*ldc + n floats and every tap of rows < m in
                // `a`; rows i..i+mr < m and panels p..p+np < panels(n) are in bounds.
                let tile = unsafe {
                    Tile {
                        a: Taps {
                            base: args.a.as_ptr().add(2 * i),
                            koff: args.koff.as_ptr(),
                        },
                        b: args.b.as_ptr().add(p * k * NR),
                        panel_stride: k * NR,
                        k,
                        seg_len: k,
                        seg_stride: 0,
                        bias: args.bias.as_ptr().add(p * NR),
                        c: c.as_mut_ptr().add(i * ldc + p * NR),
                        ldc,
                        cols,
                        epilogue: args.epilogue,
                    }
                };
                // SAFETY: the tile meets `Tile`'s contract (above); mr <= MR, np <= NP;
                // the AVX-512 path was checked by `supported`.
                unsafe { avx512::taps::run_tile(mr, np, &tile) };
                p += np;
            }
            i += mr;
        }
    }
}

/// Packs a row-major `B [k, n]` into panels (used by tests and by tools; the engine's
/// weights come packed from the file).
pub fn pack_b(b: &[f32], k: usize, n: usize) -> Vec<f32> {
    assert!(b.len() >= k * n);
    let mut out = vec![0.0; packed_len(k, n)];
    for p in 0..crate::panels(n) {
        for kk in 0..k {
            for j in 0..NR {
                let col = p * NR + j;
                if col < n {
                    out[(p * k + kk) * NR + j] = b[kk * n + col];
                }
            }
        }
    }
    out
}
