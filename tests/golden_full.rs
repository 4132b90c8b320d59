//! The five paper variants, converted from both checkpoint layouts, against PyTorch.
//!
//! The dumps are large, so they are generated (by `.ci/run`, or by hand with
//! `levit-weights dump --out tests/golden-full`) rather than committed. Set
//! `LEVIT_GOLDEN_DIR` to use another directory. When `LEVIT_REQUIRE_FULL_GOLDEN=1`
//! (CI sets it) a missing dump fails the test instead of skipping it.
//!
//! This test has its own `main` (`harness = false` in the root `Cargo.toml`): libtest
//! captures the output of a passing test, so a skipped golden test would show as `ok`
//! in 0.00 s. Here the skip is a line of its own in the normal `cargo test` output.

use std::path::PathBuf;
use std::process::ExitCode;

const VARIANTS: [&str; 5] = [
    "levit_128s",
    "levit_128",
    "levit_192",
    "levit_256",
    "levit_384",
];

const NAME: &str = "paper_variants_match_pytorch_from_both_layouts";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("{NAME}: test");
        return ExitCode::SUCCESS;
    }
    if !levit_rs::selected(&args, NAME) || args.iter().any(|a| a == "--ignored") {
        println!("\nrunning 0 tests\n\ntest result: ok. 0 passed; 0 failed; 1 filtered out\n");
        return ExitCode::SUCCESS;
    }
    let dir = std::env::var_os("LEVIT_GOLDEN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden-full"));
    let required = std::env::var("LEVIT_REQUIRE_FULL_GOLDEN").is_ok_and(|v| v == "1");
    println!("\nrunning 1 test");
    if !dir.join("manifest.json").exists() {
        if required {
            println!("test {NAME} ... FAILED\n");
            eprintln!(
                "LEVIT_REQUIRE_FULL_GOLDEN=1 but no full-size dump at {} (run levit-weights dump)",
                dir.display()
            );
            return ExitCode::FAILURE;
        }
        println!(
            "test {NAME} ... SKIPPED: no full-size PyTorch dump at {}; `bash .ci/run` makes \
             one, or `levit-weights dump --out {}`\n\ntest result: ok. 0 passed; 0 failed; \
             1 skipped\n",
            dir.display(),
            dir.display()
        );
        return ExitCode::SUCCESS;
    }
    // check_dump panics on a mismatch, naming it; the default panic hook prints it.
    levit_rs::check_dump(&dir, &VARIANTS);
    println!("test {NAME} ... ok\n\ntest result: ok. 1 passed; 0 failed\n");
    ExitCode::SUCCESS
}
