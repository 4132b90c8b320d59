//! `levit infer`: raw tensors in, logits out.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use levit::{Engine, ModelOptions};

use crate::model::{self, LoadSettings};
use crate::npy;

/// Runs a model over `[N, C, H, W]` f32 images from `input`, writing `[N, classes]`
/// logits to `output`.
pub fn run(model_path: &Path, input: &Path, output: &Path, options: ModelOptions) -> Result<()> {
    let model =
        levit::Model::load_with(model_path, options).map_err(|e| model::describe(model_path, e))?;
    infer(model, input, output)
}

/// [`run`] with the command line's settings.
pub fn command(
    model_path: &Path,
    input: &Path,
    output: &Path,
    settings: &LoadSettings,
) -> Result<()> {
    infer(model::load(model_path, settings)?, input, output)
}

fn infer(model: levit::Model, input: &Path, output: &Path) -> Result<()> {
    let config = model.config().clone();
    let x = npy::read_f32(input)?;
    let expected = [config.in_chans, config.img_size, config.img_size];
    if x.shape.len() != 4 || x.shape[1..] != expected || x.shape[0] == 0 {
        bail!(
            "{}: shape {:?}, expected [N, {}, {}, {}] (N >= 1)",
            input.display(),
            x.shape,
            expected[0],
            expected[1],
            expected[2]
        );
    }
    let images = x.shape[0];
    let mut engine = Engine::new(Arc::new(model));
    let classes = config.num_classes;
    let count = images
        .checked_mul(classes)
        .filter(|n| n.checked_mul(4).is_some())
        .ok_or_else(|| anyhow!("{images} images of {classes} classes: the output is too large"))?;
    let mut logits: Vec<f32> = Vec::new();
    logits
        .try_reserve_exact(count)
        .map_err(|_| anyhow!("cannot allocate {count} logits for the output"))?;
    logits.resize(count, 0.0);
    let start = std::time::Instant::now();
    engine.infer_batch(&x.data, &mut logits)?;
    let elapsed = start.elapsed();
    npy::write_f32(output, &[images, classes], &logits)?;
    crate::output::note(&format!(
        "levit: wrote float32 logits [{images}, {classes}] to {} ({images} image{} in {:.3} s)",
        output.display(),
        if images == 1 { "" } else { "s" },
        elapsed.as_secs_f64()
    ));
    Ok(())
}
