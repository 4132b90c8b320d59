//! Executing a plan: one `match` per step over views of the arena. No allocation.

use levit_graph::{
    AttentionStep, BufRange, ConvStep, GemmStep, ImageSource, MeanRowsStep, Step, Tap,
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

/// The kernel operands of a GEMM step reading `a`.
fn gemm_args<'a>(model: &'a Model, s: &GemmStep, a: &'a [f32]) -> GemmArgs<'a> {
    GemmArgs {
        m: s.m,
        k: s.k,
        n: s.n,
        a,
        lda: s.lda,
        a_rows: s.a_rows.clone().map(|r| &model.plan.row_tables[r]),
        b: model.packed(s.weight),
        bias: model.f32(s.bias),
        ldc: s.ldc,
        epilogue: s.epilogue,
    }
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
    for (index, step) in plan.steps.iter().enumerate() {
        let started = profile.as_ref().map(|_| std::time::Instant::now());
        match step {
            Step::Conv(s) => match s.src {
                ImageSource::Input => {
                    let [cols, out] = disjoint(arena, [s.cols, s.out]);
                    conv(model, s, input, cols, out, exec);
                }
                ImageSource::Arena(img) => {
                    let [img, cols, out] = disjoint(arena, [img, s.cols, s.out]);
                    conv(model, s, img, cols, out, exec);
                }
            },
            Step::Gemm(s) => {
                let [a, c] = disjoint(arena, [s.a, s.c]);
                let args = gemm_args(model, s, a);
                parallel::gemm(model.kernel(s.precision), &args, c, exec);
            }
            Step::Attention(s) => {
                let kernel = model.attention_kernel(s.precision);
                let mut run = |q: &[f32], kv: &[f32], out: &mut [f32]| {
                    let args = attention_args(model, s, q, kv).expect("checked at load");
                    parallel::attention(kernel, &args, out, scratch, exec);
                };
                if s.q == s.kv {
                    let [kv, out] = disjoint(arena, [s.kv, s.out]);
                    run(kv, kv, out);
                } else {
                    let [q, kv, out] = disjoint(arena, [s.q, s.kv, s.out]);
                    run(q, kv, out);
                }
            }
            Step::MeanRows(s) => {
                let [x, out] = disjoint(arena, [s.x, s.out]);
                reduce::mean_rows(x, s.rows, s.cols, out);
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
            Step::Conv(s) => {
                let (geometry, cols, out) = (&s.geometry, &s.cols, &s.out);
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
                    if out.len < rows.end * row_len {
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
                let args = gemm_args(model, s, &zeros[..s.a.len]);
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
                let args = attention_args(model, s, &zeros[..s.q.len], &zeros[..s.kv.len])
                    .ok_or_else(|| fail(i, "bias table out of range".into()))?;
                args.check(s.out.len, plan.attention_scratch)
                    .map_err(|e| fail(i, e))?;
            }
            Step::MeanRows(MeanRowsStep { x, rows, cols, out }) => {
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
