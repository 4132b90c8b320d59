//! Helpers for the CLI tests: temporary folders, small models, running the binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use levit::synth;

/// A temporary folder removed on drop.
pub struct Workdir(pub PathBuf);

impl Workdir {
    pub fn new(name: &str) -> Workdir {
        let dir = std::env::temp_dir().join(format!("levit-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Workdir(dir)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A committed test image.
pub fn image(name: &str) -> PathBuf {
    root().join("tests/fixtures/images").join(name)
}

/// The tiny 10-class model dumped from PyTorch (timm layout).
pub fn golden_tiny() -> PathBuf {
    root().join("tests/fixtures/golden-tiny/tiny_hswish/model_timm.lvt")
}

/// A small random-weight model with `classes` classes, written to `dir`.
pub fn tiny_model(dir: &Workdir, name: &str, classes: usize) -> PathBuf {
    let mut c = synth::variant_config("128s").unwrap();
    c.embed_dim = vec![32, 48, 64];
    c.key_dim = 8;
    c.num_heads = vec![2, 3, 4];
    c.depth = vec![1, 1, 1];
    c.num_classes = classes;
    let path = dir.path(name);
    std::fs::write(&path, synth::random_weight_file(&c, 1).unwrap()).unwrap();
    path
}

/// What a run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts a failure reported as exactly one line on stderr containing `needle`.
    pub fn assert_one_line_error(&self, needle: &str) {
        assert_ne!(self.code, 0, "expected failure; stderr: {}", self.stderr);
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}: {}",
            self.stderr
        );
        assert_eq!(
            self.stderr.trim_end().lines().count(),
            1,
            "not one line: {}",
            self.stderr
        );
        assert!(self.stderr.starts_with("levit: error: "), "{}", self.stderr);
    }
}

/// Runs the real `levit` binary.
pub fn levit<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_levit"))
        .args(args)
        .env_remove("LEVIT_ISA")
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    };
    for bad in ["panicked", "stack backtrace", "internal error"] {
        assert!(
            !run.stderr.contains(bad),
            "the CLI panicked: {}",
            run.stderr
        );
    }
    run
}
