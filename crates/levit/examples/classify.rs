//! Embeds the engine: classify one photo in 20 lines.
//! `cargo run --release -p levit --features preprocess --example classify -- levit_128s.lvt cat.jpg`
use std::sync::Arc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, photo] = &args[..] else {
        return Err("usage: classify MODEL.lvt IMAGE".into());
    };
    let model = Arc::new(levit::Model::load(model)?); // mapped weights, shareable
    let mut engine = levit::Engine::new(model.clone()); // one per thread
    let image = levit::preprocess::open_image(photo)?; // JPEG, PNG or WebP, as PIL decodes it
    let logits = engine.infer(&levit::preprocess(&image))?; // timm's eval transform, then LeViT
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|l| (l - max).exp()).sum();
    let mut ranked: Vec<(usize, f32)> = (0..logits.len())
        .map(|i| (i, (logits[i] - max).exp() / sum))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (class, p) in &ranked[..5.min(ranked.len())] {
        println!("{:6.2}%  class {class}", 100.0 * p);
    }
    Ok(())
}
