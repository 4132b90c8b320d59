//! Header corruption beyond `malformed.rs`: extreme length fields, headers that are
//! not UTF-8, not an object or nested without end, extreme offsets and shapes, empty
//! and duplicate tensors, metadata of the wrong type, lenient spellings, and paths
//! that are not regular files. Every case is `Ok` or a typed `FormatError`.

mod common;

use common::{load, split, valid_file, CONFIG};
use levit_format::{FormatError, LoadMode, LoadOptions, WeightFile};
use serde_json::{json, Value};

/// A file from raw header bytes (padded to 64 with `pad`) and data.
fn raw(header: &[u8], pad: u8, data: &[u8]) -> Vec<u8> {
    let mut h = header.to_vec();
    while !(8 + h.len()).is_multiple_of(64) {
        h.push(pad);
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

fn edit(f: impl FnOnce(&mut Value)) -> Result<WeightFile, FormatError> {
    let (mut header, data) = split(&valid_file());
    f(&mut header);
    load(&raw(&serde_json::to_vec(&header).unwrap(), b' ', &data))
}

fn container_error(r: Result<WeightFile, FormatError>, what: &str) {
    match r {
        Err(FormatError::Container(_)) => {}
        Err(e) => panic!("{what}: expected a container error, got {e}"),
        Ok(_) => panic!("{what}: loaded"),
    }
}

#[test]
fn extreme_header_length_fields_are_refused() {
    let file = valid_file();
    let real = u64::from_le_bytes(file[..8].try_into().unwrap());
    let rest = (file.len() - 8) as u64;
    for len in [
        u64::MAX,
        u64::MAX - 7,
        1 << 63,
        1 << 32,
        rest + 1,
        rest,
        real - 1,
        real + 1,
        0,
        1,
    ] {
        let mut f = file.clone();
        f[..8].copy_from_slice(&len.to_le_bytes());
        container_error(load(&f), &format!("header length {len}"));
    }
}

#[test]
fn header_that_is_not_a_json_object_is_refused() {
    let data = split(&valid_file()).1;
    for header in [
        &b"\xff\xfe not utf-8"[..],
        b"[]",
        b"123",
        b"\"a string\"",
        b"null",
        b"{",
        b"",
        b"{\"a\": {\"dtype\": \"F32\"}}",
    ] {
        container_error(
            load(&raw(header, b' ', &data)),
            &String::from_utf8_lossy(header),
        );
    }
}

#[test]
fn deeply_nested_header_is_an_error_not_a_stack_overflow() {
    let mut header = b"{\"x\":".to_vec();
    header.extend(std::iter::repeat_n(b'[', 100_000));
    header.extend(std::iter::repeat_n(b']', 100_000));
    header.push(b'}');
    container_error(load(&raw(&header, b' ', &[])), "100000 nested arrays");
}

#[test]
fn header_padding_must_be_spaces() {
    let (header, data) = split(&valid_file());
    let text = serde_json::to_vec(&header).unwrap();
    assert!(load(&raw(&text, b' ', &data)).is_ok());
    assert!(
        !(8 + text.len()).is_multiple_of(64),
        "the test needs a padded header"
    );
    for pad in [0u8, b'x', b'\n' + 128] {
        container_error(load(&raw(&text, pad, &data)), &format!("padding {pad:#x}"));
    }
}

#[test]
fn extreme_offsets_and_shapes_are_refused_without_overflow() {
    let max = u64::MAX;
    for offsets in [
        json!([0, max]),
        json!([max - 1, max]),
        json!([max, 0]),
        json!([128, 128 + (1u64 << 62)]),
        json!([-1, 64]),
        json!([0.5, 64]),
        json!([0]),
        json!([0, 64, 128]),
        json!("0-64"),
    ] {
        let o = offsets.clone();
        let r = edit(move |h| h["b"]["data_offsets"] = o);
        assert!(r.is_err(), "offsets {offsets} loaded");
    }
    for shape in [
        json!([1u64 << 32, 1u64 << 32, 1 << 10]),
        json!([max, 2]),
        json!([-16]),
        json!([16.0]),
        json!("16"),
    ] {
        let s = shape.clone();
        let r = edit(move |h| h["b"]["shape"] = s);
        assert!(r.is_err(), "shape {shape} loaded");
    }
}

#[test]
fn empty_tensor_loads_as_an_empty_view() {
    // A zero-element tensor is a valid safetensors entry; the format layer hands out an
    // empty slice and leaves it to the engine to refuse shapes its config does not use.
    let r = edit(|h| {
        h["z"] = json!({"dtype": "F32", "shape": [0, 16], "data_offsets": [128, 128]});
        let mut sums: Value =
            serde_json::from_str(h["__metadata__"]["checksums"].as_str().unwrap()).unwrap();
        sums["z"] = json!(format!("{:08x}", 0));
        h["__metadata__"]["checksums"] = json!(sums.to_string());
    });
    let f = r.unwrap();
    let z = f.tensor("z").unwrap();
    assert!(z.is_empty() && z.f32().unwrap().is_empty());
}

#[test]
fn duplicate_tensor_names_are_an_error_or_the_last_wins() {
    let (header, data) = split(&valid_file());
    let text = serde_json::to_string(&header).unwrap();
    // Repeat the `b` entry textually (serde maps keep one of them).
    let b = serde_json::to_string(&header["b"]).unwrap();
    let dup = text.replacen("{", &format!("{{\"b\":{b},"), 1);
    let r = load(&raw(dup.as_bytes(), b' ', &data));
    if let Ok(f) = r {
        assert_eq!(f.tensor_count(), 2);
    }
}

#[test]
fn metadata_of_the_wrong_type_is_refused() {
    container_error(
        edit(|h| h["__metadata__"]["format_version"] = json!(1)),
        "numeric version",
    );
    container_error(
        edit(|h| h["__metadata__"] = json!(["levit-rs"])),
        "metadata list",
    );
    let e = edit(|h| h["__metadata__"]["checksums"] = json!(r#"{"a": 1, "b": 2}"#))
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(e, FormatError::Metadata { .. }), "{e}");
    for dtype in ["F64", "BOOL", "f32", "F8_E4M3", ""] {
        let d = dtype.to_string();
        assert!(
            edit(move |h| h["a"]["dtype"] = json!(d)).is_err(),
            "dtype {dtype:?}"
        );
    }
}

#[test]
fn version_spellings() {
    // Any decimal spelling of 1 or 2 is that version (an all-F32 file is valid in
    // both); anything else is refused and named.
    for ok in ["1", " 1", "1 ", "01", "+1", "2", " 02"] {
        let v = ok.to_string();
        assert!(
            edit(move |h| h["__metadata__"]["format_version"] = json!(v)).is_ok(),
            "{ok:?}"
        );
    }
    for bad in ["", "3", "0", "-1", "1.0", "2.0", "4294967297", "one"] {
        let v = bad.to_string();
        match edit(move |h| h["__metadata__"]["format_version"] = json!(v)) {
            Err(FormatError::UnsupportedVersion {
                found,
                supported: 2,
            }) => assert_eq!(found, bad),
            other => panic!("version {bad:?}: {other:?}"),
        }
    }
}

#[test]
fn crc_spellings() {
    // Uppercase hex is read; anything that is not 8 hex digits is a metadata error,
    // and a wrong value a checksum error.
    let crc = format!("{:08x}", crc32fast::hash(CONFIG.as_bytes()));
    let upper = crc.to_uppercase();
    assert!(edit(move |h| h["__metadata__"]["config_crc32"] = json!(upper)).is_ok());
    for bad in ["", "1234567", "123456789", "xyzxyzxy", "-1234567"] {
        let v = bad.to_string();
        let e = edit(move |h| h["__metadata__"]["config_crc32"] = json!(v))
            .map(|_| ())
            .unwrap_err();
        assert!(
            matches!(
                e,
                FormatError::Metadata { .. } | FormatError::ConfigChecksum { .. }
            ),
            "{bad:?}: {e}"
        );
    }
}

fn options(mode: LoadMode) -> LoadOptions {
    LoadOptions {
        mode,
        verify_checksums: true,
    }
}

#[cfg(unix)]
#[test]
fn paths_that_are_not_regular_files() {
    let dir = std::env::temp_dir().join(format!("levit-corruption-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ok.lvt");
    std::fs::write(&file, valid_file()).unwrap();
    let to_file = dir.join("link-to-file.lvt");
    let to_dir = dir.join("link-to-dir.lvt");
    let dangling = dir.join("dangling.lvt");
    std::os::unix::fs::symlink(&file, &to_file).unwrap();
    std::os::unix::fs::symlink(&dir, &to_dir).unwrap();
    std::os::unix::fs::symlink(dir.join("missing"), &dangling).unwrap();
    for mode in [LoadMode::Mmap, LoadMode::Owned] {
        assert!(WeightFile::open(&to_file, options(mode)).is_ok());
        let e = WeightFile::open(&to_dir, options(mode)).unwrap_err();
        assert!(matches!(e, FormatError::NotAFile { .. }), "{e}");
        let e = WeightFile::open(&dangling, options(mode)).unwrap_err();
        assert!(matches!(e, FormatError::Io { .. }), "{e}");
        // Device files: refused before they are opened (reading /dev/zero never ends).
        for dev in ["/dev/null", "/dev/zero"] {
            if std::path::Path::new(dev).exists() {
                let e = WeightFile::open(dev, options(mode)).unwrap_err();
                assert!(matches!(e, FormatError::NotAFile { .. }), "{dev}: {e}");
            }
        }
    }
    // A FIFO: refused without opening it (opening would block until a writer came).
    let fifo = dir.join("fifo.lvt");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        for mode in [LoadMode::Mmap, LoadMode::Owned] {
            let e = WeightFile::open(&fifo, options(mode)).unwrap_err();
            assert!(matches!(e, FormatError::NotAFile { .. }), "{e}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
