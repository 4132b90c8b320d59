//! `levit-bench`: batch-1 latency of a LeViT model (median, p90, p99, min), GMAC/s,
//! load time and peak RSS. Uses a model file, or synthesises random weights for a
//! named variant.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use levit::{synth, Engine, EngineOptions, Isa, Model, ModelOptions};

#[derive(Parser)]
#[command(
    name = "levit-bench",
    version,
    about = "Benchmark LeViT inference latency"
)]
#[command(
    after_help = "Examples:\n  levit-bench --variant 128s\n  levit-bench --model levit_384.lvt --iters 500 --json"
)]
struct Args {
    /// Model file (.lvt).
    #[arg(long, conflicts_with = "variant")]
    model: Option<PathBuf>,
    /// Paper variant with random weights when no file is given: 128s, 128, 192, 256, 384.
    #[arg(long)]
    variant: Option<String>,
    /// Intra-op threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Untimed runs first.
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Timed runs.
    #[arg(long, default_value_t = 200)]
    iters: usize,
    /// Force a SIMD path (avx512, avx2, portable).
    #[arg(long)]
    isa: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Read the model file into owned memory instead of mapping it.
    #[arg(long)]
    owned: bool,
    /// Also print a per-layer time table (stem, each attention, each MLP, head).
    #[arg(long)]
    profile: bool,
}

/// The profile group of a step label: `stem`, `stages.1.downsample.attn`,
/// `stages.0.blocks.2.mlp`, `head`; `None` for bookkeeping steps.
fn profile_group(label: &str) -> Option<String> {
    if label.starts_with("tap.") {
        return None;
    }
    if label.starts_with("stem") {
        return Some("stem".into());
    }
    if label.starts_with("head") {
        return Some("head".into());
    }
    for part in [".attn", ".mlp"] {
        if let Some(i) = label.find(part) {
            return Some(label[..i + part.len()].to_string());
        }
    }
    Some(label.to_string())
}

/// Runs `iters` profiled inferences and prints time per layer group.
fn print_profile(engine: &mut Engine, image: &[f32], iters: usize) -> Result<()> {
    let plan = engine.model().plan().clone();
    let mut nanos = vec![0u64; plan.steps.len()];
    for _ in 0..iters {
        engine.infer_profiled(image, &mut nanos)?;
    }
    let mut groups: Vec<(String, f64, u64)> = Vec::new();
    let mut kinds = [
        ("gemm", 0.0f64, 0u64),
        ("attention", 0.0, 0),
        ("stem conv", 0.0, 0),
        ("other", 0.0, 0),
    ];
    for ((step, label), ns) in plan.steps.iter().zip(&plan.labels).zip(&nanos) {
        let ms = *ns as f64 / 1e6 / iters as f64;
        let kind = match step {
            levit::graph::Step::Gemm { .. } => 0,
            levit::graph::Step::Attention { .. } => 1,
            levit::graph::Step::Conv { .. } => 2,
            _ => 3,
        };
        kinds[kind].1 += ms;
        kinds[kind].2 += step.macs();
        let Some(group) = profile_group(label) else {
            continue;
        };
        match groups.last_mut() {
            Some(g) if g.0 == group => {
                g.1 += ms;
                g.2 += step.macs();
            }
            _ => groups.push((group, ms, step.macs())),
        }
    }
    let total: f64 = groups.iter().map(|g| g.1).sum();
    println!("\nper-layer profile (mean over {iters} runs, {total:.3} ms total)");
    println!("{:<32} {:>9} {:>6} {:>9}", "layer", "ms", "%", "GMAC/s");
    for (name, ms, macs) in &groups {
        let rate = if *ms > 0.0 {
            *macs as f64 / 1e6 / ms
        } else {
            0.0
        };
        println!(
            "{name:<32} {ms:>9.3} {:>5.1}% {rate:>9.1}",
            100.0 * ms / total
        );
    }
    println!("{:<32} {:>9} {:>6} {:>9}", "by kernel", "ms", "%", "GMAC/s");
    for (name, ms, macs) in kinds {
        let rate = if ms > 0.0 {
            macs as f64 / 1e6 / ms
        } else {
            0.0
        };
        println!(
            "{name:<32} {ms:>9.3} {:>5.1}% {rate:>9.1}",
            100.0 * ms / total
        );
    }
    Ok(())
}

/// Peak resident set size of this process in bytes (Linux), if known.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.threads == 0 {
        bail!("--threads must be at least 1");
    }
    if args.iters == 0 {
        bail!("--iters must be at least 1");
    }
    let isa = args.isa.as_deref().map(Isa::parse).transpose()?;
    let options = ModelOptions {
        isa,
        mode: if args.owned {
            levit::LoadMode::Owned
        } else {
            levit::LoadMode::Mmap
        },
        ..ModelOptions::default()
    };
    let (model, load_s, source) = match (&args.model, &args.variant) {
        (Some(path), _) => {
            let t = Instant::now();
            let m = Model::load_with(path, options)
                .with_context(|| format!("loading {}", path.display()))?;
            (m, t.elapsed().as_secs_f64(), path.display().to_string())
        }
        (None, Some(v)) => {
            let config =
                synth::variant_config(v).with_context(|| format!("unknown variant {v:?}"))?;
            let bytes = synth::random_weight_file(&config, 0)?;
            let t = Instant::now();
            let m = Model::from_bytes(&bytes, options)?;
            (
                m,
                t.elapsed().as_secs_f64(),
                format!("{} (random weights, from memory)", config.variant),
            )
        }
        (None, None) => bail!("give --model FILE or --variant NAME"),
    };
    let model = Arc::new(model);
    let mut engine = Engine::with_options(
        model.clone(),
        EngineOptions {
            threads: args.threads,
        },
    )?;
    let image: Vec<f32> = {
        let mut rng = synth::Rng::new(42);
        (0..model.input_len()).map(|_| rng.normal()).collect()
    };
    let t = Instant::now();
    engine.infer(&image)?;
    let first_ms = t.elapsed().as_secs_f64() * 1e3;
    for _ in 0..args.warmup {
        engine.infer(&image)?;
    }
    let mut times: Vec<f64> = (0..args.iters)
        .map(|_| {
            let t = Instant::now();
            let _ = engine.infer(&image);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let (median, p90, p99, min) = (
        percentile(&times, 0.5),
        percentile(&times, 0.9),
        percentile(&times, 0.99),
        times[0],
    );
    let gmacs = model.macs() as f64 / 1e9;
    let rss = peak_rss();
    if args.json {
        let v = serde_json::json!({
            "model": source, "variant": model.config().variant, "isa": model.isa().name(),
            "threads": args.threads, "iters": args.iters,
            "median_ms": median, "p90_ms": p90, "p99_ms": p99, "min_ms": min,
            "first_ms": first_ms, "images_per_s": 1e3 / median,
            "gmac": gmacs, "gmac_per_s": gmacs / (median / 1e3),
            "load_ms": load_s * 1e3, "peak_rss_bytes": rss,
            "arena_bytes": model.plan().arena_len * 4, "file_bytes": model.file().file_len(),
        });
        println!("{v}");
    } else {
        println!("model      {source}");
        println!("isa        {}   threads {}", model.isa(), args.threads);
        println!(
            "load       {:.2} ms   first inference {:.2} ms",
            load_s * 1e3,
            first_ms
        );
        println!(
            "latency    median {median:.3} ms   p90 {p90:.3}   p99 {p99:.3}   min {min:.3}   ({} runs)",
            args.iters
        );
        println!(
            "throughput {:.1} images/s   {:.3} GMAC/image   {:.1} GMAC/s",
            1e3 / median,
            gmacs,
            gmacs / (median / 1e3)
        );
        if let Some(rss) = rss {
            let mib = |b: usize| b as f64 / (1 << 20) as f64;
            println!(
                "memory     peak RSS {:.1} MiB   (weight file {:.1} MiB, arena {:.1} MiB, bias tables {:.1} MiB)",
                mib(rss as usize),
                mib(model.file().file_len()),
                mib(model.plan().arena_len * 4),
                mib(model.plan().bias_tables.len() * 4)
            );
        }
        if args.profile {
            print_profile(&mut engine, &image, args.iters)?;
        }
    }
    Ok(())
}
