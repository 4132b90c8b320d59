//! The `levit` command-line program.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use levit::{Isa, ModelOptions};

#[derive(Parser)]
#[command(
    name = "levit",
    version,
    about = "Run LeViT image classifiers on the CPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a model on raw tensors: [N,3,H,W] f32 .npy in, [N,classes] f32 .npy out.
    #[command(
        after_help = "Example:\n  levit infer --model levit_128s.lvt --input x.npy --output logits.npy"
    )]
    Infer {
        /// Model file written by `levit-weights convert`.
        #[arg(long)]
        model: PathBuf,
        /// Input images, normalized, float32 [N, 3, H, W].
        #[arg(long)]
        input: PathBuf,
        /// Where to write the logits, float32 [N, classes].
        #[arg(long)]
        output: PathBuf,
        /// Force a SIMD path (avx512, avx2, portable).
        #[arg(long)]
        isa: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Infer {
            model,
            input,
            output,
            isa,
        } => (|| {
            let isa = isa.map(|name| Isa::parse(&name)).transpose()?;
            let options = ModelOptions {
                isa,
                ..ModelOptions::default()
            };
            levit_cli::infer::run(&model, &input, &output, options)
        })(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("levit: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
