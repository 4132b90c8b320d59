//! `levit classify` end to end through the real binary: results equal the library's,
//! directories, workers, names, crop and EXIF settings, output formats.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{golden_tiny, image, levit, tiny_model, Workdir};
use levit::imagenet::{top_k, Prediction};
use levit::preprocess::{open_image_with, DecodeOptions, Orientation, Preprocess, FB_CROP_PCT};

/// Decodes `path` as `levit classify` does, with an EXIF setting.
fn open_image(path: &Path, orientation: Orientation) -> levit::preprocess::image::DynamicImage {
    let options = DecodeOptions {
        orientation,
        ..DecodeOptions::default()
    };
    open_image_with(path, &options).unwrap()
}

/// What the library says for one image.
fn expected(model: &Path, path: &Path, settings: Preprocess, exif: Orientation) -> Vec<Prediction> {
    let mut engine = levit::Engine::new(Arc::new(levit::Model::load(model).unwrap()));
    let x = settings.run(&open_image(path, exif)).unwrap();
    top_k(engine.infer(&x).unwrap(), 5).unwrap()
}

fn parse_jsonl(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn assert_same(json: &serde_json::Value, want: &[Prediction]) {
    let top = json["top"].as_array().unwrap();
    assert_eq!(top.len(), want.len());
    for (got, want) in top.iter().zip(want) {
        assert_eq!(got["class"].as_u64().unwrap() as usize, want.class);
        let p = got["probability"].as_f64().unwrap() as f32;
        assert!((p - want.probability).abs() < 1e-6, "{p} vs {want:?}");
    }
}

#[test]
fn json_results_equal_the_library_for_every_format() {
    let model = golden_tiny();
    let names = [
        "chelsea.png",
        "rocket.jpg",
        "coffee_lossless.webp",
        "moon_grey16.png",
        "coffee_rgba.png",
    ];
    let mut args = vec![
        "classify".into(),
        "--model".into(),
        model.display().to_string(),
        "--json".into(),
    ];
    args.extend(names.iter().map(|n| image(n).display().to_string()));
    let run = levit(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = parse_jsonl(&run.stdout);
    assert_eq!(lines.len(), names.len());
    for (line, name) in lines.iter().zip(names) {
        assert_eq!(line["path"], image(name).display().to_string());
        let want = expected(
            &model,
            &image(name),
            Preprocess::default(),
            Orientation::Ignore,
        );
        assert_same(line, &want);
        // 10 classes: no ImageNet names.
        assert_eq!(line["top"][0]["label"], format!("class {}", want[0].class));
        assert!(line["top"][0]["synset"].is_null());
    }
    assert!(run.stderr.contains("5 images, 0 failed"), "{}", run.stderr);
}

#[test]
fn directories_are_walked_in_order_and_worker_counts_agree() {
    let dir = Workdir::new("walk");
    std::fs::create_dir_all(dir.path("photos/sub")).unwrap();
    for (src, dst) in [
        ("chelsea.png", "photos/b_cat.PNG"),
        ("rocket.jpg", "photos/a_rocket.jpg"),
        ("coffee_lossless.webp", "photos/sub/c_coffee.webp"),
        ("tiny_60x40.png", "photos/sub/d_tiny.png"),
    ] {
        std::fs::copy(image(src), dir.path(dst)).unwrap();
    }
    std::fs::write(dir.path("photos/notes.txt"), "not an image").unwrap();
    let model = golden_tiny();
    let run_with = |threads: &str| {
        levit(&[
            "classify",
            "--model",
            model.to_str().unwrap(),
            "--threads",
            threads,
            "--top",
            "2",
            dir.path("photos").to_str().unwrap(),
        ])
    };
    let one = run_with("1");
    let three = run_with("3");
    assert_eq!(one.code, 0, "{}", one.stderr);
    assert_eq!(
        one.stdout, three.stdout,
        "results depend on the worker count"
    );
    let headers: Vec<&str> = one.stdout.lines().filter(|l| !l.starts_with(' ')).collect();
    let expect: Vec<String> = [
        "a_rocket.jpg",
        "b_cat.PNG",
        "sub/c_coffee.webp",
        "sub/d_tiny.png",
    ]
    .iter()
    .map(|n| dir.path("photos").join(n).display().to_string())
    .collect();
    assert_eq!(headers, expect);
    // Two classes per image, "  NN.NN%  name".
    assert_eq!(one.stdout.lines().count(), 4 * 3);
    assert!(one.stderr.contains("4 images, 0 failed"), "{}", one.stderr);
    assert!(one.stderr.contains("(1 worker, batch 4)"), "{}", one.stderr);
    assert!(
        three.stderr.contains("(3 workers, batch 4)"),
        "{}",
        three.stderr
    );
    // Piped stderr: summary only, no progress bar.
    assert!(!three.stderr.contains('\r') && !three.stderr.contains('\x1b'));
    assert_eq!(three.stderr.lines().count(), 1, "{}", three.stderr);
}

#[test]
fn thousand_class_models_print_imagenet_names() {
    let dir = Workdir::new("names");
    let model = tiny_model(&dir, "in1k.lvt", 1000);
    let run = levit(&[
        "classify",
        "--model",
        model.to_str().unwrap(),
        image("chelsea.png").to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let want = expected(
        &model,
        &image("chelsea.png"),
        Preprocess::default(),
        Orientation::Ignore,
    );
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 6);
    for (line, p) in lines[1..].iter().zip(&want) {
        let name = levit::imagenet::name(p.class).unwrap();
        assert_eq!(*line, format!("  {:6.2}%  {name}", 100.0 * p.probability));
    }
    let run = levit(&[
        "classify",
        "--json",
        "--top",
        "1",
        "--model",
        model.to_str().unwrap(),
        image("chelsea.png").to_str().unwrap(),
    ]);
    let line = &parse_jsonl(&run.stdout)[0];
    let synset = levit::imagenet::synset(want[0].class).unwrap();
    let label = levit::imagenet::name(want[0].class).unwrap();
    assert_eq!(line["top"][0]["synset"], synset);
    assert_eq!(line["top"][0]["label"], label);
}

#[test]
fn crop_pct_and_exif_flags() {
    let model = golden_tiny();
    let m = model.to_str().unwrap();
    let rocket = image("rocket.jpg");
    let run = levit(&[
        "classify",
        "--json",
        "--crop-pct",
        "0.875",
        "--model",
        m,
        rocket.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let fb = Preprocess {
        crop_pct: FB_CROP_PCT,
        ..Preprocess::default()
    };
    assert_same(
        &parse_jsonl(&run.stdout)[0],
        &expected(&model, &rocket, fb, Orientation::Ignore),
    );

    // EXIF orientation 6: ignored by default (as timm), applied with --exif.
    let rotated = image("chelsea_exif_rot90.jpg");
    let plain = levit(&[
        "classify",
        "--json",
        "--model",
        m,
        rotated.to_str().unwrap(),
    ]);
    let exif = levit(&[
        "classify",
        "--json",
        "--exif",
        "--model",
        m,
        rotated.to_str().unwrap(),
    ]);
    let d = Preprocess::default();
    assert_same(
        &parse_jsonl(&plain.stdout)[0],
        &expected(&model, &rotated, d, Orientation::Ignore),
    );
    assert_same(
        &parse_jsonl(&exif.stdout)[0],
        &expected(&model, &rotated, d, Orientation::Apply),
    );
    assert_ne!(plain.stdout, exif.stdout);
    let img = open_image(&rotated, Orientation::Apply);
    assert_eq!((img.width(), img.height()), (200, 300));
    let img = open_image(&rotated, Orientation::Ignore);
    assert_eq!((img.width(), img.height()), (300, 200));
}

#[test]
fn info_describes_the_model() {
    let run = levit(&["info", golden_tiny().to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for needle in [
        "variant       tiny_hswish",
        "format        levit-rs weight file, version 1",
        "precision     f32 (68 tensors F32)",
        "classes       10",
        "embed_dim [32, 48, 64]",
        "MACs          ",
        "parameters    ",
        "checksums     ok (all 68 tensors",
        "SIMD path     ",
    ] {
        assert!(
            run.stdout.contains(needle),
            "lacks {needle:?}:\n{}",
            run.stdout
        );
    }
    let model = levit::Model::load(golden_tiny()).unwrap();
    let run = levit(&[
        "info",
        "--json",
        "--isa",
        "portable",
        golden_tiny().to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["macs"].as_u64().unwrap(), model.macs());
    assert_eq!(
        v["file_bytes"].as_u64().unwrap(),
        std::fs::metadata(golden_tiny()).unwrap().len()
    );
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["precision"], "f32");
    assert_eq!(v["dtypes"], serde_json::json!({"F32": 68}));
    let list = v["tensor_list"].as_array().unwrap();
    assert_eq!(list.len(), 68);
    assert_eq!(list[0]["dtype"], "F32");
    assert!(list.iter().any(|t| t["name"] == "head.weight"));
    assert_eq!(v["checksums_ok"], true);
    assert_eq!(v["isa"], "portable");
    assert_eq!(v["config"]["num_classes"], 10);
}

#[test]
fn help_and_version() {
    let run = levit(&["--version"]);
    assert_eq!(run.code, 0);
    assert_eq!(
        run.stdout.trim(),
        format!("levit {}", env!("CARGO_PKG_VERSION"))
    );
    for cmd in [
        &["--help"][..],
        &["classify", "--help"],
        &["info", "--help"],
        &["infer", "--help"],
    ] {
        let run = levit(cmd);
        assert_eq!(run.code, 0, "{cmd:?}");
        assert!(
            run.stdout.contains("Example"),
            "{cmd:?} help has no example:\n{}",
            run.stdout
        );
    }
    let run = levit(&["help", "classify"]);
    assert!(run.stdout.contains("--crop-pct") && run.stdout.contains("--threads"));
}

#[test]
fn batch_sizes_and_worker_counts_agree_in_input_order_and_stats_name_both_stages() {
    let dir = Workdir::new("batches");
    std::fs::create_dir_all(dir.path("photos")).unwrap();
    // Seven photos (one batch of 3 twice and a last one of 1), one of them broken.
    let sources = [
        "chelsea.png",
        "rocket.jpg",
        "coffee_lossless.webp",
        "tiny_60x40.png",
        "rocket.jpg",
        "chelsea.png",
    ];
    for (k, src) in sources.iter().enumerate() {
        std::fs::copy(
            image(src),
            dir.path(&format!(
                "photos/{k}.{}",
                &src[src.rfind('.').unwrap() + 1..]
            )),
        )
        .unwrap();
    }
    std::fs::write(dir.path("photos/3b_broken.jpg"), b"not a jpeg").unwrap();
    let model = golden_tiny();
    let run_with = |threads: &str, batch: &str| {
        levit(&[
            "classify",
            "--model",
            model.to_str().unwrap(),
            "--threads",
            threads,
            "--batch",
            batch,
            "--stats",
            "--json",
            dir.path("photos").to_str().unwrap(),
        ])
    };
    let single = run_with("1", "1");
    assert_eq!(single.code, 3, "{}", single.stderr);
    let lines = parse_jsonl(&single.stdout);
    assert_eq!(lines.len(), 7);
    assert!(lines[4]["error"]
        .as_str()
        .unwrap()
        .contains("3b_broken.jpg"));
    for (threads, batch) in [("1", "3"), ("2", "3"), ("3", "2"), ("2", "8")] {
        let run = run_with(threads, batch);
        assert_eq!(run.code, 3, "{}", run.stderr);
        assert_eq!(
            run.stdout, single.stdout,
            "--threads {threads} --batch {batch} changed the results or their order"
        );
        let stats = run.stderr.lines().find(|l| l.contains("stats:")).unwrap();
        for part in [
            "engine",
            "decode+preprocess",
            "ms/image",
            "achieved",
            "(6 images)",
        ] {
            assert!(stats.contains(part), "{stats}");
        }
        let batch_used = batch.parse::<usize>().unwrap().min(7);
        assert!(stats.contains(&format!("at batch {batch_used}")), "{stats}");
    }
    // The batch is validated like the other counts.
    for bad in ["0", "1025", "x"] {
        let run = run_with("1", bad);
        assert_eq!(run.code, 2, "--batch {bad}: {}", run.stderr);
        assert!(run.stderr.contains("--batch"), "{}", run.stderr);
    }
}
