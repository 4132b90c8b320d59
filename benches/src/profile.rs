//! `--profile`: time per layer group (each stem conv, each attention, each MLP, head) and
//! per kernel kind, each step timed by its fastest run, with each one's GMAC/s.

use anyhow::Result;
use levit::Engine;

/// The profile group of a step label: each stem conv (`stem.0` ..), `stages.1.downsample.attn`,
/// `stages.0.blocks.2.mlp`, `head`; `None` for bookkeeping steps.
fn profile_group(label: &str) -> Option<String> {
    if label.starts_with("tap.") {
        return None;
    }
    if label.starts_with("head") {
        return Some("head".into());
    }
    for part in [".attn", ".mlp"] {
        if let Some(i) = label.find(part) {
            return Some(label[..i + part.len()].to_string());
        }
    }
    Some(label.to_string())
}

/// Runs `iters` profiled inferences of `images` (one image: `infer`; more: one
/// `infer_batch` of all of them) and prints time per image per layer group, each
/// step's time its fastest run.
pub fn print_profile(engine: &mut Engine, images: &[f32], iters: usize) -> Result<()> {
    // The model, not a copy of its plan (whose bias tables alone are 4.6 MB on 384).
    let model = std::sync::Arc::clone(engine.model());
    let plan = model.plan();
    let per_image = engine.model().input_len();
    let batch = images.len() / per_image;
    // Each step's fastest run over the iterations: on a shared (virtual) core the
    // mean of a step soaks up whatever else ran meanwhile, the minimum much less.
    let mut nanos = vec![u64::MAX; plan.steps.len()];
    let mut run_nanos = vec![0u64; plan.steps.len()];
    let mut logits = vec![0.0f32; batch * engine.model().num_classes()];
    for _ in 0..iters {
        run_nanos.fill(0);
        if batch == 1 {
            engine.infer_profiled(images, &mut run_nanos)?;
        } else {
            engine.infer_batch_profiled(images, &mut logits, &mut run_nanos)?;
        }
        for (best, ns) in nanos.iter_mut().zip(&run_nanos) {
            *best = (*best).min(*ns);
        }
    }
    // Per image from here on.
    let iters = batch;
    let mut groups: Vec<(String, f64, u64)> = Vec::new();
    let mut kinds = [
        ("gemm", 0.0f64, 0u64),
        ("attention", 0.0, 0),
        ("stem conv", 0.0, 0),
        ("other", 0.0, 0),
    ];
    for ((step, label), ns) in plan.steps.iter().zip(&plan.labels).zip(&nanos) {
        let ms = *ns as f64 / 1e6 / iters as f64;
        let kind = match step {
            levit::graph::Step::Gemm(_) => 0,
            levit::graph::Step::Attention(_) => 1,
            levit::graph::Step::Conv(_) => 2,
            _ => 3,
        };
        kinds[kind].1 += ms;
        kinds[kind].2 += step.macs();
        let Some(group) = profile_group(label) else {
            continue;
        };
        match groups.last_mut() {
            Some(g) if g.0 == group => {
                g.1 += ms;
                g.2 += step.macs();
            }
            _ => groups.push((group, ms, step.macs())),
        }
    }
    let total: f64 = groups.iter().map(|g| g.1).sum();
    println!(
        "\nper-layer profile (per image, each step's fastest of the runs of batches of {batch}, {total:.3} ms total)"
    );
    print_table(
        "layer",
        groups.iter().map(|(n, ms, macs)| (n.as_str(), *ms, *macs)),
        total,
    );
    print_table("by kernel", kinds, total);
    Ok(())
}

/// A header row, then `name ms % GMAC/s` for each `(name, ms, macs)`.
fn print_table<'a>(title: &str, rows: impl IntoIterator<Item = (&'a str, f64, u64)>, total: f64) {
    println!("{title:<32} {:>9} {:>6} {:>9}", "ms", "%", "GMAC/s");
    for (name, ms, macs) in rows {
        let rate = if ms > 0.0 {
            macs as f64 / 1e6 / ms
        } else {
            0.0
        };
        println!(
            "{name:<32} {ms:>9.3} {:>5.1}% {rate:>9.1}",
            100.0 * ms / total
        );
    }
}
