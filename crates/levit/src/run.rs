//! Executing a plan: one `match` per step over views of the arena. No allocation.

use levit_graph::{
    AttentionStep, BatchLayout, BufRange, ConvStep, GemmStep, ImageSource, MeanRowsStep, Step, Tap,
};
use levit_kernels::attention::AttentionArgs;
use levit_kernels::conv::{ConvInput, ConvWeights};
use levit_kernels::gemm::GemmArgs;
use levit_kernels::parallel::{self, Executor};
use levit_kernels::reduce;

use crate::arena::disjoint;
use crate::{Error, Model, Result};

/// Receives each named intermediate (`stem`, `stage0`, ...) as it is completed.
pub type Tracer<'t> = &'t mut dyn FnMut(&Tap, &[f32]);

/// The kernel operands of a GEMM step reading `a`, over the rows of `images` images
/// (`None` if its row table is out of range: only in a corrupt plan; `check_plan`
/// reports it).
fn gemm_args<'a>(
    model: &'a Model,
    layout: &'a BatchLayout,
    s: &GemmStep,
    a: &'a [f32],
    images: usize,
) -> Option<GemmArgs<'a>> {
    let m = s.m.checked_mul(images)?;
    let a_rows = match &s.a_rows {
        Some(r) => Some(layout.row_tables.get(r.clone())?.get(..m)?),
        None => None,
    };
    Some(GemmArgs {
        m,
        k: s.k,
        n: s.n,
        a,
        lda: s.lda,
        a_rows,
        b: model.packed(s.weight),
        bias: model.f32(s.bias),
        ldc: s.ldc,
        epilogue: s.epilogue,
    })
}

/// The weights of a conv step.
fn conv_weights<'a>(model: &'a Model, s: &ConvStep) -> ConvWeights<'a> {
    ConvWeights {
        weight: model.packed(s.weight),
        bias: model.f32(s.bias),
        cout: s.cout,
        epilogue: s.epilogue,
    }
}

/// The kernel operands of an attention step, or `None` if its bias table is out of
/// range (only possible in a corrupt plan; `check_plan` reports it).
fn attention_args<'a>(
    model: &'a Model,
    s: &AttentionStep,
    q: &'a [f32],
    kv: &'a [f32],
) -> Option<AttentionArgs<'a>> {
    Some(AttentionArgs {
        shape: s.shape,
        q,
        q_view: s.q_view,
        kv,
        k_view: s.k_view,
        v_view: s.v_view,
        bias: model.plan.bias_tables.get(s.bias_table.clone())?,
        act: s.act,
    })
}

/// Runs a conv step block by block (a few output image rows at a time, so the column
/// matrix stays in cache), each block split over `exec`'s threads.
fn conv(
    model: &Model,
    s: &ConvStep,
    image: &[f32],
    cols: &mut [f32],
    out: &mut [f32],
    exec: &dyn Executor,
) {
    let weights = conv_weights(model, s);
    let src = ConvInput {
        image,
        layout: s.layout,
        geometry: s.geometry,
    };
    let kernel = model.kernel(s.precision);
    let row_len = s.geometry.wout() * weights.cout;
    for rows in s.blocks() {
        let out = &mut out[rows.start * row_len..rows.end * row_len];
        parallel::conv_3x3_s2_rows(kernel, &src, &weights, rows, cols, out, exec);
    }
}

/// Image `i`'s part of a conv step's output: its own copy if the output is batched.
fn conv_out(layout: &BatchLayout, s: &ConvStep, i: usize) -> BufRange {
    if s.batched_out {
        layout.image_part(s.out, i)
    } else {
        s.out
    }
}

/// Runs every step of `layout` on the `images` images in `inputs` (back to back),
/// writing into `arena`: the stem image by image, then each GEMM once over the tokens
/// of all images (each weight panel streamed once per batch) and attention per image.
/// Kernels split their output over `exec`'s threads; `scratch` holds one attention
/// scratch per thread. Taps and the profile see image 0 and sum over images.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    model: &Model,
    layout: &BatchLayout,
    inputs: &[f32],
    images: usize,
    arena: &mut [f32],
    scratch: &mut [f32],
    exec: &dyn Executor,
    mut tracer: Option<Tracer>,
    mut profile: Option<&mut [u64]>,
) {
    let plan = &model.plan;
    debug_assert!(images >= 1 && images <= layout.images);
    let mut timed = |index: usize, work: &mut dyn FnMut()| match profile.as_deref_mut() {
        None => work(),
        Some(times) => {
            let started = std::time::Instant::now();
            work();
            times[index] += started.elapsed().as_nanos() as u64;
        }
    };
    let stem = &layout.steps[..layout.per_image_steps];
    for (i, input) in inputs.chunks_exact(plan.input_len).take(images).enumerate() {
        for (index, step) in stem.iter().enumerate() {
            let Step::Conv(s) = step else {
                unreachable!("check_plan: the per-image steps are convs")
            };
            let out = conv_out(layout, s, i);
            timed(index, &mut || match s.src {
                ImageSource::Input => {
                    let [cols, out] = disjoint(arena, [s.cols, out]);
                    conv(model, s, input, cols, out, exec);
                }
                ImageSource::Arena(img) => {
                    let [img, cols, out] = disjoint(arena, [img, s.cols, out]);
                    conv(model, s, img, cols, out, exec);
                }
            });
        }
    }
    for (index, step) in layout.steps.iter().enumerate().skip(stem.len()) {
        timed(index, &mut || match step {
            Step::Conv(_) => unreachable!("check_plan: convs only in the stem"),
            Step::Gemm(s) => {
                let [a, c] = disjoint(arena, [s.a, s.c]);
                let args = gemm_args(model, layout, s, a, images).expect("checked at load");
                parallel::gemm(model.kernel(s.precision), &args, c, exec);
            }
            Step::Attention(s) => attention(model, layout, s, images, arena, scratch, exec),
            Step::MeanRows(s) => {
                let [x, out] = disjoint(arena, [s.x, s.out]);
                let (x_len, out_len) = (s.x.len / layout.images, s.out.len / layout.images);
                for (x, out) in x.chunks_exact(x_len).zip(out.chunks_exact_mut(out_len)) {
                    reduce::mean_rows(x, s.rows, s.cols, out);
                }
            }
            Step::Tap(t) => {
                if let Some(trace) = tracer.as_mut() {
                    let tap = &layout.taps[*t];
                    trace(tap, &arena[tap.buf.offset..][..tap.rows * tap.cols]);
                }
            }
        });
    }
}

/// One attention step over `images` images: split by image when there is an image
/// per thread, else image after image, each split by query rows. Either way each
/// image's output is one kernel's, bit for bit.
fn attention(
    model: &Model,
    layout: &BatchLayout,
    s: &AttentionStep,
    images: usize,
    arena: &mut [f32],
    scratch: &mut [f32],
    exec: &dyn Executor,
) {
    let kernel = model.attention_kernel(s.precision);
    let per = |r: BufRange| r.len / layout.images;
    let (q_len, kv_len, out_len) = (per(s.q), per(s.kv), per(s.out));
    let mut run = |q: &[f32], kv: &[f32], out: &mut [f32]| {
        let args = |i: usize| {
            attention_args(
                model,
                s,
                &q[i * q_len..][..q_len],
                &kv[i * kv_len..][..kv_len],
            )
            .expect("checked at load")
        };
        if images > 1 && images >= exec.width() && exec.width() > 1 {
            parallel::attention_images(kernel, images, &args, out, out_len, scratch, exec);
        } else {
            for (i, out) in out.chunks_exact_mut(out_len).take(images).enumerate() {
                parallel::attention(kernel, &args(i), out, scratch, exec);
            }
        }
    };
    if s.q == s.kv {
        let [kv, out] = disjoint(arena, [s.kv, s.out]);
        run(kv, kv, out);
    } else {
        let [q, kv, out] = disjoint(arena, [s.q, s.kv, s.out]);
        run(q, kv, out);
    }
}

/// Checks once, at load (and for each engine's batch layout), that every step's kernel
/// arguments are in bounds for the real weights and arena for up to `layout.images`
/// images, so `run` can never index out of range.
pub(crate) fn check_plan(model: &Model, layout: &BatchLayout) -> Result<()> {
    let plan = &model.plan;
    let images = layout.images;
    let zeros_len = layout.arena_len;
    // Stand-in operands for the bounds checks, which look only at lengths: one
    // zero-filled allocation (untouched pages cost nothing), sliced per step.
    let zeros = vec![0.0f32; zeros_len];
    let fail = |step, reason: String| Error::PlanCheck { step, reason };
    if images == 0 || layout.steps.len() != plan.steps.len() {
        return Err(fail(0, "batch layout does not match the plan".into()));
    }
    // Buffers outside the stem hold `images` equal copies.
    let batched = |r: &BufRange| r.len.is_multiple_of(images);
    for (i, step) in layout.steps.iter().enumerate() {
        let in_arena = |r: &BufRange| r.end() <= zeros_len;
        let in_stem = i < layout.per_image_steps;
        if in_stem != matches!(step, Step::Conv(_)) {
            return Err(fail(
                i,
                "convs must be the per-image steps and only they".into(),
            ));
        }
        if !in_stem && !step.buffers().all(|b| batched(&b)) {
            return Err(fail(i, "buffer not a whole number of images".into()));
        }
        match step {
            Step::Conv(s) => {
                let (geometry, cols, out) = (&s.geometry, &s.cols, &s.out);
                if s.batched_out && !batched(out) {
                    return Err(fail(i, "conv output not a whole number of images".into()));
                }
                let image_out = conv_out(layout, s, 0);
                let src_len = match &s.src {
                    ImageSource::Input => plan.input_len,
                    ImageSource::Arena(r)
                        if in_arena(r) && !r.overlaps(cols) && !r.overlaps(out) =>
                    {
                        r.len
                    }
                    ImageSource::Arena(_) => {
                        return Err(fail(i, "conv image outside arena".into()))
                    }
                };
                let block_rows = s.blocks().next().map_or(0, |r| r.len());
                if src_len < geometry.input_len()
                    || !in_arena(cols)
                    || !in_arena(out)
                    || cols.overlaps(out)
                    || cols.len < block_rows * geometry.wout() * geometry.k()
                {
                    return Err(fail(i, "conv buffers too small or overlapping".into()));
                }
                let weights = conv_weights(model, s);
                let kernel = model.kernel(s.precision);
                let row_len = geometry.wout() * weights.cout;
                for rows in s.blocks() {
                    let m = rows.len() * geometry.wout();
                    let args = weights.gemm_args(*geometry, m, &zeros[..cols.len]);
                    if image_out.len < rows.end * row_len {
                        return Err(fail(i, "conv output too small".into()));
                    }
                    kernel
                        .check(&args, rows.len() * row_len)
                        .map_err(|e| fail(i, e))?;
                }
            }
            Step::Gemm(s) => {
                if !in_arena(&s.a) || !in_arena(&s.c) || s.a.overlaps(&s.c) {
                    return Err(fail(i, "gemm buffers outside arena or overlapping".into()));
                }
                let args = gemm_args(model, layout, s, &zeros[..s.a.len], images)
                    .ok_or_else(|| fail(i, "row table out of range".into()))?;
                model
                    .kernel(s.precision)
                    .check(&args, s.c.len)
                    .map_err(|e| fail(i, e))?;
            }
            Step::Attention(s) => {
                for r in [&s.q, &s.kv, &s.out] {
                    if !in_arena(r) {
                        return Err(fail(i, "attention buffer outside arena".into()));
                    }
                }
                if s.out.overlaps(&s.kv) || s.out.overlaps(&s.q) {
                    return Err(fail(i, "attention buffers overlap".into()));
                }
                let (q, kv) = (s.q.len / images, s.kv.len / images);
                let args = attention_args(model, s, &zeros[..q], &zeros[..kv])
                    .ok_or_else(|| fail(i, "bias table out of range".into()))?;
                args.check(s.out.len / images, plan.attention_scratch)
                    .map_err(|e| fail(i, e))?;
            }
            Step::MeanRows(MeanRowsStep { x, rows, cols, out }) => {
                if !in_arena(x)
                    || !in_arena(out)
                    || x.len / images < rows * cols
                    || out.len / images < *cols
                {
                    return Err(fail(i, "mean buffers too small".into()));
                }
            }
            Step::Tap(t) => {
                let tap = layout
                    .taps
                    .get(*t)
                    .ok_or_else(|| fail(i, "unknown tap".into()))?;
                if !in_arena(&tap.buf) || tap.buf.len < tap.rows * tap.cols {
                    return Err(fail(i, "tap outside arena".into()));
                }
            }
        }
    }
    let output = layout.output;
    if output.end() > zeros_len || output.len != images * plan.config.num_classes {
        return Err(fail(layout.steps.len(), "output outside arena".into()));
    }
    Ok(())
}
