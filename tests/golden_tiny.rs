//! Tiny LeViT configs (224 input, every resolution and both attention kinds, Hardswish
//! and SiLU) against the PyTorch dumps committed in `tests/fixtures/golden-tiny`.
//! Runs with plain `cargo test`, no Python.

use std::path::Path;

#[test]
fn tiny_models_match_pytorch_on_every_path() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden-tiny");
    levit_rs::check_dump(&dir, &["tiny_hswish", "tiny_silu"]);
}

/// The harness must notice a subtle bug: here, two heads' attention-bias rows swapped
/// in the first stage-1 block (what a wrong bias index would do).
#[test]
fn harness_catches_a_swapped_bias_table() {
    use levit_format::{write_weight_file, TensorBytes, TensorData, WeightFile};

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden-tiny");
    let models = levit_rs::read_manifest(&dir).unwrap();
    let model = models.iter().find(|m| m.name == "tiny_hswish").unwrap();
    let file = WeightFile::from_bytes(&std::fs::read(&model.files["timm"]).unwrap(), true).unwrap();
    let target = "stages.1.blocks.0.attn.attention_biases";
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = file
        .tensors()
        .map(|t| {
            let mut data = t.f32().unwrap().to_vec();
            if t.name == target {
                let row = t.shape[1];
                let (first, rest) = data.split_at_mut(row);
                first.swap_with_slice(&mut rest[..row]);
            }
            (t.name.to_string(), t.shape.to_vec(), data)
        })
        .collect();
    let views: Vec<TensorData> = tensors
        .iter()
        .map(|(n, s, d)| TensorData {
            name: n,
            shape: s,
            data: TensorBytes::F32(d),
        })
        .collect();
    let path = std::env::temp_dir().join(format!("levit-swapped-{}.lvt", std::process::id()));
    std::fs::write(
        &path,
        write_weight_file(file.config_json(), &views, "corrupted"),
    )
    .unwrap();
    let report =
        levit_rs::check_model(model, &path, levit::Precision::F32, levit::Isa::best()).unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        report.failures.iter().any(|f| f.contains("stage stage1")),
        "swapped bias rows went unnoticed: {:?}",
        report.failures
    );
    assert!(
        report.failures.iter().all(|f| !f.contains("stage stage0")),
        "stage0 is before the bug"
    );
}
