//! Classify one photo with the engine embedded in a program:
//! `cargo run --release -p levit --features preprocess --example classify -- levit_128s.lvt cat.jpg`
use std::sync::Arc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, model, photo] = &args[..] else {
        return Err("usage: classify MODEL.lvt IMAGE".into());
    };
    let model = Arc::new(levit::Model::load(model)?);
    let mut engine = levit::Engine::new(model.clone()); // one per thread, sharing `model`
    let image = levit::preprocess::open_image(photo)?; // JPEG, PNG or WebP
    let input = levit::preprocess(&image); // timm's eval transform: [3, 224, 224]
    let logits = engine.infer(&input)?;
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    let mut ranked: Vec<(usize, f32)> = logits
        .iter()
        .map(|&l| (l - max).exp() / sum)
        .enumerate()
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (class, p) in ranked.iter().take(5) {
        println!("{:6.2}%  class {class}", 100.0 * p);
    }
    Ok(())
}
