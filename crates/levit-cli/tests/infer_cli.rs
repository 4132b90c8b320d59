//! `levit infer` end to end through the real binary: outputs and error messages.

mod common;

use std::path::Path;

use common::{levit, tiny_model, Workdir};
use levit::synth;
use levit_cli::npy;
use npyz::WriterBuilder;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn infer(model: &Path, input: &Path, output: &Path) -> (bool, String) {
    let run = levit(&[
        "infer",
        "--model",
        s(model),
        "--input",
        s(input),
        "--output",
        s(output),
    ]);
    (run.code == 0, run.stderr)
}

#[test]
fn infer_writes_the_engines_logits() {
    let dir = Workdir::new("infer-ok");
    let model = tiny_model(&dir, "tiny.lvt", 10);
    let mut rng = synth::Rng::new(3);
    let x: Vec<f32> = (0..2 * 3 * 224 * 224).map(|_| rng.normal()).collect();
    npy::write_f32(&dir.path("x.npy"), &[2, 3, 224, 224], &x).unwrap();
    let (ok, err) = infer(&model, &dir.path("x.npy"), &dir.path("y.npy"));
    assert!(ok, "{err}");
    // It says what it wrote, on stderr (stdout stays free for pipelines).
    let said = format!(
        "levit: wrote float32 logits [2, 10] to {} (2 images in ",
        dir.path("y.npy").display()
    );
    assert!(err.starts_with(&said), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let y = npy::read_f32(&dir.path("y.npy")).unwrap();
    assert_eq!(y.shape, vec![2, 10]);
    let mut engine = levit::Engine::load(&model).unwrap();
    assert_eq!(engine.infer(&x[..3 * 224 * 224]).unwrap(), &y.data[..10]);
}

#[test]
fn wrong_shape_dtype_and_missing_files_are_one_line_errors() {
    let dir = Workdir::new("infer-err");
    let model = tiny_model(&dir, "tiny.lvt", 10);
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
