//! `levit-bench`: latency (batch 1) or throughput (`--batch N`) of a LeViT model:
//! median, p90, p99 and min time per run, images/s, GMAC/s and the share of this
//! core's measured FMA peak, load time, first-inference time and peak RSS; optionally
//! a per-layer profile. Uses a model file, or synthesises random weights for a named
//! variant.

mod args;
mod batch;
mod load;
mod memory;
mod profile;
mod report;
mod timing;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;
use levit::{Engine, EngineOptions};
use levit_kernels::peak::dot_peak_gmacs;

use args::Args;
use report::Report;

/// Time spent measuring the peak, in each of two windows (best of ~1 ms batches).
const PEAK_BUDGET: Duration = Duration::from_millis(75);

/// One core's peak of the dot instruction the model's GEMM kernels use, in GMAC/s,
/// the better of this window and `earlier`'s: measured once before and once after the
/// timed runs, so that a burst of other load during one window does not make the peak
/// look low.
fn peak_window(model: &levit::Model, earlier: Option<f64>) -> f64 {
    let g = dot_peak_gmacs(model.precision(), model.isa(), PEAK_BUDGET);
    earlier.map_or(g, |e| e.max(g))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let loaded = load::load(&args)?;
    let model = Arc::new(loaded.model);
    // First window before the engine exists, so that its worker threads cannot
    // disturb it.
    let peak_gmacs = (!args.no_peak).then(|| peak_window(&model, None));
    let mut engine = Engine::with_options(
        model.clone(),
        EngineOptions {
            threads: args.threads,
            // The whole timed batch in one chunk: every GEMM runs over all its images.
            max_batch: args.batch,
        },
    )?;
    let images = batch::random_images(model.input_len(), args.batch);
    let image = &images[..model.input_len()];
    let t = Instant::now();
    engine.infer(image)?;
    let first_ms = t.elapsed().as_secs_f64() * 1e3;

    let latency = if args.batch == 1 {
        timing::measure(args.warmup, args.iters, || {
            engine.infer(image)?;
            Ok(())
        })?
    } else {
        let mut logits = vec![0.0f32; args.batch * model.num_classes()];
        batch::check_batch(&mut engine, &images, &mut logits)?;
        timing::measure(args.warmup, args.iters, || {
            engine.infer_batch(&images, &mut logits)?;
            Ok(())
        })?
    };

    let peak_gmacs = peak_gmacs.map(|g| peak_window(&model, Some(g)));
    let report = Report {
        source: &loaded.source,
        model: &model,
        threads: args.threads,
        batch: args.batch,
        latency,
        load_ms: loaded.load_ms,
        first_ms,
        peak_gmacs,
        peak_rss: memory::peak_rss(),
        arena_bytes: engine.arena_bytes(),
    };
    if args.json {
        println!("{}", report.json());
    } else {
        report.print_text();
        if args.profile {
            profile::print_profile(&mut engine, &images, args.iters)?;
        }
    }
    Ok(())
}
