//! Inputs for the timed runs, and the check that the batch path computes what the
//! single-image path does (so throughput mode cannot silently time something else).

use anyhow::{ensure, Result};
use levit::{synth, Engine};

/// `images` distinct normal random images back to back (`[N, C, H, W]`); the first is
/// the same for every `images`, so batch 1 and batch N start from the same input.
pub fn random_images(input_len: usize, images: usize) -> Vec<f32> {
    let mut rng = synth::Rng::new(42);
    (0..input_len * images).map(|_| rng.normal()).collect()
}

/// Runs `infer_batch` once over `inputs` and checks each image's logits against
/// `infer` on that image alone: bit for bit, since batching (GEMMs over the rows of
/// every image) and thread splits never change an output element's reduction order.
pub fn check_batch(engine: &mut Engine, inputs: &[f32], outputs: &mut [f32]) -> Result<()> {
    engine.infer_batch(inputs, outputs)?;
    let model = engine.model().clone();
    let per_image = model.input_len();
    let classes = model.num_classes();
    for (i, (image, batched)) in inputs
        .chunks_exact(per_image)
        .zip(outputs.chunks_exact(classes))
        .enumerate()
    {
        let single = engine.infer(image)?;
        let diff = single
            .iter()
            .zip(batched)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        ensure!(
            single
                .iter()
                .zip(batched)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "infer_batch differs from infer on image {i}: max |difference| {diff:e}"
        );
    }
    Ok(())
}
