//! Batch-N against batch-1 images/s on one core, interleaved run by run in one
//! process: on a shared (virtual) machine the speed of a core drifts by 20 % or more
//! over seconds, so two separate `levit-bench` runs a few seconds apart can disagree
//! more than the schedules do. Each rep times 8 images through every engine back to
//! back; the ratio of the same rep's times cancels the drift.
//!
//! `cargo run --release -p levit --example batch_interleaved -- 384 30 1 1 8`
//! (variant with random weights, reps, threads, then the batch sizes; the first is the
//! baseline). `384:bf16` or `384:int8` runs that precision (quantized at load).

use std::sync::Arc;
use std::time::Instant;

use levit::synth::{self, Rng};
use levit::{Engine, EngineOptions, Model, ModelOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        return Err("usage: batch_interleaved VARIANT REPS THREADS BATCH...".into());
    }
    let (variant, precision) = match args[0].split_once(':') {
        Some((v, p)) => (v, Some(levit::Precision::parse(p)?)),
        None => (args[0].as_str(), None),
    };
    let config = synth::variant_config(variant).ok_or("unknown variant")?;
    let reps: usize = args[1].parse()?;
    let threads: usize = args[2].parse()?;
    let batches: Vec<usize> = args[3..]
        .iter()
        .map(|b| b.parse())
        .collect::<Result<_, _>>()?;
    let file = synth::random_weight_file(&config, 7)?;
    let model = Arc::new(Model::from_bytes(
        &file,
        ModelOptions {
            precision,
            ..ModelOptions::default()
        },
    )?);
    let images = batches.iter().copied().max().unwrap_or(1).max(8);
    let mut rng = Rng::new(3);
    let inputs: Vec<f32> = (0..images * model.input_len())
        .map(|_| rng.normal())
        .collect();
    let mut out = vec![0.0f32; images * model.num_classes()];
    let mut engines = batches
        .iter()
        .map(|&max_batch| Engine::with_options(model.clone(), EngineOptions { threads, max_batch }))
        .collect::<Result<Vec<_>, _>>()?;
    // Two untimed reps warm the caches and the pools.
    let mut seconds = vec![Vec::new(); engines.len()];
    for rep in 0..reps.max(1) + 2 {
        for (engine, times) in engines.iter_mut().zip(&mut seconds) {
            let started = Instant::now();
            engine.infer_batch(&inputs, &mut out)?;
            if rep >= 2 {
                times.push(started.elapsed().as_secs_f64());
            }
        }
    }
    let sorted = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v
    };
    for (batch, times) in batches.iter().zip(&seconds) {
        let ratios = sorted(seconds[0].iter().zip(times).map(|(b, t)| b / t).collect());
        let times = sorted(times.clone());
        let q = |v: &[f64], f: f64| v[((v.len() - 1) as f64 * f).round() as usize];
        println!(
            "{} batch {batch:>3}, {threads} thread(s): images/s {:.1} (fastest rep) {:.1} (median rep); \
             per rep vs batch {}: median {:.3}x (quartiles {:.3}-{:.3})",
            args[0],
            images as f64 / times[0],
            images as f64 / q(&times, 0.5),
            batches[0],
            q(&ratios, 0.5),
            q(&ratios, 0.25),
            q(&ratios, 0.75),
        );
    }
    Ok(())
}
