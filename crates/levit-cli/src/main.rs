//! The `levit` command-line program: argument parsing and error printing only; the
//! commands live in the `levit_cli` library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use levit_cli::model::LoadSettings;
use levit_cli::output::OutputError;

const EXIT_ERROR: u8 = 1;

#[derive(Parser)]
#[command(
    name = "levit",
    version,
    about = "Classify images with LeViT models on the CPU",
    after_help = "Examples:\n  levit classify --model levit_128s.lvt cat.jpg photos/\n  levit info levit_128s.lvt\n  levit infer --model levit_128s.lvt --input x.npy --output logits.npy\n\nConvert a PyTorch checkpoint first: levit-weights convert model.safetensors -o levit_128s.lvt"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct ModelFlags {
    /// Force a SIMD path: amx, avx512bf16, avx512, avx2 or portable (default: the
    /// best this CPU has, or LEVIT_ISA).
    #[arg(long, value_name = "PATH", value_parser = isa_name)]
    isa: Option<String>,
    /// Precision of the matrix products: f32 (exact), bf16 (faster where the CPU has
    /// AMX or AVX512_BF16; logits within about 1e-2 relative) or int8 (weights per
    /// channel, activations per token, scaled at run time; AMX, AVX512_VNNI, AVX2).
    /// Default: the precision the file stores; bf16 or int8 from an f32 file converts
    /// the weights at load.
    #[arg(long, value_name = "P", value_parser = precision_name)]
    precision: Option<String>,
    /// With int8: keep these layers in float (bf16), comma separated: stem, head,
    /// stage0, stage1, ..., all, or a dotted prefix of a weight name
    /// (stages.1.blocks.0.mlp.fc1). From an f32 file they are repacked at load; an
    /// int8 file keeps the layers it was converted with (`levit-weights convert
    /// --precision int8 --keep-float ...`).
    #[arg(long, value_name = "LAYERS", value_parser = layer_list)]
    keep_float: Option<String>,
    /// Refuse models needing more than N GMAC per image [default: 250; LeViT-384 at
    /// 224x224 needs 2.4]. A small file can declare a config costing minutes per image.
    #[arg(long, value_name = "N")]
    max_gmac: Option<u64>,
}

// Argument checks run while parsing, so a bad value is a usage error (exit status 2)
// like any other; whether the CPU supports an ISA is decided later (status 1).

/// `--isa`: a known SIMD path name.
fn isa_name(name: &str) -> Result<String, String> {
    levit::Isa::parse(name)
        .map(|_| name.to_string())
        .map_err(|e| e.to_string())
}

/// `--precision`: `f32` or `bf16`.
fn precision_name(name: &str) -> Result<String, String> {
    levit::Precision::parse(name).map(|_| name.to_string())
}

/// `--keep-float`: a comma separated list of layer names (whether each names a layer
/// of the model is checked at load).
fn layer_list(text: &str) -> Result<String, String> {
    levit::KeepFloat::parse(text)
        .map(|_| text.to_string())
        .map_err(|e| e.to_string())
}

/// `--crop-pct`: a fraction in (0, 1].
fn crop_pct(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(f) if f > 0.0 && f <= 1.0 => Ok(f),
        Ok(f) => Err(format!("{f} is out of range (0, 1]")),
        Err(e) => Err(format!("not a number: {e}")),
    }
}

#[derive(Args)]
struct VerifyFlags {
    /// Skip the CRC-32 check of every weight tensor before running. The check (on by
    /// default) reads the whole file once: about 15 ms for LeViT-384 (73 MiB),
    /// 2 ms for LeViT-128S; it catches a single flipped byte, which would
    /// otherwise give wrong logits silently.
    #[arg(long)]
    no_verify: bool,
    /// Verify the checksums (the default; kept for older scripts).
    #[arg(long, hide = true, conflicts_with = "no_verify")]
    verify: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Classify JPEG, PNG and WebP images (files or directories) with ImageNet class names.
    #[command(after_help = "\
Preprocessing is timm's eval transform for LeViT, reproduced exactly: shorter side
resized to 248 (bicubic, antialiased, as PIL), center crop 224, ImageNet mean/std.
--crop-pct 0.875 gives the facebookresearch/LeViT setting (resize to 256). As in timm,
alpha is dropped, grey is replicated, and EXIF orientation is ignored (--exif applies it).

Directories are walked recursively for .jpg/.jpeg/.png/.webp files. Images run in
parallel, one engine per worker thread. A file that cannot be read is reported on
stderr and skipped. Results go to stdout in input order; with --json, one JSON object
per line: {\"path\": ..., \"top\": [{\"class\", \"label\", \"synset\", \"probability\"}]}
or {\"path\": ..., \"error\": ...}.

Exit status: 0 all images classified; 3 one or more images failed, even all of them
(each is reported; the others were classified); 1 nothing could run (bad model, no
images found); 2 bad arguments.

Examples:
  levit classify --model levit_128s.lvt cat.jpg
  levit classify --model levit_128s.lvt --top 3 --threads 4 ~/Pictures
  levit classify --model levit_128s.lvt --json photos/ > results.jsonl
  levit classify --model levit_128s.lvt --crop-pct 0.875 cat.jpg")]
    Classify {
        /// Model file written by `levit-weights convert`.
        #[arg(long, value_name = "M.lvt")]
        model: PathBuf,
        /// Image files and directories.
        #[arg(required = true, value_name = "IMAGE_OR_DIR")]
        inputs: Vec<PathBuf>,
        /// Classes to print per image.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
        top: u16,
        /// Print one JSON object per image (JSON Lines) instead of text.
        #[arg(long)]
        json: bool,
        /// Decode threads, and engines (one thread each): images are decoded N at a
        /// time while N engines run batches [default: number of cores].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        threads: Option<u16>,
        /// Images per engine call: every weight is read once per batch instead of once
        /// per image (the results are the same for every batch size).
        #[arg(long, default_value_t = 8, value_name = "N",
              value_parser = clap::value_parser!(u16).range(1..=levit::MAX_BATCH as i64))]
        batch: u16,
        /// After the summary, print the CPU time per image of the engines (at the batch
        /// size) and of decoding and preprocessing, and the images/s the cores would
        /// reach if they never waited (cores / (engine + decode)).
        #[arg(long)]
        stats: bool,
        /// Fraction of the resized image kept by the center crop: 0.9 is timm's LeViT
        /// setting (resize 248, crop 224), 0.875 the facebookresearch one (256 -> 224).
        #[arg(long, default_value_t = levit::preprocess::TIMM_CROP_PCT, value_name = "F",
              value_parser = crop_pct)]
        crop_pct: f64,
        /// Rotate/flip images by their EXIF orientation first (timm does not).
        #[arg(long)]
        exif: bool,
        /// Classify JPEGs whose data ends early, the missing part grey. By default they
        /// are refused as "image file is truncated", as PIL (and so timm) refuses them.
        #[arg(long)]
        allow_truncated: bool,
        /// Never show the progress bar (it is only shown when stderr is a terminal).
        #[arg(long)]
        no_progress: bool,
        #[command(flatten)]
        verify: VerifyFlags,
        #[command(flatten)]
        flags: ModelFlags,
    },
    /// Describe a model file: config, parameters, MACs, size, format, checksums, SIMD path.
    #[command(after_help = "\
Verifies every tensor's CRC-32 (exit status 1 if one does not match).

Examples:
  levit info levit_128s.lvt
  levit info --json levit_128s.lvt")]
    Info {
        /// Model file.
        #[arg(value_name = "M.lvt")]
        model: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        flags: ModelFlags,
    },
    /// Run a model on raw tensors: [N,3,H,W] f32 .npy in, [N,classes] f32 .npy logits out.
    #[command(after_help = "\
The input must already be preprocessed (normalized float32, NCHW). The output holds
the logits (before softmax), one row per image; a line on stderr says what was
written.

Example:
  levit infer --model levit_128s.lvt --input x.npy --output logits.npy")]
    Infer {
        /// Model file written by `levit-weights convert`.
        #[arg(long, value_name = "M.lvt")]
        model: PathBuf,
        /// Input images, normalized, float32 [N, 3, H, W].
        #[arg(long, value_name = "X.npy")]
        input: PathBuf,
        /// Where to write the logits, float32 [N, classes].
        #[arg(long, value_name = "Y.npy")]
        output: PathBuf,
        #[command(flatten)]
        verify: VerifyFlags,
        #[command(flatten)]
        flags: ModelFlags,
    },
}

fn main() -> ExitCode {
    // Past a file-size limit (`ulimit -f`) the kernel would kill us with SIGXFSZ in the
    // middle of writing an output, leaving its temporary file behind; ignored, the
    // write fails with EFBIG instead and `levit infer` reports it and cleans up.
    #[cfg(unix)]
    // SAFETY: `signal` with SIG_IGN installs no handler code; called once, before any
    // other thread exists.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    // Errors are reported as one line; a panic would be a bug, but even then print one
    // line rather than a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        levit_cli::output::note(&format!("levit: internal error (please report): {msg}"));
    }));
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Classify {
            model,
            inputs,
            top,
            json,
            threads,
            batch,
            stats,
            crop_pct,
            exif,
            allow_truncated,
            no_progress,
            verify,
            flags,
        } => levit_cli::classify::command(&levit_cli::classify::Args {
            model,
            inputs,
            top: top as usize,
            json,
            threads: threads.map(usize::from),
            batch: usize::from(batch),
            stats,
            crop_pct,
            exif,
            allow_truncated,
            progress: !no_progress,
            load: LoadSettings {
                isa: flags.isa,
                precision: flags.precision,
                keep_float: flags.keep_float,
                verify_checksums: !verify.no_verify,
                max_gmac: flags.max_gmac,
            },
        }),
        Command::Info { model, json, flags } => (|| {
            let settings = LoadSettings {
                isa: flags.isa,
                precision: flags.precision,
                keep_float: flags.keep_float,
                verify_checksums: false,
                max_gmac: flags.max_gmac,
            };
            let info = levit_cli::info::gather(&model, &settings)?;
            let text = if json {
                format!("{:#}\n", info.to_json(&model))
            } else {
                info.to_text(&model)
            };
            levit_cli::output::print(&text)?;
            match &info.checksums {
                Ok(()) => Ok(0),
                Err(e) => Err(anyhow::anyhow!("{}: {e}", model.display())),
            }
        })(),
        Command::Infer {
            model,
            input,
            output,
            verify,
            flags,
        } => levit_cli::infer::command(
            &model,
            &input,
            &output,
            &LoadSettings {
                isa: flags.isa,
                precision: flags.precision,
                keep_float: flags.keep_float,
                verify_checksums: !verify.no_verify,
                max_gmac: flags.max_gmac,
            },
        )
        .map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        // The reader of stdout went away: nobody to tell, but results were lost.
        Err(e) if matches!(e.downcast_ref(), Some(OutputError::Closed)) => {
            ExitCode::from(EXIT_ERROR)
        }
        Err(e) => {
            let line = format!("{e:#}").replace(['\n', '\r'], " ");
            levit_cli::output::note(&format!("levit: error: {line}"));
            ExitCode::from(EXIT_ERROR)
        }
    }
}
