//! Executing a plan: one `match` per step over views of the arena. No allocation.

use std::ops::Range;

use levit_graph::{BufRange, ImageSource, Step, Tap};
use levit_kernels::attention::AttentionArgs;
use levit_kernels::conv::{ConvInput, ConvWeights};
use levit_kernels::gemm::GemmArgs;
use levit_kernels::parallel::{self, Executor};
use levit_kernels::reduce;

use crate::arena::disjoint;
use crate::{Error, Model, Result};

/// Receives each named intermediate (`stem`, `stage0`, ...) as it is completed.
pub type Tracer<'t> = &'t mut dyn FnMut(&Tap, &[f32]);

fn gemm_args<'a>(model: &'a Model, step: &Step, a: &'a [f32]) -> Option<GemmArgs<'a>> {
    let Step::Gemm {
        lda,
        a_rows,
        m,
        k,
        n,
        weight,
        bias,
        epilogue,
        ldc,
        ..
    } = step
    else {
        return None;
    };
    Some(GemmArgs {
        m: *m,
        k: *k,
        n: *n,
        a,
        lda: *lda,
        a_rows: a_rows.clone().map(|r| &model.plan.row_tables[r]),
        b: model.weight(*weight),
        bias: model.weight(*bias),
        ldc: *ldc,
        epilogue: *epilogue,
    })
}

/// Output image rows of each block of a conv step.
fn conv_blocks(step: &Step) -> impl Iterator<Item = Range<usize>> {
    let (hout, block) = match step {
        Step::Conv {
            geometry,
            block_rows,
            ..
        } => (geometry.hout(), (*block_rows).max(1)),
        _ => (0, 1),
    };
    (0..hout)
        .step_by(block)
        .map(move |start| start..(start + block).min(hout))
}

/// The weights of a conv step.
fn conv_weights<'a>(model: &'a Model, step: &Step) -> ConvWeights<'a> {
    let Step::Conv {
        weight,
        bias,
        epilogue,
        cout,
        ..
    } = step
    else {
        unreachable!("conv_weights on a non-conv step");
    };
    ConvWeights {
        weight: model.weight(*weight),
        bias: model.weight(*bias),
        cout: *cout,
        epilogue: *epilogue,
    }
}

/// Runs a conv step block by block (a few output image rows at a time, so the column
/// matrix stays in cache), each block split over `exec`'s threads.
fn conv(
    model: &Model,
    step: &Step,
    image: &[f32],
    cols: &mut [f32],
    out: &mut [f32],
    exec: &dyn Executor,
) {
    let Step::Conv {
        layout, geometry, ..
    } = step
    else {
        unreachable!("conv on a non-conv step");
    };
    let weights = conv_weights(model, step);
    let src = ConvInput {
        image,
        layout: *layout,
        geometry: *geometry,
    };
    let row_len = geometry.wout() * weights.cout;
    for rows in conv_blocks(step) {
        let out = &mut out[rows.start * row_len..rows.end * row_len];
        parallel::conv_3x3_s2_rows(model.isa, &src, &weights, rows, cols, out, exec);
    }
}

fn attention_args<'a>(
    model: &'a Model,
    step: &Step,
    q: &'a [f32],
    kv: &'a [f32],
) -> Option<AttentionArgs<'a>> {
    let Step::Attention {
        shape,
        q_view,
        k_view,
        v_view,
        bias,
        act,
        ..
    } = step
    else {
        return None;
    };
    Some(AttentionArgs {
        shape: *shape,
        q,
        q_view: *q_view,
        kv,
        k_view: *k_view,
        v_view: *v_view,
        bias: model.plan.bias_tables.get(bias.clone())?,
        act: *act,
    })
}

/// Runs every step of `model` on one image, writing into `arena`. Kernels split their
/// output over `exec`'s threads; `scratch` holds one attention scratch per thread.
pub(crate) fn run(
    model: &Model,
    input: &[f32],
    arena: &mut [f32],
    scratch: &mut [f32],
    exec: &dyn Executor,
    mut tracer: Option<Tracer>,
    mut profile: Option<&mut [u64]>,
) {
    let plan = &model.plan;
    let isa = model.isa;
    for (index, step) in plan.steps.iter().enumerate() {
        let started = profile.as_ref().map(|_| std::time::Instant::now());
        match step {
            Step::Conv { src, cols, out, .. } => match src {
                ImageSource::Input => {
                    let [cols, out] = disjoint(arena, [*cols, *out]);
                    conv(model, step, input, cols, out, exec);
                }
                ImageSource::Arena(img) => {
                    let [img, cols, out] = disjoint(arena, [*img, *cols, *out]);
                    conv(model, step, img, cols, out, exec);
                }
            },
            Step::Gemm { a, c, .. } => {
                let [a, c] = disjoint(arena, [*a, *c]);
                let args = gemm_args(model, step, a).expect("gemm step");
                parallel::gemm(isa, &args, c, exec);
            }
            Step::Attention { q, kv, out, .. } => {
                let mut run = |q: &[f32], kv: &[f32], out: &mut [f32]| {
                    let args = attention_args(model, step, q, kv).expect("attention step");
                    parallel::attention(isa, &args, out, scratch, exec);
                };
                if q == kv {
                    let [kv, out] = disjoint(arena, [*kv, *out]);
                    run(kv, kv, out);
                } else {
                    let [q, kv, out] = disjoint(arena, [*q, *kv, *out]);
                    run(q, kv, out);
                }
            }
            Step::MeanRows { x, rows, cols, out } => {
                let [x, out] = disjoint(arena, [*x, *out]);
                reduce::mean_rows(x, *rows, *cols, out);
            }
            Step::Tap(i) => {
                if let Some(t) = tracer.as_mut() {
                    let tap = &plan.taps[*i];
                    t(tap, &arena[tap.buf.offset..][..tap.rows * tap.cols]);
                }
            }
        }
        if let (Some(times), Some(t)) = (profile.as_deref_mut(), started) {
            times[index] += t.elapsed().as_nanos() as u64;
        }
    }
}

/// Checks once, at load, that every step's kernel arguments are in bounds for the real
/// weights and arena, so `run` can never index out of range.
pub(crate) fn check_plan(model: &Model) -> Result<()> {
    let plan = &model.plan;
    let zeros_len = plan.arena_len;
    // Stand-in operands for the bounds checks, which look only at lengths: one
    // zero-filled allocation (untouched pages cost nothing), sliced per step.
    let zeros = vec![0.0f32; zeros_len];
    let fail = |step, reason: String| Error::PlanCheck { step, reason };
    for (i, step) in plan.steps.iter().enumerate() {
        let in_arena = |r: &BufRange| r.end() <= zeros_len;
        match step {
            Step::Conv {
                src,
                geometry,
                cols,
                out,
                ..
            } => {
                let src_len = match src {
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
                let block_rows = conv_blocks(step).next().map_or(0, |r| r.len());
                if src_len < geometry.input_len()
                    || !in_arena(cols)
                    || !in_arena(out)
                    || cols.overlaps(out)
                    || cols.len < block_rows * geometry.wout() * geometry.k()
                {
                    return Err(fail(i, "conv buffers too small or overlapping".into()));
                }
                let weights = conv_weights(model, step);
                let row_len = geometry.wout() * weights.cout;
                for rows in conv_blocks(step) {
                    let m = rows.len() * geometry.wout();
                    let args = weights.gemm_args(*geometry, m, &zeros[..cols.len]);
                    if out.len < rows.end * row_len {
                        return Err(fail(i, "conv output too small".into()));
                    }
                    args.check(rows.len() * row_len).map_err(|e| fail(i, e))?;
                }
            }
            Step::Gemm { a, c, .. } => {
                if !in_arena(a) || !in_arena(c) || a.overlaps(c) {
                    return Err(fail(i, "gemm buffers outside arena or overlapping".into()));
                }
                let args = gemm_args(model, step, &zeros[..a.len]).expect("gemm step");
                args.check(c.len).map_err(|e| fail(i, e))?;
            }
            Step::Attention { q, kv, out, .. } => {
                for r in [q, kv, out] {
                    if !in_arena(r) {
                        return Err(fail(i, "attention buffer outside arena".into()));
                    }
                }
                if out.overlaps(kv) || out.overlaps(q) {
                    return Err(fail(i, "attention buffers overlap".into()));
                }
                let args = attention_args(model, step, &zeros[..q.len], &zeros[..kv.len])
                    .ok_or_else(|| fail(i, "bias table out of range".into()))?;
                args.check(out.len, plan.attention_scratch)
                    .map_err(|e| fail(i, e))?;
            }
            Step::MeanRows { x, rows, cols, out } => {
                if !in_arena(x) || !in_arena(out) || x.len < rows * cols || out.len < *cols {
                    return Err(fail(i, "mean buffers too small".into()));
                }
            }
            Step::Tap(t) => {
                let tap = plan
                    .taps
                    .get(*t)
                    .ok_or_else(|| fail(i, "unknown tap".into()))?;
                if !in_arena(&tap.buf) || tap.buf.len < tap.rows * tap.cols {
                    return Err(fail(i, "tap outside arena".into()));
                }
            }
        }
    }
    if plan.output.end() > zeros_len {
        return Err(fail(plan.steps.len(), "output outside arena".into()));
    }
    Ok(())
}
