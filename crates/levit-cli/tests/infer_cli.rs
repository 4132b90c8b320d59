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

/// Runs `levit` with `args` through `sh -c "{pre}; exec levit ..."`, killing it if it
/// has not finished after `limit`: returns (exit code, stderr), or `None` on a hang.
fn levit_within(pre: &str, args: &[&str], limit: std::time::Duration) -> Option<(i32, String)> {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("{pre}\nexec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_levit"))
        .args(args)
        .env_remove("LEVIT_ISA")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return Some((status.code().unwrap_or(-1), err));
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn assert_one_line_error(code: i32, err: &str, needle: &str) {
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("levit: error: "), "{err}");
    assert!(err.contains(needle), "lacks {needle:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
}

fn files_in(dir: &Workdir) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[cfg(unix)]
#[test]
fn special_files_as_input_fail_fast() {
    let dir = Workdir::new("infer-special");
    let model = tiny_model(&dir, "tiny.lvt", 10);
    let fifo = dir.path("fifo.npy");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    std::os::unix::fs::symlink("/dev/zero", dir.path("zero.npy")).unwrap();
    let y = dir.path("y.npy");
    for (input, kind) in [
        (fifo.clone(), "(a FIFO)"),
        ("/dev/zero".into(), "(a character device)"),
        (dir.path("zero.npy"), "(a character device)"),
        (dir.0.clone(), "(a directory)"),
    ] {
        let args = [
            "infer",
            "--model",
            s(&model),
            "--input",
            s(&input),
            "--output",
            s(&y),
        ];
        let Some((code, err)) = levit_within("", &args, std::time::Duration::from_secs(60)) else {
            panic!("levit infer --input {} hung", input.display());
        };
        let want = format!("{} is not a regular file {kind}", input.display());
        assert_one_line_error(code, &err, &want);
    }
    assert!(!y.exists());
}

fn header_only(dir: &Workdir, name: &str, shape: &str, data: &[u8]) -> std::path::PathBuf {
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    while !(10 + dict.len() + 1).is_multiple_of(64) {
        dict.push(' ');
    }
    dict.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((dict.len() as u16).to_le_bytes());
    bytes.extend(dict.as_bytes());
    bytes.extend(data);
    let path = dir.path(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn lying_and_hostile_headers_write_nothing() {
    let dir = Workdir::new("infer-lying");
    let model = tiny_model(&dir, "tiny.lvt", 1000);
    let y = dir.path("y.npy");
    let nested = format!("{}1{}", "[".repeat(24), "]".repeat(24));
    let cases = [
        // 2^61 images: the element and byte counts wrap to 0 in 64 bits.
        (
            "rows.npy",
            "(2305843009213693952, 3, 224, 224)".to_string(),
            "is too large",
        ),
        (
            "big.npy",
            "(1099511627776, 3, 224, 224)".to_string(),
            "truncated: header says 662029145223462912 bytes of data, file has 0",
        ),
        (
            "overflow.npy",
            "(99999999999999999999999, 3, 224, 224)".to_string(),
            "too large for 64 bits",
        ),
        (
            "negative.npy",
            "(-1, 3, 224, 224)".to_string(),
            "negative dimension",
        ),
        (
            "nested.npy",
            format!("(1, 3, 224, 224), 'x': {nested}"),
            "more than 16 deep",
        ),
        (
            "name.npy",
            "tuple(1, 3, 224, 224)".to_string(),
            "the name tuple, not a literal",
        ),
    ];
    for (name, shape, want) in cases {
        let input = header_only(&dir, name, &shape, &[]);
        let args = [
            "infer",
            "--model",
            s(&model),
            "--input",
            s(&input),
            "--output",
            s(&y),
        ];
        let Some((code, err)) = levit_within("", &args, std::time::Duration::from_secs(30)) else {
            panic!("{name}: levit infer hung");
        };
        assert_one_line_error(code, &err, want);
        assert!(err.contains(name), "{err}");
        assert!(!y.exists(), "{name} wrote {}", y.display());
    }
}

#[test]
fn failed_writes_leave_no_file() {
    let dir = Workdir::new("infer-write");
    let model = tiny_model(&dir, "tiny.lvt", 1000);
    let mut rng = synth::Rng::new(5);
    let x: Vec<f32> = (0..2 * 3 * 224 * 224).map(|_| rng.normal()).collect();
    npy::write_f32(&dir.path("x.npy"), &[2, 3, 224, 224], &x).unwrap();
    let input = dir.path("x.npy");
    let run = |pre: &str, output: &Path| {
        let args = [
            "infer",
            "--model",
            s(&model),
            "--input",
            s(&input),
            "--output",
            s(output),
        ];
        levit_within(pre, &args, std::time::Duration::from_secs(120)).expect("levit infer hung")
    };
    // A folder that does not exist.
    let (code, err) = run("", &dir.path("missing/y.npy"));
    assert_one_line_error(code, &err, "no such file or directory");
    assert!(!dir.path("missing").exists());
    // A file size limit below the 8 KB output (a full disk, as far as the writer sees):
    // the write fails, the old output stays whole, no temporary file is left. The
    // shell does not ignore SIGXFSZ for us: `levit` itself must, or the kernel kills it
    // mid-write and its temporary file stays behind.
    std::fs::write(dir.path("y.npy"), b"old results").unwrap();
    let before = files_in(&dir);
    let (code, err) = run("ulimit -f 4", &dir.path("y.npy"));
    assert_one_line_error(code, &err, "file too large");
    assert!(err.contains("cannot write"), "{err}");
    assert_eq!(std::fs::read(dir.path("y.npy")).unwrap(), b"old results");
    assert_eq!(files_in(&dir), before);
    // Without the limit the same command replaces it.
    let (code, err) = run("", &dir.path("y.npy"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        npy::read_f32(&dir.path("y.npy")).unwrap().shape,
        vec![2, 1000]
    );
    assert_eq!(files_in(&dir), before);
}
