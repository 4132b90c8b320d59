//! The fuzzing side of the loader's and the image decoding's robustness (see
//! `docs/robustness.md`):
//! - the seed corpus in `fuzz/seeds/` holds valid tiny models of the current format
//!   (regenerate with `LEVIT_WRITE_FUZZ_SEEDS=1 cargo test -p levit --test robustness_fuzz`),
//!   and `fuzz/seeds/images/` small images that decode (checked with the `preprocess`
//!   feature);
//! - every input saved under `fuzz/regressions/<target>/` (crashes the fuzzer found
//!   once) is replayed through the fuzz targets' own harness (`decode_image/` with the
//!   `preprocess` feature: `cargo test -p levit --all-features`, or any workspace test
//!   run, where `levit-cli` turns it on);
//! - a deterministic slice of what the fuzzer does runs here on every `cargo test`:
//!   every single-byte change of a model's header, with the checksums fixed up so the
//!   change reaches the config and plan validation, gives `Ok` or a typed `Err`.

#[path = "../../../fuzz/src/harness.rs"]
mod harness;

#[cfg(feature = "preprocess")]
#[path = "../../../fuzz/src/image_harness.rs"]
mod image_harness;

mod robustness_common;

use std::path::{Path, PathBuf};

use levit::{synth, Config, Model, ModelOptions};
use levit_graph::ActKind;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The seed models: tiny, with one, two and three stages, odd resolutions (3 -> 2 -> 1),
/// an empty stage, both activations.
fn seed_configs() -> Vec<(&'static str, Config)> {
    let base = |variant: &str| Config {
        variant: variant.into(),
        img_size: 32,
        in_chans: 3,
        num_classes: 10,
        embed_dim: vec![16, 24],
        key_dim: 8,
        num_heads: vec![2, 3],
        depth: vec![1, 1],
        attn_ratio: vec![2.0, 2.0],
        mlp_ratio: vec![2.0, 2.0],
        down_attn_ratio: 4.0,
        down_mlp_ratio: 2.0,
        act: ActKind::HardSwish,
        distilled: true,
    };
    let two = base("fuzz_two_stages");
    let one = Config {
        variant: "fuzz_one_stage".into(),
        ..robustness_common::tiny_config()
    };
    let three = Config {
        img_size: 48,
        embed_dim: vec![16, 16, 32],
        num_heads: vec![1, 2, 2],
        depth: vec![0, 1, 0],
        attn_ratio: vec![0.5, 1.0, 2.0],
        mlp_ratio: vec![1.5, 1.0, 2.0],
        ..base("fuzz_three_stages")
    };
    vec![
        ("two_stages", two),
        ("one_stage", one),
        ("three_stages", three),
    ]
}

/// Load options with the tensor checksums verified (whatever the default is).
fn verified() -> ModelOptions {
    ModelOptions {
        verify_checksums: true,
        ..ModelOptions::default()
    }
}

fn seed_path(name: &str) -> PathBuf {
    repo().join("fuzz/seeds").join(format!("{name}.lvt"))
}

#[test]
fn seed_corpus_holds_valid_models_of_the_current_format() {
    let write = std::env::var_os("LEVIT_WRITE_FUZZ_SEEDS").is_some();
    for (seed, (name, config)) in seed_configs().into_iter().enumerate() {
        let path = seed_path(name);
        if write {
            let bytes = synth::random_weight_file(&config, seed as u64).unwrap();
            std::fs::write(&path, bytes).unwrap();
        }
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; regenerate the seeds with LEVIT_WRITE_FUZZ_SEEDS=1",
                path.display()
            )
        });
        let model = Model::from_bytes(&bytes, verified()).unwrap_or_else(|e| {
            panic!(
                "seed {} no longer loads ({e}); regenerate with LEVIT_WRITE_FUZZ_SEEDS=1",
                path.display()
            )
        });
        assert_eq!(model.config(), &config, "{name}");
        harness::load_and_run(&bytes);
    }
}

#[test]
fn checksum_fixup_keeps_a_valid_file_valid() {
    for (name, config) in seed_configs() {
        let bytes = synth::random_weight_file(&config, 1).unwrap();
        let fixed = harness::fix_checksums(&bytes);
        let a = Model::from_bytes(&bytes, verified()).unwrap();
        let b = Model::from_bytes(&fixed, verified())
            .unwrap_or_else(|e| panic!("{name}: fixed-up file does not load: {e}"));
        assert_eq!(a.config(), b.config());
        // A corrupted tensor byte is repaired by the fixup (its CRC is recomputed).
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x40;
        assert!(Model::from_bytes(&bad, verified()).is_err());
        assert!(Model::from_bytes(&harness::fix_checksums(&bad), verified()).is_ok());
    }
    assert_eq!(
        harness::crc32(b"123456789"),
        0xCBF4_3926,
        "CRC-32/IEEE check value"
    );
    assert_eq!(
        harness::fix_checksums(b"not a weight file"),
        b"not a weight file"
    );
}

#[test]
fn saved_fuzz_crashes_stay_fixed() {
    let root = repo().join("fuzz/regressions");
    type Target = (&'static str, Option<fn(&[u8])>);
    let targets: [Target; 3] = [
        (
            "load_model",
            Some(|b| {
                harness::load_and_run(b);
            }),
        ),
        (
            "load_model_fixed_crc",
            Some(|b| {
                harness::load_and_run(&harness::fix_checksums(b));
            }),
        ),
        #[cfg(feature = "preprocess")]
        (
            "decode_image",
            Some(|b| {
                image_harness::decode_and_preprocess(b);
            }),
        ),
        #[cfg(not(feature = "preprocess"))]
        ("decode_image", None),
    ];
    let mut replayed = 0;
    for (target, run) in targets {
        let Ok(dir) = std::fs::read_dir(root.join(target)) else {
            continue;
        };
        let Some(run) = run else {
            println!("{target}: not replayed (needs levit's `preprocess` feature)");
            continue;
        };
        let mut files: Vec<PathBuf> = dir.map(|e| e.unwrap().path()).collect();
        files.sort();
        for file in files {
            let bytes = std::fs::read(&file).unwrap();
            println!("replaying {}", file.display());
            run(&bytes);
            replayed += 1;
        }
    }
    println!("{replayed} saved fuzz inputs replayed");
}

/// The image seeds of the `decode_image` target are small, decode, and cover every
/// format and JPEG mode the decoders handle.
#[cfg(feature = "preprocess")]
#[test]
fn image_seeds_decode() {
    let dir = repo().join("fuzz/seeds/images");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            bytes.len() <= 20_000,
            "{}: keep seeds small",
            path.display()
        );
        assert!(
            image_harness::decode_and_preprocess(&bytes),
            "{} does not decode",
            path.display()
        );
        names.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    for kind in [
        "baseline",
        "progressive",
        "restarts",
        ".png",
        ".webp",
        "exif",
    ] {
        assert!(
            names.iter().any(|n| n.contains(kind)),
            "no {kind} seed in {names:?}"
        );
    }
}

/// Header offsets of `bytes`: `8 + header_len`.
fn data_start(bytes: &[u8]) -> usize {
    8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize
}

#[test]
fn every_header_byte_change_with_fixed_checksums_is_ok_or_a_typed_error() {
    // The three-stage seed reaches every kind of header field (stage lists, ratios,
    // an empty stage). Each header byte is replaced by three values that keep the JSON
    // valid more often than random bytes would (digits, quotes, brackets).
    let (_, config) = &seed_configs()[2];
    let bytes = synth::random_weight_file(config, 5).unwrap();
    replace_each_header_byte(&bytes, [b'0', b'"', b']']);
}

/// Replaces each header byte of `bytes` by each of `values` (checksums fixed) and
/// loads and runs every variant: each must load or fail with a typed error.
fn replace_each_header_byte(bytes: &[u8], values: [u8; 3]) {
    let end = data_start(bytes);
    let mut loaded = 0;
    for i in 8..end {
        for b in values {
            if bytes[i] == b {
                continue;
            }
            let mut m = bytes.to_vec();
            m[i] = b;
            loaded += usize::from(harness::load_and_run(&harness::fix_checksums(&m)));
        }
    }
    println!(
        "{} header bytes x 3 values: {loaded} variants loaded",
        end - 8
    );
}

#[test]
fn every_header_byte_change_of_the_int8_seed_is_ok_or_a_typed_error() {
    // The int8 seed (written by `levit-weights recast --precision int8`): I8 weights
    // beside their F32 scales and I32 compensations, whose dtypes, shapes and offsets
    // the header changes hit.
    let bytes = std::fs::read(seed_path("one_stage_int8")).unwrap();
    assert!(harness::load_and_run(&bytes), "the int8 seed loads");
    replace_each_header_byte(&bytes, [b'0', b'"', b'8']);
}
