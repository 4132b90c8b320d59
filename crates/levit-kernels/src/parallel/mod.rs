//! Splitting one kernel call over threads without splitting any reduction.
//!
//! The kernels stay thread-agnostic: the caller supplies an [`Executor`] that runs
//! `n` independent tasks (inline, or on a pool). Work is cut along output rows and
//! panels only, and every output element is computed by exactly one task with the
//! same instruction sequence as a single-threaded call, so results are bit-identical
//! for any number of tasks.

mod pool;

use core::ops::Range;

pub use pool::SpinPool;

use crate::attention::{self, AttentionArgs, AttentionKernel};
use crate::conv::{self, ConvInput, ConvWeights};
use crate::gemm::{GemmArgs, GemmKernel};
use crate::panels;

/// Runs `tasks` independent closures `f(0) .. f(tasks-1)`, in any order, possibly
/// concurrently, and returns when all are done.
pub trait Executor {
    /// How many tasks are worth creating (the number of threads).
    fn width(&self) -> usize;
    /// Runs `f(i)` for every `i < tasks`.
    fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync));
}

/// Runs everything on the calling thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct Inline;

impl Executor for Inline {
    fn width(&self) -> usize {
        1
    }
    fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        (0..tasks).for_each(f);
    }
}

/// Part `i` of `0..len` cut into `parts` nearly equal ranges whose boundaries are
/// multiples of `align` (except the end).
pub fn split_range(len: usize, parts: usize, align: usize, i: usize) -> Range<usize> {
    let units = len.div_ceil(align);
    let (base, extra) = (units / parts, units % parts);
    let start = i * base + i.min(extra);
    let end = start + base + usize::from(i < extra);
    (start * align).min(len)..(end * align).min(len)
}

/// A raw output pointer that tasks may share because each writes a disjoint block.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32, usize);

impl SharedOut {
    /// The pointer and length. A method (not field access) so closures capture the
    /// whole `Sync` wrapper rather than the bare pointer.
    fn get(&self) -> (*mut f32, usize) {
        (self.0, self.1)
    }
}

// SAFETY: only handed to tasks that write disjoint elements (argued at each use).
unsafe impl Sync for SharedOut {}
// SAFETY: as above.
unsafe impl Send for SharedOut {}

/// Rows each thread must get before a GEMM is split by rows even when it has panels
/// enough for every thread ([`gemm`]).
const ROWS_PER_THREAD: usize = 64;

/// [`GemmKernel::run`] split over `exec`'s threads: by panels when there are enough
/// of them, else by rows, in the kernel's own tile granularity. Bit-identical to the
/// single-threaded call.
pub fn gemm(kernel: &GemmKernel, args: &GemmArgs, c: &mut [f32], exec: &dyn Executor) {
    let threads = exec.width();
    let np = panels(args.n);
    let tile = kernel.split();
    if threads <= 1 || args.m == 0 || np == 0 || (np < 2 && args.m < 2 * tile.rows) {
        return kernel.run(args, c);
    }
    // Each task checks again inside `run_block_raw`; checking here first makes a
    // planner bug panic on the caller's thread with the real message, not in a worker.
    if let Err(e) = kernel.check(args, c.len()) {
        panic!("gemm called with inconsistent operands: {e}");
    }
    // Rows when every thread gets at least `ROWS_PER_THREAD` rows and two tallest row
    // tiles: a panel split makes every thread convert (bf16) or quantize (int8) all
    // of A and finish with the same row-tile overheads, which at 196 rows cost more
    // than each thread streaming all of B from the shared L3 (measured on the AMX
    // Xeon, 2 threads, LeViT-256 bf16: 6.0 -> 4.3 ms; LeViT-384 int8: 11.0 -> 6.7 ms).
    // Fewer rows (the 49- and 16-token stages, whose weights stream from memory):
    // panels, when each thread gets at least one widest tile, so each weight is read
    // by one thread; else rows.
    let rows_first = args.m >= ROWS_PER_THREAD * threads && args.m >= 2 * tile.rows * threads;
    let by_panels = !rows_first && (np >= tile.panels * threads || args.m < tile.rows * threads);
    let tasks = if by_panels {
        threads.min(np)
    } else {
        threads.min(args.m.div_ceil(tile.rows))
    };
    // Balance first: equal panel counts (whole wide tiles when they divide evenly, so
    // every task keeps the widest tile), and rows cut at the kernel's `row_step` (the
    // register kernels' driver balances its row tiles inside any range). Cutting 6
    // panels into pairs would give 4+2.
    let panel_align = if np.is_multiple_of(tile.panels * tasks) {
        tile.panels
    } else {
        1
    };
    let out = SharedOut(c.as_mut_ptr(), c.len());
    exec.run(tasks, &|i| {
        let (rows, cols) = if by_panels {
            (0..args.m, split_range(np, tasks, panel_align, i))
        } else {
            (split_range(args.m, tasks, tile.row_step, i), 0..np)
        };
        let (ptr, len) = out.get();
        // SAFETY: `out` is the exclusive borrow `c` (valid for `c.len()` floats, which
        // `check` proved large enough). Tasks get disjoint row or panel ranges, so
        // no element is touched by two tasks, and `c` outlives `exec.run`.
        unsafe { kernel.run_block_raw(args, ptr, len, rows, cols) };
    });
}

/// [`conv::conv_3x3_s2_rows`] split over `exec`'s threads by output image rows: each
/// task builds the column rows of its image rows in its own part of `cols` and runs
/// their GEMM, so the column matrix never crosses cores. `out` holds the output of
/// `oy_rows` only. Bit-identical to the single-threaded call.
///
/// # Panics
/// As [`conv::conv_3x3_s2_rows`].
pub fn conv_3x3_s2_rows(
    kernel: &GemmKernel,
    src: &ConvInput,
    w: &ConvWeights,
    oy_rows: Range<usize>,
    cols: &mut [f32],
    out: &mut [f32],
    exec: &dyn Executor,
) {
    let g = src.geometry;
    let tasks = exec.width().min(oy_rows.len());
    if exec.width() <= 1 {
        return conv::conv_3x3_s2_rows(kernel, src, w, oy_rows, cols, out);
    }
    if tasks <= 1 {
        // One image row for several threads: copy on this thread, split the GEMM.
        let m = oy_rows.len() * g.wout();
        conv::im2col_3x3_s2_rows(src.image, src.layout, g, oy_rows, cols);
        return gemm(kernel, &w.gemm_args(g, m, cols), out, exec);
    }
    let (cols_row, out_row) = (g.wout() * g.k(), g.wout() * w.cout);
    assert!(
        cols.len() >= oy_rows.len() * cols_row && out.len() >= oy_rows.len() * out_row,
        "conv: column or output buffer too short"
    );
    let cols = SharedOut(cols.as_mut_ptr(), oy_rows.len() * cols_row);
    let out = SharedOut(out.as_mut_ptr(), oy_rows.len() * out_row);
    exec.run(tasks, &|i| {
        let part = split_range(oy_rows.len(), tasks, 1, i);
        let ((cols, _), (out, _)) = (cols.get(), out.get());
        // SAFETY: task `i` gets the column rows and output rows of image rows `part`:
        // disjoint across tasks and inside the lengths asserted above, of exclusive
        // borrows that outlive `exec.run`.
        let (cols, out) = unsafe {
            (
                core::slice::from_raw_parts_mut(
                    cols.add(part.start * cols_row),
                    part.len() * cols_row,
                ),
                core::slice::from_raw_parts_mut(
                    out.add(part.start * out_row),
                    part.len() * out_row,
                ),
            )
        };
        let rows = oy_rows.start + part.start..oy_rows.start + part.end;
        conv::conv_3x3_s2_rows(kernel, src, w, rows, cols, out);
    });
}

/// [`AttentionKernel::run`] split over `exec`'s threads by query rows; `scratch` holds
/// one [`attention::AttentionShape::scratch_len`] region per task
/// ([`attention_scratch_len`]). Bit-identical to the single-threaded call.
pub fn attention(
    kernel: &AttentionKernel,
    args: &AttentionArgs,
    out: &mut [f32],
    scratch: &mut [f32],
    exec: &dyn Executor,
) {
    let s = args.shape;
    let per_task = s.scratch_len();
    let tasks = exec.width().min(s.nq.div_ceil(attention::QB)).max(1);
    if tasks <= 1 {
        return kernel.run(args, out, scratch);
    }
    let width = s.heads * s.val_dim;
    assert!(
        out.len() >= s.nq * width && scratch.len() >= tasks * per_task,
        "parallel attention: output or scratch too small"
    );
    let out = SharedOut(out.as_mut_ptr(), s.nq * width);
    let scratch = SharedOut(scratch.as_mut_ptr(), tasks * per_task);
    exec.run(tasks, &|i| {
        let rows = split_range(s.nq, tasks, attention::QB, i);
        let ((out, _), (scratch, _)) = (out.get(), scratch.get());
        // SAFETY: task `i` gets output rows `rows` (disjoint across tasks, inside the
        // `nq * width` floats asserted above) and scratch region `i` (disjoint, inside
        // `tasks * per_task`); both buffers are exclusive borrows that outlive `run`.
        let (o, sc) = unsafe {
            (
                core::slice::from_raw_parts_mut(out.add(rows.start * width), rows.len() * width),
                core::slice::from_raw_parts_mut(scratch.add(i * per_task), per_task),
            )
        };
        kernel.run_rows(args, o, sc, rows);
    });
}

/// Attention of `images` images of one shape, split over `exec`'s threads by image:
/// image `i` reads `args(i)` and writes `out[i * out_stride..]` (`nq` rows of
/// `heads * val_dim`); each task runs its images one after another in its own
/// scratch region ([`attention_scratch_len`]). Every image is one single-threaded
/// kernel call, so the result is bit-identical to [`attention()`] on each image.
///
/// # Panics
/// If `out` or `scratch` is too small, or the images' shapes differ.
pub fn attention_images<'a>(
    kernel: &AttentionKernel,
    images: usize,
    args: &(dyn Fn(usize) -> AttentionArgs<'a> + Sync),
    out: &mut [f32],
    out_stride: usize,
    scratch: &mut [f32],
    exec: &dyn Executor,
) {
    if images == 0 {
        return;
    }
    let s = args(0).shape;
    let (per_task, width) = (s.scratch_len(), s.heads * s.val_dim);
    let image_len = s.nq * width;
    let tasks = exec.width().min(images).max(1);
    assert!(
        image_len <= out_stride
            && out.len() >= (images - 1) * out_stride + image_len
            && scratch.len() >= tasks * per_task,
        "attention over images: output or scratch too small"
    );
    let out = SharedOut(out.as_mut_ptr(), out.len());
    let scratch = SharedOut(scratch.as_mut_ptr(), tasks * per_task);
    exec.run(tasks, &|t| {
        let ((out, _), (scratch, _)) = (out.get(), scratch.get());
        // SAFETY: scratch region `t` is disjoint across tasks and inside
        // `tasks * per_task` floats (asserted), of an exclusive borrow that outlives `run`.
        let sc = unsafe { core::slice::from_raw_parts_mut(scratch.add(t * per_task), per_task) };
        for i in split_range(images, tasks, 1, t) {
            let image = args(i);
            assert_eq!(image.shape, s, "attention over images of different shapes");
            // SAFETY: image `i`'s output rows `i * out_stride .. + image_len` lie inside
            // `out` (asserted) and do not overlap another image's (`image_len <=
            // out_stride`); each image belongs to exactly one task; `out` is an
            // exclusive borrow that outlives `run`.
            let o = unsafe { core::slice::from_raw_parts_mut(out.add(i * out_stride), image_len) };
            kernel.run(&image, o, sc);
        }
    });
}

/// Scratch floats [`attention()`] needs for `threads` threads.
pub fn attention_scratch_len(shape: &attention::AttentionShape, threads: usize) -> usize {
    shape.scratch_len() * threads.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Isa;

    #[test]
    fn split_conv_equals_the_single_threaded_one() {
        use crate::conv::{ConvGeometry, ImageLayout};
        use crate::{gemm::Epilogue, Activation};
        let pool = SpinPool::new(3).unwrap();
        let kernel = GemmKernel::select(crate::Precision::F32, Isa::supported()[0]).unwrap();
        for (layout, cin, hw, cout) in
            [(ImageLayout::Chw, 3, 23, 16), (ImageLayout::Hwc, 5, 14, 20)]
        {
            let g = ConvGeometry {
                cin,
                hin: hw,
                win: hw + 1,
            };
            let input: Vec<f32> = (0..g.input_len())
                .map(|i| (i % 17) as f32 * 0.25 - 2.0)
                .collect();
            let b: Vec<f32> = (0..g.k() * cout)
                .map(|i| (i % 13) as f32 * 0.1 - 0.6)
                .collect();
            let weight = crate::gemm::pack_b(&b, g.k(), cout);
            let bias: Vec<f32> = (0..cout).map(|i| i as f32 * 0.01).collect();
            let w = ConvWeights {
                weight: crate::gemm::PackedB::F32(&weight),
                bias: &bias,
                cout,
                epilogue: Epilogue::BiasAct(Activation::HardSwish),
            };
            for rows in [0..g.hout(), 1..2, 2..g.hout() - 1] {
                let (n_cols, n_out) = (rows.len() * g.wout() * g.k(), rows.len() * g.wout() * cout);
                let src = ConvInput {
                    image: &input,
                    layout,
                    geometry: g,
                };
                let mut want = vec![f32::NAN; n_out];
                let mut cols = vec![f32::NAN; n_cols];
                conv::conv_3x3_s2_rows(&kernel, &src, &w, rows.clone(), &mut cols, &mut want);
                let mut got = vec![f32::NAN; n_out];
                conv_3x3_s2_rows(&kernel, &src, &w, rows.clone(), &mut cols, &mut got, &pool);
                assert_eq!(
                    got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    want.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    "{layout:?} rows {rows:?}"
                );
            }
        }
    }

    #[test]
    fn split_range_covers_everything_once_with_aligned_cuts() {
        for len in [0, 1, 5, 16, 49, 196, 1000] {
            for parts in 1..5 {
                for align in [1, 2, 4, 12] {
                    let mut next = 0;
                    for i in 0..parts {
                        let r = split_range(len, parts, align, i);
                        assert_eq!(r.start, next);
                        assert!(r.start == len || r.start.is_multiple_of(align));
                        next = r.end;
                    }
                    assert_eq!(next, len);
                }
            }
        }
    }
}
