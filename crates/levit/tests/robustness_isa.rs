//! SIMD paths: `LEVIT_ISA` really forces the path a default-loaded model runs (checked
//! in child processes, since the variable is read at load), every path stays within the
//! golden tolerance of PyTorch on the committed tiny dumps, and the differences between
//! paths are measured (printed with `--nocapture`; see docs/robustness.md).

mod robustness_common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use levit::{Engine, Error, Isa, Model, ModelOptions};
use robustness_common::{read_npy, repo};

const CHILD: &str = "LEVIT_ROBUSTNESS_ISA_CHILD";
const REL_TOLERANCE: f32 = 1e-4;

fn golden_dir() -> PathBuf {
    repo().join("tests/fixtures/golden-tiny")
}

/// An input `.npy` and PyTorch's logits `.npy` for it.
type Case = (PathBuf, PathBuf);

/// Each tiny golden model: name, timm-layout file, and the cases whose logits the dump
/// holds to the tolerance.
fn golden_cases() -> Vec<(String, PathBuf, Vec<Case>)> {
    let dir = golden_dir();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let inputs = &manifest["inputs"];
    let path = |v: &serde_json::Value| dir.join(v.as_str().unwrap());
    manifest["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let cases = m["cases"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| {
                    c["compare"]
                        .as_array()
                        .is_none_or(|names| names.iter().any(|n| n == "logits"))
                })
                .map(|c| {
                    (
                        path(&inputs[c["input"].as_str().unwrap()]),
                        path(&c["logits"]),
                    )
                })
                .collect();
            (
                m["name"].as_str().unwrap().to_string(),
                path(&m["files"]["timm"]),
                cases,
            )
        })
        .collect()
}

/// All logits of every case of one model, on one engine, concatenated.
fn run_cases(model: Arc<Model>, cases: &[Case]) -> Vec<f32> {
    let per_image = model.input_len();
    let mut engine = Engine::new(model);
    let mut out = Vec::new();
    for (input, _) in cases {
        let (_, x) = read_npy(input);
        for image in x.chunks_exact(per_image) {
            out.extend_from_slice(engine.infer(image).unwrap());
        }
    }
    out
}

fn load_on(file: &PathBuf, isa: Option<Isa>) -> levit::Result<Model> {
    Model::load_with(
        file,
        ModelOptions {
            isa,
            ..ModelOptions::default()
        },
    )
}

/// Runs in a child process that the test below starts with `LEVIT_ISA` set: loads with
/// default options and prints the path and the logits' bits. Does nothing otherwise.
#[test]
fn child_runs_the_path_levit_isa_forces() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let forced = std::env::var("LEVIT_ISA").unwrap_or_default();
    for (name, file, cases) in golden_cases() {
        match load_on(&file, None) {
            Ok(model) => {
                assert_eq!(
                    model.isa().name(),
                    forced,
                    "LEVIT_ISA={forced} not honoured"
                );
                let bits: Vec<String> = run_cases(Arc::new(model), &cases)
                    .iter()
                    .map(|v| format!("{:08x}", v.to_bits()))
                    .collect();
                println!("CHILD {name} {forced} {}", bits.join(","));
            }
            Err(Error::Isa(e)) => println!("CHILD {name} {forced} error: {e}"),
            Err(e) => panic!("{e}"),
        }
    }
}

fn child(isa_name: &str) -> Vec<String> {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_runs_the_path_levit_isa_forces",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("LEVIT_ISA", isa_name)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child with LEVIT_ISA={isa_name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| l.split_once("CHILD ").map(|(_, rest)| rest))
        .map(str::to_string)
        .collect()
}

#[test]
fn levit_isa_forces_the_path_and_every_path_is_within_the_golden_tolerance() {
    let isas = Isa::supported();
    let mut worst_pair = 0.0f32;
    for (name, file, cases) in golden_cases() {
        assert!(!cases.is_empty(), "{name}: no well-conditioned case");
        let torch: Vec<f32> = cases.iter().flat_map(|(_, l)| read_npy(l).1).collect();
        let scale = torch.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let mut per_path = Vec::new();
        for &isa in &isas {
            let logits = run_cases(Arc::new(load_on(&file, Some(isa)).unwrap()), &cases);
            let gap = logits
                .iter()
                .zip(&torch)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            println!(
                "{name:<12} {:<8} max|engine - torch| {gap:.3e} (relative {:.3e}, tolerance {REL_TOLERANCE:.0e})",
                isa.name(),
                gap / scale
            );
            assert!(
                gap <= REL_TOLERANCE * scale,
                "{name} {isa}: {gap} > {}",
                REL_TOLERANCE * scale
            );
            // The same path forced through the environment gives the same bits.
            let lines = child(isa.name());
            let line = lines
                .iter()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap();
            let bits: Vec<String> = logits
                .iter()
                .map(|v| format!("{:08x}", v.to_bits()))
                .collect();
            assert_eq!(
                line,
                &format!("{name} {} {}", isa.name(), bits.join(",")),
                "{name}: LEVIT_ISA={isa}"
            );
            per_path.push((isa, logits));
        }
        for (i, (a, la)) in per_path.iter().enumerate() {
            for (b, lb) in &per_path[i + 1..] {
                let d = la
                    .iter()
                    .zip(lb)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0f32, f32::max);
                let same = la
                    .iter()
                    .zip(lb)
                    .filter(|(x, y)| x.to_bits() == y.to_bits())
                    .count();
                println!(
                    "{name:<12} {a} vs {b}: max|diff| {d:.3e} (relative {:.3e}), {same}/{} logits bit-identical",
                    d / scale,
                    la.len()
                );
                worst_pair = worst_pair.max(d / scale);
            }
        }
    }
    // Each path is within the tolerance of PyTorch, so two paths are within twice it.
    assert!(worst_pair <= 2.0 * REL_TOLERANCE, "{worst_pair}");
}

#[test]
fn unknown_or_unsupported_levit_isa_is_an_error_at_load() {
    for line in child("sse9") {
        assert!(line.contains("error: unknown SIMD path"), "{line}");
    }
    if let Some(missing) = Isa::ALL.into_iter().find(|i| !i.is_supported()) {
        for line in child(missing.name()) {
            assert!(line.contains("does not support"), "{line}");
        }
    }
}
