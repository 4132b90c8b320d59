//! `levit::preprocess` against timm's eval transform (PIL) on the committed test images
//! (`tests/fixtures/images`, expected tensors made by
//! `tests/fixtures/preprocess/make_fixtures.py`), and the golden rule on the logits of
//! the tiny PyTorch-dumped model fed both tensors.
//!
//! `cargo test -p levit-cli --test preprocess_parity -- --nocapture` prints the table.

use std::path::{Path, PathBuf};

use levit::preprocess::{open_image, Preprocess, FB_CROP_PCT};
use levit_cli::npy;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Case {
    image: String,
    pil_mode: String,
    expected: String,
    expected_fb: Option<String>,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(root().join("tests/fixtures/preprocess/manifest.json"))
        .expect("manifest");
    let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    manifest["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            image: c["image"].as_str().unwrap().to_string(),
            pil_mode: c["pil_mode"].as_str().unwrap().to_string(),
            expected: c["expected"].as_str().unwrap().to_string(),
            expected_fb: c["expected_crop_pct_0875"].as_str().map(str::to_string),
        })
        .collect()
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn preprocessing_matches_timm_and_logits_agree() {
    let model =
        levit::Model::load(root().join("tests/fixtures/golden-tiny/tiny_hswish/model_timm.lvt"))
            .unwrap();
    let mut engine = levit::Engine::new(std::sync::Arc::new(model));
    let fb = Preprocess {
        crop_pct: FB_CROP_PCT,
        ..Preprocess::default()
    };
    let mut failures = Vec::new();
    println!(
        "{:28} {:5} {:>12} {:>9} {:>12} {:>9}",
        "image", "mode", "max|x-timm|", "pixels!=", "max|dlogit|", "bound"
    );
    for case in cases() {
        let img = open_image(root().join("tests/fixtures/images").join(&case.image)).unwrap();
        let mut runs = vec![(
            case.image.clone(),
            Preprocess::default(),
            case.expected.clone(),
        )];
        if let Some(e) = &case.expected_fb {
            runs.push((format!("{} @0.875", case.image), fb, e.clone()));
        }
        for (label, settings, expected) in runs {
            let want =
                npy::read_f32(&root().join("tests/fixtures/preprocess").join(&expected)).unwrap();
            assert_eq!(want.shape, vec![3, 224, 224], "{expected}");
            let got = settings.run(&img).unwrap();
            let diff = max_abs(&got, &want.data);
            let differing = got.iter().zip(&want.data).filter(|(a, b)| a != b).count();
            let ours = engine.infer(&got).unwrap().to_vec();
            let theirs = engine.infer(&want.data).unwrap().to_vec();
            let dlogit = max_abs(&ours, &theirs);
            let bound = 1e-4 * theirs.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            println!(
                "{label:28} {:5} {diff:12.3e} {differing:9} {dlogit:12.3e} {bound:9.1e}",
                case.pil_mode
            );
            // Every decoder (PNG and WebP via the `image` crate, JPEG via our
            // libjpeg-turbo-exact one) yields PIL's pixels and the resize is Pillow's
            // fixed-point algorithm: the tensors must be identical.
            if diff > 0.0 {
                failures.push(format!(
                    "{label}: tensor max|diff| {diff:e} ({differing} values)"
                ));
            }
            if dlogit > bound {
                failures.push(format!("{label}: logits max|diff| {dlogit:e} > {bound:e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
