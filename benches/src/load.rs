//! Getting the model: a file, or a paper variant with random weights synthesised in
//! memory. Only the load itself is timed, not the synthesis.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use levit::{synth, Isa, LoadMode, Model, ModelOptions, Precision};

use crate::args::Args;

/// A loaded model, how long loading took and what it came from.
pub struct Loaded {
    pub model: Model,
    pub load_ms: f64,
    pub source: String,
}

pub fn load(args: &Args) -> Result<Loaded> {
    let isa = args.isa.as_deref().map(Isa::parse).transpose()?;
    let precision = args
        .precision
        .as_deref()
        .map(Precision::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let keep_float = match &args.keep_float {
        Some(list) => levit::KeepFloat::parse(list).map_err(anyhow::Error::msg)?,
        None => levit::KeepFloat::none(),
    };
    let options = ModelOptions {
        isa,
        precision,
        keep_float,
        mode: if args.owned {
            LoadMode::Owned
        } else {
            LoadMode::Mmap
        },
        ..ModelOptions::default()
    };
    let (model, load_ms, source) = match (&args.model, &args.variant) {
        (Some(path), _) => {
            let t = Instant::now();
            let m = Model::load_with(path, options.clone())
                .with_context(|| format!("loading {}", path.display()))?;
            (m, t.elapsed(), path.display().to_string())
        }
        (None, Some(v)) => {
            let config =
                synth::variant_config(v).with_context(|| format!("unknown variant {v:?}"))?;
            let bytes = synth::random_weight_file(&config, 0)?;
            let t = Instant::now();
            let m = Model::from_bytes(&bytes, options)?;
            (
                m,
                t.elapsed(),
                format!("{} (random weights, from memory)", config.variant),
            )
        }
        (None, None) => bail!("give --model FILE or --variant NAME"),
    };
    Ok(Loaded {
        model,
        load_ms: load_ms.as_secs_f64() * 1e3,
        source,
    })
}
