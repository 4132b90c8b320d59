//! The five paper variants, converted from both checkpoint layouts, against PyTorch.
//!
//! The dumps are large, so they are generated (by `.ci/run`, or by hand with
//! `levit-weights dump --out tests/golden-full`) rather than committed. Set
//! `LEVIT_GOLDEN_DIR` to use another directory. When `LEVIT_REQUIRE_FULL_GOLDEN=1`
//! (CI sets it) a missing dump fails the test instead of skipping it.

use std::path::PathBuf;

const VARIANTS: [&str; 5] = [
    "levit_128s",
    "levit_128",
    "levit_192",
    "levit_256",
    "levit_384",
];

#[test]
fn paper_variants_match_pytorch_from_both_layouts() {
    let dir = std::env::var_os("LEVIT_GOLDEN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden-full"));
    let required = std::env::var("LEVIT_REQUIRE_FULL_GOLDEN").is_ok_and(|v| v == "1");
    if !dir.join("manifest.json").exists() {
        assert!(
            !required,
            "LEVIT_REQUIRE_FULL_GOLDEN=1 but no full-size dump at {} (run levit-weights dump)",
            dir.display()
        );
        eprintln!(
            "SKIPPED: no full-size dump at {}; generate one with `levit-weights dump --out {}`",
            dir.display(),
            dir.display()
        );
        return;
    }
    levit_rs::check_dump(&dir, &VARIANTS);
}
