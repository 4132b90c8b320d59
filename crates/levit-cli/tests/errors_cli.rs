//! Every error a person can run into: one clear line naming what and where, a non-zero
//! exit status, no panic or backtrace (`common::levit` rejects those on every run).

mod common;

use common::{golden_tiny, image, levit, tiny_model, Workdir};
use levit_cli::classify::EXIT_SOME_FAILED;

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn missing_model_file() {
    let dir = Workdir::new("e-missing-model");
    let missing = dir.path("nope.lvt");
    let photo = image("chelsea.png");
    for run in [
        levit(&["classify", "--model", s(&missing), s(&photo)]),
        levit(&["info", s(&missing)]),
        levit(&[
            "infer",
            "--model",
            s(&missing),
            "--input",
            "x.npy",
            "--output",
            "y.npy",
        ]),
    ] {
        let want = format!(
            "levit: error: cannot read model {}: no such file or directory\n",
            missing.display()
        );
        assert_eq!(run.stderr, want);
        assert_eq!(run.code, 1);
    }
    // A missing image reads the same, with "image" for "model".
    let run = levit(&[
        "classify",
        "--model",
        s(&golden_tiny()),
        s(&dir.path("nope.jpg")),
    ]);
    let want = format!(
        "levit: error: cannot read image {}: no such file or directory",
        dir.path("nope.jpg").display()
    );
    assert_eq!(
        run.stderr.lines().next(),
        Some(want.as_str()),
        "{}",
        run.stderr
    );
}

#[test]
fn every_image_failing_exits_3_as_the_help_says() {
    let dir = Workdir::new("e-all-failed");
    std::fs::write(dir.path("a.jpg"), b"not a jpeg").unwrap();
    std::fs::write(dir.path("b.png"), b"not a png").unwrap();
    let m = golden_tiny();
    let (a, b) = (dir.path("a.jpg"), dir.path("b.png"));
    let run = levit(&["classify", "--model", s(&m), s(&a), s(&b)]);
    assert_eq!(run.code, i32::from(EXIT_SOME_FAILED), "{}", run.stderr);
    assert!(run.stderr.contains("2 images, 2 failed"), "{}", run.stderr);
    let run = levit(&["classify", "--model", s(&m), s(&a), s(&image("rocket.jpg"))]);
    assert_eq!(run.code, i32::from(EXIT_SOME_FAILED), "{}", run.stderr);
    // The help text and the README say the same.
    let help = levit(&["classify", "--help"]).stdout;
    assert!(
        help.contains("3 one or more images failed, even all of them"),
        "{help}"
    );
    let readme = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    assert!(
        readme.contains("3 that one or\n  more images failed, even all of them"),
        "README's exit statuses changed: update this test and the help together"
    );
}

#[test]
fn decoder_messages_continue_the_line_in_lowercase() {
    let dir = Workdir::new("e-lowercase");
    std::fs::write(dir.path("bad.png"), b"\x89PNG\r\n\x1a\n garbage").unwrap();
    std::fs::write(dir.path("bad.webp"), b"RIFF\x10\0\0\0WEBPVP8 junk").unwrap();
    std::fs::write(
        dir.path("bad.jpg"),
        b"\xff\xd8\xff\xe0 definitely not a jpeg",
    )
    .unwrap();
    for name in ["bad.png", "bad.webp", "bad.jpg"] {
        let run = levit(&["classify", "--model", s(&golden_tiny()), s(&dir.path(name))]);
        let line = run.stderr.lines().next().unwrap();
        let prefix = format!(
            "levit: error: cannot decode image {}: ",
            dir.path(name).display()
        );
        let reason = line
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{line}"));
        let first = reason.chars().next().unwrap();
        assert!(!first.is_uppercase(), "{line}");
    }
}

#[test]
fn model_path_is_a_directory() {
    let dir = Workdir::new("e-dir-model");
    levit(&["info", s(&dir.0)]).assert_one_line_error("is not a regular file");
}

#[test]
fn not_a_model_file() {
    let dir = Workdir::new("e-junk-model");
    std::fs::write(dir.path("junk.lvt"), b"this is not a model, just text").unwrap();
    std::fs::write(dir.path("empty.lvt"), b"").unwrap();
    for bad in [
        dir.path("junk.lvt"),
        dir.path("empty.lvt"),
        image("chelsea.png"),
    ] {
        let run = levit(&["classify", "--model", s(&bad), s(&image("rocket.jpg"))]);
        run.assert_one_line_error("is not a levit model file");
        run.assert_one_line_error(s(&bad));
        levit(&["info", s(&bad)]).assert_one_line_error("levit-weights convert");
    }
    // A safetensors file from another tool (no levit metadata).
    let header = br#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    let mut st = (header.len() as u64).to_le_bytes().to_vec();
    st.extend_from_slice(header);
    st.extend_from_slice(&[0; 4]);
    let other = dir.path("other.safetensors");
    std::fs::write(&other, st).unwrap();
    for run in [
        levit(&["info", s(&other)]),
        levit(&["classify", "--model", s(&other), s(&image("rocket.jpg"))]),
    ] {
        // The conversion hint comes first, naming the file to convert.
        let want = format!(
            "levit: error: {0} is a safetensors checkpoint, not a levit model: convert it \
             first with `levit-weights convert {0} -o model.lvt` (",
            other.display()
        );
        assert!(run.stderr.starts_with(&want), "{}", run.stderr);
        run.assert_one_line_error(")");
    }
}

#[test]
fn model_of_an_unsupported_format_version() {
    let dir = Workdir::new("e-version");
    let good = std::fs::read(tiny_model(&dir, "v1.lvt", 10)).unwrap();
    let needle = br#""format_version":"1""#;
    let at = good
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("version in header");
    let mut newer = good.clone();
    newer[at + needle.len() - 2] = b'7';
    std::fs::write(dir.path("v7.lvt"), newer).unwrap();
    let run = levit(&["info", s(&dir.path("v7.lvt"))]);
    run.assert_one_line_error("format version 7 is not supported");
    run.assert_one_line_error("v7.lvt");
    levit(&[
        "classify",
        "--model",
        s(&dir.path("v7.lvt")),
        s(&image("chelsea.png")),
    ])
    .assert_one_line_error("format version 7 is not supported");
}

#[test]
fn corrupted_weights_fail_the_checksum() {
    let dir = Workdir::new("e-crc");
    let mut bytes = std::fs::read(tiny_model(&dir, "ok.lvt", 10)).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(dir.path("bad.lvt"), bytes).unwrap();
    let run = levit(&["info", s(&dir.path("bad.lvt"))]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout
            .contains("checksums     FAILED: tensor `head.bias` is corrupted"),
        "{}",
        run.stdout
    );
    run.assert_one_line_error("is corrupted");
    // classify and infer verify by default; --no-verify skips the check (and then
    // runs on the damaged weights).
    let bad = dir.path("bad.lvt");
    let photo = image("chelsea.png");
    for args in [
        &["classify", "--model", s(&bad), s(&photo)][..],
        &["classify", "--verify", "--model", s(&bad), s(&photo)],
        &[
            "infer",
            "--model",
            s(&bad),
            "--input",
            "x.npy",
            "--output",
            "y.npy",
        ],
    ] {
        let run = levit(args);
        run.assert_one_line_error("tensor `head.bias` is corrupted");
        assert_eq!(run.code, 1);
    }
    let run = levit(&["classify", "--no-verify", "--model", s(&bad), s(&photo)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let help = levit(&["classify", "--help"]).stdout;
    assert!(help.contains("--no-verify"), "{help}");
    assert!(help.contains("ms for LeViT-384"), "{help}");
}

#[test]
fn missing_and_unreadable_images_are_skipped_and_reported() {
    let dir = Workdir::new("e-images");
    std::fs::write(
        dir.path("garbage.jpg"),
        b"\xff\xd8\xff\xe0 definitely not a jpeg",
    )
    .unwrap();
    std::fs::write(dir.path("empty.png"), b"").unwrap();
    let png = std::fs::read(image("chelsea.png")).unwrap();
    std::fs::write(dir.path("truncated.png"), &png[..png.len() / 3]).unwrap();
    std::fs::write(dir.path("text.webp"), b"hello").unwrap();
    let bad = [
        "missing.jpg",
        "garbage.jpg",
        "empty.png",
        "truncated.png",
        "text.webp",
    ];
    let mut args = vec![
        "classify".to_string(),
        "--json".into(),
        "--model".into(),
        s(&golden_tiny()).into(),
    ];
    args.push(s(&image("chelsea.png")).into());
    args.extend(bad.iter().map(|b| s(&dir.path(b)).to_string()));
    args.push(s(&image("rocket.jpg")).into());
    let run = levit(&args);
    assert_eq!(run.code, i32::from(EXIT_SOME_FAILED), "{}", run.stderr);
    let lines: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 7);
    assert!(
        lines[0]["top"].is_array() && lines[6]["top"].is_array(),
        "good images still ran"
    );
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("levit: error: "))
        .collect();
    assert_eq!(errors.len(), bad.len(), "{}", run.stderr);
    for ((name, line), err) in bad.iter().zip(&lines[1..6]).zip(&errors) {
        assert!(line["error"].as_str().unwrap().contains(name), "{line}");
        assert!(err.contains(name), "{err}");
    }
    assert!(
        errors[0].contains("no such file or directory"),
        "{}",
        errors[0]
    );
    assert!(errors[1].contains("cannot decode image"), "{}", errors[1]);
    assert!(run.stderr.contains("7 images, 5 failed"), "{}", run.stderr);
}

#[test]
fn no_images_found() {
    let dir = Workdir::new("e-noimages");
    std::fs::write(dir.path("readme.txt"), "no pictures here").unwrap();
    let run = levit(&["classify", "--model", s(&golden_tiny()), s(&dir.0)]);
    run.assert_one_line_error("no images found in");
    assert_eq!(run.code, 1);
}

#[test]
fn bad_arguments() {
    let m = golden_tiny();
    let photo = image("chelsea.png");
    let run = levit(&["classify", "--model", s(&m), "--crop-pct", "1.5", s(&photo)]);
    assert!(
        run.stderr.contains("1.5 is out of range (0, 1]"),
        "{}",
        run.stderr
    );
    let run = levit(&["classify", "--model", s(&m), "--isa", "sse9", s(&photo)]);
    assert!(run.stderr.contains("'--isa <PATH>'"), "{}", run.stderr);
    assert!(run.stderr.contains("sse9"), "{}", run.stderr);
    for args in [
        &["classify", "--model", s(&m), "--crop-pct", "1.5", s(&photo)][..],
        &["classify", "--model", s(&m), "--crop-pct", "0", s(&photo)],
        &["classify", "--model", s(&m), "--crop-pct", "abc", s(&photo)],
        &["classify", "--model", s(&m), "--isa", "sse9", s(&photo)],
        &["info", "--isa", "sse9", s(&m)],
        &["info", "--precision", "fp8", s(&m)],
        &["classify", "--model", s(&m), "--top", "0", s(&photo)][..],
        &["classify", "--model", s(&m), "--threads", "0", s(&photo)],
        &["classify", "--model", s(&m)],
        &["frobnicate"],
    ] {
        let run = levit(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    }
}

#[test]
fn a_model_that_is_not_rgb_is_refused_by_classify() {
    let dir = Workdir::new("e-chans");
    let mut c = levit::synth::variant_config("128s").unwrap();
    c.embed_dim = vec![32, 48, 64];
    c.key_dim = 8;
    c.num_heads = vec![2, 3, 4];
    c.depth = vec![1, 1, 1];
    c.in_chans = 1;
    std::fs::write(
        dir.path("grey.lvt"),
        levit::synth::random_weight_file(&c, 1).unwrap(),
    )
    .unwrap();
    levit(&[
        "classify",
        "--model",
        s(&dir.path("grey.lvt")),
        s(&image("chelsea.png")),
    ])
    .assert_one_line_error("needs an RGB (3-channel) model");
}

#[test]
fn a_nan_in_the_weights_is_never_reported_as_a_prediction() {
    let dir = Workdir::new("e-nan");
    let good = std::fs::read(tiny_model(&dir, "ok.lvt", 1000)).unwrap();
    let nan = levit::synth::edit_f32_file(&good, |name, values| {
        if name == "head.bias" {
            values[0] = f32::NAN;
        }
    })
    .unwrap();
    let bad = dir.path("nan.lvt");
    std::fs::write(&bad, nan).unwrap();
    let photo = image("chelsea.png");
    // Verified (the default): refused at load, naming the tensor.
    let run = levit(&["classify", "--model", s(&bad), s(&photo)]);
    run.assert_one_line_error("tensor `head.bias` holds a non-finite value (NaN)");
    assert_eq!(run.code, 1);
    let run = levit(&["info", s(&bad)]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout
            .contains("checksums     FAILED: tensor `head.bias` holds a non-finite"),
        "{}",
        run.stdout
    );
    // Unverified: every image is an error line, none a result; exit 3.
    for json in [false, true] {
        let mut args = vec!["classify", "--no-verify", "--model", s(&bad), s(&photo)];
        if json {
            args.push("--json");
        }
        let run = levit(&args);
        assert_eq!(run.code, i32::from(EXIT_SOME_FAILED), "{}", run.stderr);
        assert!(!run.stdout.contains("NaN%"), "{}", run.stdout);
        assert!(run.stderr.contains("not a finite number"), "{}", run.stderr);
        if json {
            let line: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
            assert!(line["top"].is_null(), "{line}");
            assert!(line["error"]
                .as_str()
                .unwrap()
                .contains("not a finite number"));
        } else {
            assert!(run.stdout.is_empty(), "{}", run.stdout);
        }
    }
}

/// Runs the binary with stdout going to `stdout`; returns (status, stderr).
fn levit_to(stdout: std::process::Stdio, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_levit"))
        .args(args)
        .stdout(stdout)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn a_failed_write_of_the_results_is_an_error() {
    let m = golden_tiny();
    let photo = image("chelsea.png");
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
            .into()
    };
    for args in [
        &["classify", "--model", s(&m), s(&photo)][..],
        &["classify", "--json", "--model", s(&m), s(&photo)],
        &["info", s(&m)],
        &["info", "--json", s(&m)],
    ] {
        let (code, stderr) = levit_to(full(), args);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(
            stderr
                .contains("levit: error: cannot write results to stdout: no space left on device"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn a_closed_pipe_ends_quietly_but_not_with_success() {
    // 1000 copies of an image: more output than a pipe buffers (64 KiB), so the
    // program is still writing when the reader closes after the first byte.
    let m = golden_tiny();
    let photo = image("chelsea.png");
    let mut args = vec!["classify", "--threads", "1", "--model", s(&m)];
    args.extend(std::iter::repeat_n(s(&photo), 1000));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_levit"))
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 1];
    use std::io::Read;
    child.stdout.take().unwrap().read_exact(&mut first).unwrap(); // then dropped: closed
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        !stderr.contains("error"),
        "quiet on a closed pipe: {stderr}"
    );
    assert!(
        !stderr.contains("40 images"),
        "no summary of results not delivered: {stderr}"
    );
}

#[test]
fn terminal_escapes_in_names_and_strings_are_shown_escaped() {
    let dir = Workdir::new("e-escapes");
    // A weight file whose variant and source strings carry escape sequences.
    let mut c = levit::synth::variant_config("128s").unwrap();
    c.embed_dim = vec![32, 48, 64];
    c.key_dim = 8;
    c.num_heads = vec![2, 3, 4];
    c.depth = vec![1, 1, 1];
    c.variant = "evil\u{1b}]0;owned\u{7}".into();
    let plain = levit::synth::random_weight_file(&c, 1).unwrap();
    let file = levit_format::WeightFile::from_bytes(&plain, false).unwrap();
    let values: Vec<(String, Vec<usize>, Vec<f32>)> = file
        .tensors()
        .map(|t| {
            (
                t.name.to_string(),
                t.shape.to_vec(),
                t.f32().unwrap().to_vec(),
            )
        })
        .collect();
    let tensors: Vec<levit_format::TensorData> = values
        .iter()
        .map(|(name, shape, data)| levit_format::TensorData {
            name,
            shape,
            data: levit_format::TensorBytes::F32(data),
        })
        .collect();
    let source = "checkpoint\u{1b}[2J\u{1b}[H\r\nchecksums     ok";
    let bytes = levit_format::write_weight_file(file.config_json(), &tensors, source);
    let model = dir.path("escapes.lvt");
    std::fs::write(&model, bytes).unwrap();
    let run = levit(&["info", s(&model)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for raw in ['\u{1b}', '\u{7}', '\r'] {
        assert!(!run.stdout.contains(raw), "{:?}", run.stdout);
    }
    assert!(
        run.stdout.contains("evil\\x1b]0;owned\\x07"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("checkpoint\\x1b[2J\\x1b[H\\x0d\\x0achecksums"),
        "{}",
        run.stdout
    );
    // JSON keeps the exact strings (escaped the JSON way).
    let json: serde_json::Value =
        serde_json::from_str(&levit(&["info", "--json", s(&model)]).stdout).unwrap();
    assert!(json.to_string().contains("\\u001b[2J"), "{json}");

    // A file name with escapes, in the result lines and in an error line.
    let evil = dir.path("cat\u{1b}[31m\u{202e}gpj.png");
    std::fs::copy(image("chelsea.png"), &evil).unwrap();
    let broken = dir.path("bad\u{1b}[1A.jpg");
    std::fs::write(&broken, b"not a jpeg").unwrap();
    let run = levit(&[
        "classify",
        "--model",
        s(&golden_tiny()),
        s(&evil),
        s(&broken),
    ]);
    for raw in ['\u{1b}', '\u{202e}'] {
        assert!(
            !run.stdout.contains(raw) && !run.stderr.contains(raw),
            "{run:?}"
        );
    }
    assert!(
        run.stdout.contains("cat\\x1b[31m\\u{202e}gpj.png"),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("bad\\x1b[1A.jpg"), "{}", run.stderr);
}

#[cfg(unix)]
#[test]
fn special_files_among_the_images_fail_alone_and_never_hang() {
    let dir = Workdir::new("e-special");
    let photos = dir.path("photos");
    std::fs::create_dir_all(&photos).unwrap();
    std::fs::copy(image("chelsea.png"), photos.join("a_cat.png")).unwrap();
    let fifo = photos.join("b_fifo.jpg");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    std::os::unix::fs::symlink("/dev/zero", photos.join("c_zero.jpg")).unwrap();
    let start = std::time::Instant::now();
    // The folder (FIFO and device found by the walk), and the FIFO named directly.
    for target in [photos.clone(), fifo.clone()] {
        let run = levit(&[
            "classify",
            "--json",
            "--model",
            s(&golden_tiny()),
            s(&target),
        ]);
        assert_eq!(run.code, i32::from(EXIT_SOME_FAILED), "{}", run.stderr);
        assert!(
            run.stderr
                .contains("b_fifo.jpg: it is a FIFO, not a regular file"),
            "{}",
            run.stderr
        );
    }
    let run = levit(&[
        "classify",
        "--json",
        "--model",
        s(&golden_tiny()),
        s(&photos),
    ]);
    assert!(
        run.stderr
            .contains("c_zero.jpg: it is a character device, not a regular file"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.lines().next().unwrap().contains("\"top\""),
        "{}",
        run.stdout
    );
    assert!(
        start.elapsed() < std::time::Duration::from_secs(30),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn truncated_jpegs_are_refused_unless_allowed() {
    let dir = Workdir::new("e-truncated");
    let jpeg = std::fs::read(image("rocket.jpg")).unwrap();
    let cut = dir.path("half.jpg");
    std::fs::write(&cut, &jpeg[..jpeg.len() / 2]).unwrap();
    let m = golden_tiny();
    let run = levit(&["classify", "--model", s(&m), s(&cut)]);
    assert_eq!(run.code, i32::from(EXIT_SOME_FAILED), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("half.jpg: format error decoding Jpeg: image file is truncated"),
        "{}",
        run.stderr
    );
    let run = levit(&["classify", "--allow-truncated", "--model", s(&m), s(&cut)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("half.jpg"), "{}", run.stdout);
}

/// A 9000 x 9000 16-bit RGB PNG of zeros: a few hundred KB on disk, 486 MB decoded.
fn write_huge_png(path: &std::path::Path) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut encoder = png::Encoder::new(file, 9000, 9000);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Sixteen);
    let mut writer = encoder.write_header().unwrap();
    let mut stream = writer.stream_writer().unwrap();
    let row = vec![0u8; 9000 * 6];
    for _ in 0..9000 {
        std::io::Write::write_all(&mut stream, &row).unwrap();
    }
    stream.finish().unwrap();
}

#[cfg(unix)]
#[test]
fn a_huge_image_under_a_memory_limit_fails_alone() {
    let dir = Workdir::new("e-memlimit");
    let huge = dir.path("huge16.png");
    write_huge_png(&huge);
    assert!(std::fs::metadata(&huge).unwrap().len() < 2 << 20);
    // 700 MB of address space (ulimit -v, in KiB): the decoded image fits, its RGB
    // copy and the rest of the process do not.
    let script = format!(
        "ulimit -v 716800 && exec \"$0\" classify --json --threads 2 --model '{}' '{}' '{}' '{}'",
        s(&golden_tiny()),
        s(&image("chelsea.png")),
        s(&huge),
        s(&image("rocket.jpg")),
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script, env!("CARGO_BIN_EXE_levit")])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(i32::from(EXIT_SOME_FAILED)),
        "{stderr}"
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0]["top"].is_array() && lines[2]["top"].is_array(),
        "{stdout}"
    );
    let err = lines[1]["error"].as_str().unwrap();
    assert!(
        err.contains("huge16.png") && err.contains("memory"),
        "{err}"
    );
}

#[test]
fn workers_are_limited_by_the_memory_of_their_engines() {
    let dir = Workdir::new("e-engines");
    let model = std::sync::Arc::new(levit::Model::load(tiny_model(&dir, "m.lvt", 10)).unwrap());
    let per_engine = model.engine_bytes(1);
    assert!(per_engine > 0);
    // Room for exactly three engines: three run, whatever was asked for.
    let limit = 3 * per_engine + per_engine / 2;
    let engines = levit_cli::classify::make_engines(&model, 8, limit).unwrap();
    assert_eq!(engines.len(), 3);
    let engines = levit_cli::classify::make_engines(&model, 2, limit).unwrap();
    assert_eq!(engines.len(), 2);
    // Not even one fits: still one (a single engine is bounded by the plan limit).
    let engines = levit_cli::classify::make_engines(&model, 4, 1).unwrap();
    assert_eq!(engines.len(), 1);
    // The bound every run uses is the plan limit.
    assert_eq!(
        levit_cli::classify::ENGINES_MEMORY,
        levit::graph::MAX_PLAN_BYTES
    );
}

#[test]
fn a_model_over_the_compute_limit_is_refused_unless_raised() {
    let dir = Workdir::new("e-gmac");
    let m = tiny_model(&dir, "m.lvt", 10);
    let photo = image("chelsea.png");
    // The tiny model needs well under 1 GMAC: a limit of 0 refuses it...
    let run = levit(&["classify", "--max-gmac", "0", "--model", s(&m), s(&photo)]);
    run.assert_one_line_error("GMAC per image, over the limit of 0 GMAC");
    assert_eq!(run.code, 1);
    // ...the default admits it.
    let run = levit(&["classify", "--model", s(&m), s(&photo)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}
