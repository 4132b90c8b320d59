//! Every class of malformed weight file gives a typed error, never a panic.

mod common;

use common::{load, split, valid_file, CONFIG};
use levit_format::{FormatError, LoadMode, LoadOptions, WeightFile};
use serde_json::{json, Value};

/// Reassembles a file, padding the header to 64 bytes unless `pad` is false.
fn join(header: &Value, data: &[u8], pad: bool) -> Vec<u8> {
    let mut h = serde_json::to_string(header).unwrap().into_bytes();
    while pad && !(8 + h.len()).is_multiple_of(64) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

fn edit(f: impl FnOnce(&mut Value, &mut Vec<u8>)) -> Result<WeightFile, FormatError> {
    let (mut header, mut data) = split(&valid_file());
    f(&mut header, &mut data);
    load(&join(&header, &data, true))
}

fn expect_err(r: Result<WeightFile, FormatError>, needle: &str) -> FormatError {
    match r {
        Ok(_) => panic!("expected an error mentioning {needle:?}, got Ok"),
        Err(e) => {
            let text = e.to_string();
            assert!(
                text.contains(needle),
                "error {text:?} should mention {needle:?}"
            );
            e
        }
    }
}

#[test]
fn valid_file_loads_and_views_are_aligned() {
    let f = load(&valid_file()).unwrap();
    assert_eq!(f.config_json(), CONFIG);
    assert_eq!(f.format_version(), 1);
    let a = f.tensor("a").unwrap();
    assert_eq!(a.shape, &[2, 16]);
    assert_eq!(a.f32().unwrap()[31], 31.0);
    assert_eq!(a.len(), 32);
    for t in f.tensors() {
        assert_eq!(t.bytes.as_ptr() as usize % 64, 0, "{} misaligned", t.name);
    }
    assert!(f.checksums_verified());
}

#[test]
fn truncation_anywhere_is_an_error() {
    let file = valid_file();
    for len in 0..file.len() {
        let err = load(&file[..len]).expect_err(&format!("truncated to {len} bytes loaded"));
        assert!(matches!(err, FormatError::Container(_)), "len {len}: {err}");
    }
}

#[test]
fn trailing_bytes_are_an_error() {
    let mut file = valid_file();
    file.extend_from_slice(&[0; 64]);
    expect_err(load(&file), "end of the file");
}

#[test]
fn empty_file_is_an_error() {
    expect_err(load(&[]), "too short");
}

#[test]
fn missing_or_wrong_magic_is_not_levit() {
    let e = expect_err(
        edit(|h, _| h["__metadata__"]["format"] = json!("other")),
        "not a levit-rs",
    );
    assert!(matches!(e, FormatError::NotLevit(_)));
    let e = expect_err(
        edit(|h, _| {
            h["__metadata__"].as_object_mut().unwrap().remove("format");
        }),
        "not a levit-rs",
    );
    assert!(matches!(e, FormatError::NotLevit(_)));
    let e = expect_err(
        edit(|h, _| {
            h.as_object_mut().unwrap().remove("__metadata__");
        }),
        "no __metadata__",
    );
    assert!(matches!(e, FormatError::NotLevit(_)));
}

#[test]
fn future_version_is_refused_with_both_versions_named() {
    let e = expect_err(
        edit(|h, _| h["__metadata__"]["format_version"] = json!("3")),
        "version 3",
    );
    assert!(e.to_string().contains("reads versions 1 to 2"), "{e}");
    expect_err(
        edit(|h, _| h["__metadata__"]["format_version"] = json!("x")),
        "version x",
    );
}

#[test]
fn out_of_bounds_offsets_are_refused() {
    expect_err(
        edit(|h, _| h["b"]["data_offsets"] = json!([128, 4096])),
        "malformed",
    );
}

#[test]
fn overlapping_tensors_are_refused() {
    expect_err(
        edit(|h, _| h["b"]["data_offsets"] = json!([64, 128])),
        "overlap",
    );
}

#[test]
fn shape_that_lies_about_the_byte_size_is_refused() {
    let e = expect_err(edit(|h, _| h["a"]["shape"] = json!([3, 16])), "malformed");
    assert!(
        matches!(
            e,
            FormatError::TensorSize { ref tensor, expected: 192, found: 128, .. } if tensor == "a"
        ),
        "{e}"
    );
}

#[test]
fn non_f32_dtype_is_refused() {
    let e = expect_err(
        edit(|h, _| {
            h["a"]["dtype"] = json!("F16");
            h["a"]["shape"] = json!([4, 16]);
        }),
        "dtype",
    );
    assert!(matches!(e, FormatError::Dtype { .. }));
}

#[test]
fn misaligned_data_section_is_refused() {
    let (header, data) = split(&valid_file());
    let e = load(&join(&header, &data, false)).map(|_| ()).unwrap_err();
    assert!(e.to_string().contains("multiple of 64"), "{e}");
}

#[test]
fn misaligned_tensor_is_refused() {
    // Grow tensor `a` by 4 bytes so `b` starts at 132.
    let e = expect_err(
        edit(|h, data| {
            h["a"]["shape"] = json!([33]);
            h["a"]["data_offsets"] = json!([0, 132]);
            h["b"]["data_offsets"] = json!([132, 196]);
            data.splice(128..128, [0u8; 4]);
        }),
        "aligned",
    );
    assert!(matches!(e, FormatError::Misaligned { .. }));
}

#[test]
fn flipped_data_byte_fails_its_checksum() {
    let mut file = valid_file();
    let n = file.len();
    file[n - 3] ^= 0x10;
    let e = expect_err(load(&file), "corrupted");
    assert!(matches!(e, FormatError::Checksum { ref tensor, .. } if tensor == "b"));
    // Without verification the same bytes load (the option exists for fast loads).
    assert!(WeightFile::from_bytes(&file, false).is_ok());
}

#[test]
fn corrupted_config_fails_its_checksum() {
    let e = expect_err(
        edit(|h, _| h["__metadata__"]["config"] = json!(r#"{"test": false}"#)),
        "config",
    );
    assert!(matches!(e, FormatError::ConfigChecksum { .. }));
}

#[test]
fn checksum_table_must_cover_exactly_the_tensors() {
    let table = |h: &Value| -> Value {
        serde_json::from_str(h["__metadata__"]["checksums"].as_str().unwrap()).unwrap()
    };
    expect_err(
        edit(|h, _| {
            let mut t = table(h);
            t.as_object_mut().unwrap().remove("a");
            h["__metadata__"]["checksums"] = json!(t.to_string());
        }),
        "no checksum for tensor `a`",
    );
    expect_err(
        edit(|h, _| {
            let mut t = table(h);
            t["ghost"] = json!("00000000");
            h["__metadata__"]["checksums"] = json!(t.to_string());
        }),
        "ghost",
    );
    expect_err(
        edit(|h, _| h["__metadata__"]["checksums"] = json!("[1,2]")),
        "checksums",
    );
    expect_err(
        edit(|h, _| h["__metadata__"]["config_crc32"] = json!("xyz")),
        "config_crc32",
    );
}

#[test]
fn every_single_byte_flip_is_an_error_or_harmless() {
    let file = valid_file();
    for i in 0..file.len() {
        for bit in [0x01u8, 0x80] {
            let mut f = file.clone();
            f[i] ^= bit;
            // Must not panic; data flips must be caught by the checksums.
            let r = load(&f);
            let header_end = 8 + u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
            if i >= header_end {
                assert!(r.is_err(), "flip at data byte {i} went unnoticed");
            }
        }
    }
}

#[test]
fn directory_and_missing_path_are_errors() {
    let dir = std::env::temp_dir();
    let e = WeightFile::open(&dir, LoadOptions::default()).unwrap_err();
    assert!(matches!(e, FormatError::NotAFile { .. }), "{e}");
    let e =
        WeightFile::open(dir.join("no-such-levit-file.lvt"), LoadOptions::default()).unwrap_err();
    assert!(matches!(e, FormatError::Io { .. }), "{e}");
}

#[test]
fn mmap_and_owned_modes_read_the_same_bytes() {
    let path = std::env::temp_dir().join(format!("levit-format-test-{}.lvt", std::process::id()));
    std::fs::write(&path, valid_file()).unwrap();
    for mode in [LoadMode::Mmap, LoadMode::Owned] {
        let f = WeightFile::open(
            &path,
            LoadOptions {
                mode,
                verify_checksums: true,
            },
        )
        .unwrap();
        assert_eq!(f.mode(), mode);
        assert_eq!(f.tensor("b").unwrap().f32().unwrap()[15], -15.0);
    }
    let empty = path.with_extension("empty");
    std::fs::write(&empty, b"").unwrap();
    for mode in [LoadMode::Mmap, LoadMode::Owned] {
        let e = WeightFile::open(
            &empty,
            LoadOptions {
                mode,
                verify_checksums: true,
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("too short"), "{e}");
    }
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&empty);
}
