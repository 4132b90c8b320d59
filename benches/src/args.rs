//! Command-line options.

use std::path::PathBuf;

use clap::Parser;

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
    /// Intra-op threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Images per timed run. Above 1, times `Engine::infer_batch` over that many
    /// distinct images (throughput mode): latencies are per batch.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Untimed runs first.
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    /// Timed runs.
    #[arg(long, default_value_t = 200)]
    pub iters: usize,
    /// Force a SIMD path (amx, avx512bf16, avx512, avx2, portable).
    #[arg(long)]
    pub isa: Option<String>,
    /// GEMM precision: f32 or bf16 (default: the file's own; a bf16 run of an f32 file
    /// repacks the weights at load, and the load time includes that).
    #[arg(long)]
    pub precision: Option<String>,
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
