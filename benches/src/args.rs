//! Command-line options.

use std::path::PathBuf;

use clap::Parser;

/// Most images per timed batch: their inputs are held in memory (600 MiB at 224x224).
pub const MAX_BATCH: usize = levit::MAX_BATCH;
/// Most timed runs: one `Duration` each is kept for the percentiles.
pub const MAX_ITERS: usize = 10_000_000;

/// A clap parser for an integer in `lo..=hi`: out of range is a usage error (exit 2)
/// rather than a run that aborts allocating for it.
fn in_range(lo: usize, hi: usize) -> impl Fn(&str) -> Result<usize, String> + Clone {
    move |text| match text.parse::<usize>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        Ok(n) => Err(format!("{n} is out of range {lo}..={hi}")),
        Err(e) => Err(format!("not a number in {lo}..={hi}: {e}")),
    }
}

#[derive(Parser)]
#[command(
    name = "levit-bench",
    version,
    about = "Benchmark LeViT inference latency and throughput"
)]
#[command(
    after_help = "Examples:\n  levit-bench --variant 128s\n  levit-bench --variant 128s --batch 8 --threads 2\n  levit-bench --model levit_384.lvt --iters 500 --json"
)]
pub struct Args {
    /// Model file (.lvt).
    #[arg(long, conflicts_with = "variant")]
    pub model: Option<PathBuf>,
    /// Paper variant with random weights when no file is given: 128s, 128, 192, 256, 384.
    #[arg(long)]
    pub variant: Option<String>,
    /// Intra-op threads (1 to levit::MAX_THREADS, 256).
    #[arg(long, default_value_t = 1, value_parser = in_range(1, levit::MAX_THREADS))]
    pub threads: usize,
    /// Images per timed run, 1 to 1024. Above 1, times `Engine::infer_batch` over that
    /// many distinct images in one batch (throughput mode: every GEMM runs over the
    /// tokens of all of them, see `EngineOptions::max_batch`); latencies are per batch
    /// and images/s = batch / median.
    #[arg(long, default_value_t = 1, value_parser = in_range(1, MAX_BATCH))]
    pub batch: usize,
    /// Untimed runs first.
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    /// Timed runs, 1 to 10^7 (each keeps its time in memory).
    #[arg(long, default_value_t = 200, value_parser = in_range(1, MAX_ITERS))]
    pub iters: usize,
    /// Force a SIMD path (amx, avx512bf16, avx512, avx2, portable).
    #[arg(long)]
    pub isa: Option<String>,
    /// GEMM precision: f32, bf16 or int8 (default: the file's own; a bf16 or int8 run
    /// of an f32 file converts the weights at load, and the load time includes that).
    #[arg(long)]
    pub precision: Option<String>,
    /// With int8: layers to keep in float (bf16), comma separated (stem, head, stage0,
    /// ..., all, or a dotted prefix of a weight name); see `levit --help`.
    #[arg(long, value_name = "LAYERS")]
    pub keep_float: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Read the model file into owned memory instead of mapping it.
    #[arg(long)]
    pub owned: bool,
    /// Also print a per-layer time table (stem, each attention, each MLP, head).
    #[arg(long)]
    pub profile: bool,
    /// Skip measuring the core's dot-product peak (about 150 ms at startup).
    #[arg(long)]
    pub no_peak: bool,
}
