//! Loading hostile or damaged weight files through the engine facade (`Model`,
//! `Engine`): every failure is a typed `levit::Error`, never a panic or an absurd
//! allocation; and the owned load mode is immune to the file changing after load.
//! Container-level corruption classes are in `levit-format/tests/malformed.rs` and
//! `corruption_*.rs`; this file checks them end to end on a real model.

mod robustness_common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use levit::{synth, Engine, Error, FormatError, GraphError, LoadMode, Model, ModelOptions};
use robustness_common::{
    data_start, edit_header, image, small_config, small_model_bytes, temp_path, tiny_config,
};
use serde_json::json;

/// Tracks live heap bytes and their peak, to bound what a load allocates.
struct PeakTracking;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grow(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: forwards every call to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for PeakTracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size >= layout.size() {
            grow(new_size - layout.size());
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: PeakTracking = PeakTracking;

/// Loads with the tensor checksums verified (whatever the default is).
fn load(bytes: &[u8]) -> levit::Result<Model> {
    Model::from_bytes(bytes, options(LoadMode::Owned))
}

fn options(mode: LoadMode) -> ModelOptions {
    ModelOptions {
        mode,
        verify_checksums: true,
        ..ModelOptions::default()
    }
}

/// Every length at which a file can be cut inside or at the edge of its structure: the
/// length field, every byte of the header, the start of the data, and both edges of
/// every tensor (and one byte either side).
fn header_boundaries(bytes: &[u8]) -> Vec<usize> {
    let start = data_start(bytes);
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..start]).unwrap();
    let mut cuts: Vec<usize> = (0..=start + 1).collect();
    for (name, info) in header.as_object().unwrap() {
        if name == "__metadata__" {
            continue;
        }
        for edge in info["data_offsets"].as_array().unwrap() {
            let edge = start + edge.as_u64().unwrap() as usize;
            cuts.extend([edge - 1, edge, edge + 1]);
        }
    }
    cuts.retain(|&c| c < bytes.len());
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

#[test]
fn truncation_at_every_header_boundary_is_a_container_error() {
    let bytes = small_model_bytes();
    let cuts = header_boundaries(&bytes);
    assert!(cuts.len() > data_start(&bytes), "{} cuts", cuts.len());
    for &len in &cuts {
        match load(&bytes[..len]) {
            Err(Error::Format(FormatError::Container(_))) => {}
            Err(e) => panic!("cut at {len}: expected a container error, got {e}"),
            Ok(_) => panic!("cut at {len} bytes loaded"),
        }
    }
    // The same through files, mapped and owned (a subset: each is a file write).
    let path = temp_path("truncated.lvt");
    for &len in cuts
        .iter()
        .step_by(97)
        .chain([0, 7, 8, bytes.len() - 1].iter())
    {
        std::fs::write(&path, &bytes[..len]).unwrap();
        for mode in [LoadMode::Mmap, LoadMode::Owned] {
            let e = Model::load_with(&path, options(mode)).unwrap_err();
            assert!(
                matches!(e, Error::Format(FormatError::Container(_))),
                "{mode:?} cut at {len}: {e}"
            );
        }
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn every_single_bit_flip_is_detected_or_harmless() {
    // Every bit of the length field and the header, and one bit of every third data
    // byte. A flip must be refused, or load a model that computes bitwise the same
    // logits (flips in informational text such as `source`).
    let bytes = synth::random_weight_file(&tiny_config(), 4).unwrap();
    let reference = Arc::new(load(&bytes).unwrap());
    let x = image(&reference, 1);
    let want = Engine::new(reference).infer(&x).unwrap().to_vec();
    let start = data_start(&bytes);
    let header_bits = (0..start).flat_map(|i| (0..8).map(move |b| (i, b)));
    let data_bits = (start..bytes.len()).step_by(3).map(|i| (i, i % 8));
    let (mut refused, mut harmless) = (0, Vec::new());
    for (i, bit) in header_bits.chain(data_bits) {
        let mut f = bytes.clone();
        f[i] ^= 1 << bit;
        match load(&f) {
            Err(_) => refused += 1,
            Ok(m) => {
                assert!(i < start, "flip of data byte {i} bit {bit} went unnoticed");
                let out = Engine::new(Arc::new(m)).infer(&x).unwrap().to_vec();
                assert_eq!(
                    out, want,
                    "flip of header byte {i} bit {bit} changed the model"
                );
                harmless.push((i, bit));
            }
        }
    }
    // Harmless flips may only touch the `"source":"..."` entry (key or text), or turn
    // a hex letter of a CRC to the other case (the same number).
    let text = std::str::from_utf8(&bytes[8..start]).unwrap();
    let key = text.find("\"source\":\"").unwrap();
    let value = key + "\"source\":\"".len();
    let end = 8 + value + text[value..].find('"').unwrap();
    let key = 8 + key;
    let hex_case = |i: usize, bit: usize| {
        bit == 5 && bytes[i].is_ascii_hexdigit() && bytes[i].is_ascii_alphabetic()
    };
    let stray: Vec<usize> = harmless
        .iter()
        .filter(|&&(i, bit)| (i < key || i > end) && !hex_case(i, bit))
        .map(|&(i, _)| i)
        .collect();
    assert!(stray.is_empty(), "flips at {stray:?} loaded");
    println!(
        "{refused} flips refused, {} harmless (in the source note, or a CRC hex letter changing case)",
        harmless.len()
    );
}

#[test]
fn directory_empty_file_and_missing_path_are_typed_errors() {
    let dir = std::env::temp_dir();
    for mode in [LoadMode::Mmap, LoadMode::Owned] {
        let e = Model::load_with(&dir, options(mode)).unwrap_err();
        assert!(
            matches!(e, Error::Format(FormatError::NotAFile { .. })),
            "{e}"
        );
    }
    assert!(matches!(
        Engine::load(&dir).unwrap_err(),
        Error::Format(FormatError::NotAFile { .. })
    ));
    let e = Model::load(dir.join("no-such-levit-model.lvt")).unwrap_err();
    assert!(matches!(e, Error::Format(FormatError::Io { .. })), "{e}");
    let empty = temp_path("empty.lvt");
    std::fs::write(&empty, b"").unwrap();
    for mode in [LoadMode::Mmap, LoadMode::Owned] {
        let e = Model::load_with(&empty, options(mode)).unwrap_err();
        assert!(matches!(e, Error::Format(FormatError::Container(_))), "{e}");
    }
    let _ = std::fs::remove_file(&empty);
    // Device files are not regular files: refused before they are opened or read
    // (reading /dev/zero in owned mode would never end).
    #[cfg(unix)]
    for dev in ["/dev/null", "/dev/zero"] {
        if std::path::Path::new(dev).exists() {
            let e = Model::load_with(dev, options(LoadMode::Owned)).unwrap_err();
            assert!(
                matches!(e, Error::Format(FormatError::NotAFile { .. })),
                "{dev}: {e}"
            );
        }
    }
}

#[test]
fn header_corruption_surfaces_as_typed_errors_end_to_end() {
    let bytes = small_model_bytes();
    let meta = |f: fn(&mut serde_json::Value)| load(&edit_header(&bytes, f));

    // A newer format version (the config CRC does not cover it).
    match meta(|h| h["__metadata__"]["format_version"] = json!("3")) {
        Err(Error::Format(FormatError::UnsupportedVersion {
            found,
            supported: 2,
        })) => {
            assert_eq!(found, "3")
        }
        other => panic!("{other:?}"),
    }
    // Wrong dtype with the same byte size.
    let e = meta(|h| {
        let t = &mut h["head.bias"];
        t["dtype"] = json!("U32");
    })
    .unwrap_err();
    assert!(
        matches!(e, Error::Format(FormatError::Dtype { ref tensor, .. }) if tensor == "head.bias"),
        "{e}"
    );
    // Offsets past the end, overlapping, backwards.
    for offsets in [json!([0u64, 1u64 << 40]), json!([0, 64]), json!([64, 0])] {
        let e = load(&edit_header(&bytes, |h| {
            h["head.bias"]["data_offsets"] = offsets.clone()
        }))
        .unwrap_err();
        assert!(
            matches!(e, Error::Format(FormatError::Container(_))),
            "{offsets}: {e}"
        );
    }
    // A config edited without updating its CRC.
    let e = meta(|h| {
        let c = h["__metadata__"]["config"]
            .as_str()
            .unwrap()
            .replace("\"num_classes\":10", "\"num_classes\":11");
        h["__metadata__"]["config"] = json!(c);
    })
    .unwrap_err();
    assert!(
        matches!(e, Error::Format(FormatError::ConfigChecksum { .. })),
        "{e}"
    );
    // A flipped weight byte names its tensor.
    let mut flipped = bytes.clone();
    let n = flipped.len();
    flipped[n - 5] ^= 0x04;
    let e = load(&flipped).unwrap_err();
    assert!(
        matches!(e, Error::Format(FormatError::Checksum { ref tensor, .. }) if tensor == "head.bias"),
        "{e}"
    );
}

/// A one-channel, one-stage, one-head model at 2048x2048 with `depth` blocks: a file of
/// about 550 KB whose every block gathers a [1][16384][16384] bias table (1 GiB).
fn one_head_2048_file(depth: usize) -> Vec<u8> {
    let mut c = small_config();
    c.img_size = 2048;
    c.in_chans = 1;
    c.num_classes = 1;
    c.embed_dim = vec![8];
    c.key_dim = 1;
    c.num_heads = vec![1];
    c.depth = vec![depth];
    c.attn_ratio = vec![1.0];
    c.mlp_ratio = vec![1.0];
    synth::random_weight_file(&c, 1).unwrap()
}

#[test]
fn hostile_config_cannot_make_a_small_file_allocate_gigabytes() {
    // 2048x2048 input, one-channel stem, eight blocks of one head: the file holds about
    // 550 KB, but each block's gathered bias table is [1][16384][16384] floats (1 GiB).
    let bytes = one_head_2048_file(8);
    assert!(bytes.len() < 1 << 20, "{} bytes", bytes.len());
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let e = load(&bytes).unwrap_err();
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    assert!(
        matches!(e, Error::Graph(GraphError::TooLarge { .. })),
        "expected a size error, got {e}"
    );
    assert!(e.to_string().contains("MiB"), "{e}");
    // Other tests of this binary allocate concurrently, but far less than this.
    assert!(peak < 64 << 20, "the refused load allocated {peak} bytes");
}

#[test]
fn load_modes_agree_bitwise() {
    let bytes = small_model_bytes();
    let path = temp_path("modes.lvt");
    std::fs::write(&path, &bytes).unwrap();
    let reference = Arc::new(load(&bytes).unwrap());
    let x = image(&reference, 1);
    let want = Engine::new(reference).infer(&x).unwrap().to_vec();
    for mode in [LoadMode::Mmap, LoadMode::Owned] {
        let model = Arc::new(Model::load_with(&path, options(mode)).unwrap());
        assert_eq!(model.file().mode(), mode);
        assert_eq!(
            Engine::new(model).infer(&x).unwrap(),
            want.as_slice(),
            "{mode:?}"
        );
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn owned_mode_is_immune_to_the_file_changing_after_load() {
    let bytes = small_model_bytes();
    let path = temp_path("owned.lvt");
    std::fs::write(&path, &bytes).unwrap();
    let model = Arc::new(Model::load_with(&path, options(LoadMode::Owned)).unwrap());
    let x = image(&model, 2);
    let mut engine = Engine::new(model);
    let want = engine.infer(&x).unwrap().to_vec();
    // Rewrite the file in place with other bytes, then truncate it: the owned copy is
    // unaffected (a mapped file must never be modified in place, see LoadMode).
    std::fs::write(&path, vec![0x5au8; bytes.len()]).unwrap();
    assert_eq!(engine.infer(&x).unwrap(), want.as_slice());
    std::fs::File::create(&path).unwrap().set_len(0).unwrap();
    assert_eq!(engine.infer(&x).unwrap(), want.as_slice());
    let _ = std::fs::remove_file(&path);
}

#[test]
fn mapped_model_survives_an_atomic_replace_of_its_file() {
    // The safe way to update a model file that is mapped: write a new file and rename
    // it over the old one. The map keeps the old inode, so the loaded model is intact.
    let bytes = small_model_bytes();
    let path = temp_path("mapped.lvt");
    std::fs::write(&path, &bytes).unwrap();
    let model = Arc::new(Model::load_with(&path, options(LoadMode::Mmap)).unwrap());
    let x = image(&model, 3);
    let mut engine = Engine::new(model);
    let want = engine.infer(&x).unwrap().to_vec();
    let other = synth::random_weight_file(&small_config(), 99).unwrap();
    let tmp = temp_path("mapped.lvt.new");
    std::fs::write(&tmp, &other).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    assert_eq!(engine.infer(&x).unwrap(), want.as_slice());
    // A fresh load sees the new file.
    let fresh = Arc::new(Model::load(&path).unwrap());
    assert_ne!(Engine::new(fresh).infer(&x).unwrap(), want.as_slice());
    let _ = std::fs::remove_file(&path);
}

#[test]
fn non_finite_weights_with_consistent_checksums_fail_verification() {
    let good = small_model_bytes();
    for (bad, what) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf")] {
        let bytes = synth::edit_f32_file(&good, |name, values| {
            if name == "head.bias" {
                values[3] = bad;
            }
        })
        .unwrap();
        // The CRCs match (the file was rewritten), so a plain load succeeds...
        let model = Model::from_bytes(&bytes, ModelOptions::default()).unwrap();
        // ...and verification names the tensor, the element and the value.
        let err = model.verify_checksums().unwrap_err();
        assert!(
            matches!(&err, Error::NonFiniteWeight { tensor, index: 3, .. } if tensor == "head.bias"),
            "{err}"
        );
        assert!(err.to_string().contains(what), "{err}");
        let opts = ModelOptions {
            verify_checksums: true,
            ..ModelOptions::default()
        };
        assert!(Model::from_bytes(&bytes, opts).is_err());
        // Unverified, inference gives NaN logits, and top_k refuses to rank them.
        let input = image(&model, 1);
        let mut engine = Engine::new(Arc::new(model));
        let logits = engine.infer(&input).unwrap().to_vec();
        let err = levit::imagenet::top_k(&logits, 5).unwrap_err();
        assert!(matches!(err, Error::NonFiniteLogits { .. }), "{err}");
    }
    // bf16 files are checked too.
    let bf16 = synth::to_bf16_file(
        &synth::edit_f32_file(&good, |name, values| {
            if name.ends_with("fc1.weight") {
                values[0] = f32::NAN;
            }
        })
        .unwrap(),
    )
    .unwrap();
    let model = Model::from_bytes(&bf16, ModelOptions::default()).unwrap();
    let err = model.verify_checksums().unwrap_err();
    assert!(matches!(err, Error::NonFiniteWeight { .. }), "{err}");
}

#[test]
fn plan_memory_is_checked_before_the_bias_tables_are_gathered() {
    // Four blocks whose bias tables total exactly the 4 GiB limit ([1][16384][16384]
    // floats each): the tables alone pass, the arena on top of them does not, and the
    // refusal must come before 4 GiB are gathered.
    let bytes = one_head_2048_file(4);
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let e = load(&bytes).unwrap_err();
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    assert!(
        matches!(e, Error::Graph(GraphError::TooLarge { .. })),
        "{e}"
    );
    assert!(peak < 64 << 20, "the refused load allocated {peak} bytes");
}

#[test]
fn compute_per_image_is_limited_unless_the_caller_raises_it() {
    let bytes = small_model_bytes();
    let macs = load(&bytes).unwrap().macs();
    let at = |max_macs| ModelOptions {
        max_macs,
        ..ModelOptions::default()
    };
    let e = Model::from_bytes(&bytes, at(macs - 1)).unwrap_err();
    assert!(
        matches!(e, Error::TooMuchCompute { macs: m, limit } if m == macs && limit == macs - 1),
        "{e}"
    );
    assert!(Model::from_bytes(&bytes, at(macs)).is_ok());
    assert_eq!(ModelOptions::default().max_macs, levit::DEFAULT_MAX_MACS);
    // Every paper variant at its native size is far below the default.
    for v in ["128s", "384"] {
        let c = synth::variant_config(v).unwrap();
        let m = Model::from_bytes(
            &synth::random_weight_file(&c, 1).unwrap(),
            ModelOptions::default(),
        )
        .unwrap();
        assert!(m.macs() * 50 < levit::DEFAULT_MAX_MACS, "{v}: {}", m.macs());
    }
}
