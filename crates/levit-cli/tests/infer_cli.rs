//! `levit infer` end to end through the real binary: outputs and error messages.

use std::path::{Path, PathBuf};
use std::process::Command;

use levit::synth;
use levit_cli::npy;
use npyz::WriterBuilder;

struct Workdir(PathBuf);

impl Workdir {
    fn new(name: &str) -> Workdir {
        let dir = std::env::temp_dir().join(format!("levit-cli-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Workdir(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tiny_model(dir: &Workdir) -> (PathBuf, levit::Config) {
    let mut c = synth::variant_config("128s").unwrap();
    c.embed_dim = vec![32, 48, 64];
    c.key_dim = 8;
    c.num_heads = vec![2, 3, 4];
    c.depth = vec![1, 1, 1];
    c.num_classes = 10;
    let path = dir.path("tiny.lvt");
    std::fs::write(&path, synth::random_weight_file(&c, 1).unwrap()).unwrap();
    (path, c)
}

fn levit(args: &[&Path]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_levit"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "the CLI panicked: {stderr}");
    (out.status.success(), stderr)
}

fn infer(model: &Path, input: &Path, output: &Path) -> (bool, String) {
    levit(&[
        Path::new("infer"),
        Path::new("--model"),
        model,
        Path::new("--input"),
        input,
        Path::new("--output"),
        output,
    ])
}

#[test]
fn infer_writes_the_engines_logits() {
    let dir = Workdir::new("ok");
    let (model, _) = tiny_model(&dir);
    let mut rng = synth::Rng::new(3);
    let x: Vec<f32> = (0..2 * 3 * 224 * 224).map(|_| rng.normal()).collect();
    npy::write_f32(&dir.path("x.npy"), &[2, 3, 224, 224], &x).unwrap();
    let (ok, err) = infer(&model, &dir.path("x.npy"), &dir.path("y.npy"));
    assert!(ok, "{err}");
    let y = npy::read_f32(&dir.path("y.npy")).unwrap();
    assert_eq!(y.shape, vec![2, 10]);
    let mut engine = levit::Engine::load(&model).unwrap();
    assert_eq!(engine.infer(&x[..3 * 224 * 224]).unwrap(), &y.data[..10]);
}

#[test]
fn wrong_shape_dtype_and_missing_files_are_one_line_errors() {
    let dir = Workdir::new("err");
    let (model, _) = tiny_model(&dir);
    npy::write_f32(
        &dir.path("bad_shape.npy"),
        &[1, 3, 224, 223],
        &vec![0.0; 3 * 224 * 223],
    )
    .unwrap();
    let (ok, err) = infer(&model, &dir.path("bad_shape.npy"), &dir.path("y.npy"));
    assert!(!ok && err.contains("expected [N, 3, 224, 224]"), "{err}");

    let f = std::fs::File::create(dir.path("f64.npy")).unwrap();
    let mut w = npyz::WriteOptions::<f64>::new()
        .default_dtype()
        .shape(&[1, 3, 224, 224])
        .writer(f)
        .begin_nd()
        .unwrap();
    w.extend(std::iter::repeat_n(0.0f64, 3 * 224 * 224))
        .unwrap();
    w.finish().unwrap();
    let (ok, err) = infer(&model, &dir.path("f64.npy"), &dir.path("y.npy"));
    assert!(!ok && err.contains("dtype is <f8"), "{err}");

    let (ok, err) = infer(&model, &dir.path("missing.npy"), &dir.path("y.npy"));
    assert!(!ok && err.contains("missing.npy"), "{err}");
    let (ok, err) = infer(
        &dir.path("missing.lvt"),
        &dir.path("f64.npy"),
        &dir.path("y.npy"),
    );
    assert!(!ok && err.contains("missing.lvt"), "{err}");
    std::fs::write(dir.path("junk.lvt"), b"this is not a model").unwrap();
    let (ok, err) = infer(
        &dir.path("junk.lvt"),
        &dir.path("f64.npy"),
        &dir.path("y.npy"),
    );
    assert!(!ok && err.contains("junk.lvt"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
}
