//! Tiny LeViT configs (224 input, every resolution and both attention kinds, Hardswish
//! and SiLU) against the PyTorch dumps committed in `tests/fixtures/golden-tiny`.
//! Runs with plain `cargo test`, no Python.

use std::path::Path;

#[test]
fn tiny_models_match_pytorch_on_every_path() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden-tiny");
    levit_rs::check_dump(&dir, &["tiny_hswish", "tiny_silu"]);
}
