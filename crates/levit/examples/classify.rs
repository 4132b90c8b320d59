//! Embeds the engine: classify one photo.
//! `cargo run --release -p levit --features preprocess --example classify -- levit_128s.lvt cat.jpg`
use std::sync::Arc;

fn main() -> levit::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, photo] = &args[..] else {
        eprintln!("usage: classify MODEL.lvt IMAGE");
        std::process::exit(2);
    };
    let model = Arc::new(levit::Model::load(model)?); // mapped weights, shareable
    let mut engine = levit::Engine::new(model.clone()); // one per thread
    let image = levit::preprocess::open_image(photo)?; // JPEG, PNG or WebP, as PIL decodes it
    let input = model.preprocessing().run(&image)?; // timm's eval transform
    let logits = engine.infer(&input)?; // [3, 224, 224] -> 1000 logits
    for p in levit::imagenet::top_k(logits, 5)? {
        println!("{:6.2}%  {}", 100.0 * p.probability, p.label());
    }
    Ok(())
}
