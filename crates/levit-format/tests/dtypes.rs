//! Format version 2: typed tensors (F32, BF16, I8). Round trips of every dtype, the
//! version rules (v1 is all F32 and stays byte-identical), and headers that lie about
//! dtypes, sizes, offsets and versions: each is a typed error naming the tensor.

mod common;

use common::{bf16, join, load, set_checksum, split, valid_file, valid_v2_file, CONFIG};
use levit_format::{
    write_weight_file, Dtype, FormatError, LoadMode, LoadOptions, TensorBytes, TensorData,
    WeightFile, FORMAT_VERSION, MIN_FORMAT_VERSION,
};
use serde_json::{json, Value};

/// Edits the header and data of [`valid_v2_file`] and loads the result (checksums on).
fn edit_v2(f: impl FnOnce(&mut Value, &mut Vec<u8>)) -> Result<WeightFile, FormatError> {
    let (mut header, mut data) = split(&valid_v2_file());
    f(&mut header, &mut data);
    load(&join(&header, &data))
}

#[test]
fn dtype_names_and_sizes() {
    assert_eq!(
        Dtype::ALL.map(|d| (d.name(), d.size())),
        [("F32", 4), ("BF16", 2), ("I8", 1), ("I32", 4)]
    );
    for d in Dtype::ALL {
        assert_eq!(Dtype::from_name(d.name()), Some(d));
        assert_eq!(d.to_string(), d.name());
        assert!(d.allowed_in(2));
        assert_eq!(d.allowed_in(1), d == Dtype::F32);
        assert!(!d.allowed_in(3) && !d.allowed_in(0));
    }
    for bad in ["bf16", "F16", "I16", "", "F32 "] {
        assert_eq!(Dtype::from_name(bad), None, "{bad:?}");
    }
    assert_eq!((MIN_FORMAT_VERSION, FORMAT_VERSION), (1, 2));
}

#[test]
fn every_dtype_round_trips() {
    let f = load(&valid_v2_file()).unwrap();
    assert_eq!(f.format_version(), 2);
    assert_eq!(f.config_json(), CONFIG);
    assert_eq!(f.source(), Some("test v2"));
    assert!(f.checksums_verified());

    let w = f.tensor("w").unwrap();
    assert_eq!(
        (w.name, w.shape, w.dtype),
        ("w", &[2, 16, 2][..], Dtype::Bf16)
    );
    assert_eq!((w.len(), w.bytes.len()), (64, 128));
    let want: Vec<u16> = (0..64).map(|i| bf16(i as f32)).collect();
    assert_eq!(w.bf16().unwrap(), &want[..]);
    assert!(w.f32().is_none() && w.i8().is_none());

    let b = f.tensor("b").unwrap();
    assert_eq!((b.dtype, b.len()), (Dtype::F32, 16));
    assert_eq!(b.f32().unwrap()[15], -15.0);
    assert!(b.bf16().is_none() && b.i8().is_none());

    let q = f.tensor("q").unwrap();
    assert_eq!((q.dtype, q.len(), q.shape), (Dtype::I8, 64, &[64][..]));
    assert_eq!(q.i8().unwrap(), &(-32..32).collect::<Vec<i8>>()[..]);
    assert!(q.f32().is_none() && q.bf16().is_none());

    for t in f.tensors() {
        assert_eq!(t.bytes.as_ptr() as usize % 64, 0, "{} misaligned", t.name);
        assert_eq!(t.bytes.len(), t.len() * t.dtype.size());
        assert!(!t.is_empty());
    }
    let names: Vec<&str> = f.tensors().map(|t| t.name).collect();
    assert_eq!(names, ["w", "b", "q"], "file order");
    let i = f.tensor_index("q").unwrap();
    assert_eq!(f.tensor_at(i).dtype, Dtype::I8);
    assert_eq!(
        f.precision_summary(),
        [(Dtype::F32, 1), (Dtype::Bf16, 1), (Dtype::I8, 1)]
    );
    assert_eq!(
        load(&valid_file()).unwrap().precision_summary(),
        [(Dtype::F32, 2)]
    );
}

#[test]
fn bf16_bit_patterns_survive_unchanged() {
    // NaNs, infinities, signed zeros and subnormals are stored as given: the format
    // layer never interprets bf16 values.
    let w: Vec<u16> = [
        0x7fc0u16, 0xffc1, 0x7f80, 0xff80, 0x0000, 0x8000, 0x0001, 0x807f,
    ]
    .into_iter()
    .cycle()
    .take(32)
    .collect();
    let bytes = write_weight_file(
        "{}",
        &[TensorData {
            name: "w",
            shape: &[32],
            data: TensorBytes::Bf16(&w),
        }],
        "",
    );
    let f = load(&bytes).unwrap();
    assert_eq!(f.tensor("w").unwrap().bf16().unwrap(), &w[..]);
    // Little-endian on disk.
    let (_, data) = split(&bytes);
    assert_eq!(&data[..4], &[0xc0, 0x7f, 0xc1, 0xff]);
}

#[test]
fn mmap_and_owned_read_v2_files_alike() {
    let path = std::env::temp_dir().join(format!("levit-format-v2-{}.lvt", std::process::id()));
    std::fs::write(&path, valid_v2_file()).unwrap();
    for mode in [LoadMode::Mmap, LoadMode::Owned] {
        let f = WeightFile::open(
            &path,
            LoadOptions {
                mode,
                verify_checksums: true,
            },
        )
        .unwrap();
        assert_eq!(f.tensor("w").unwrap().bf16().unwrap()[63], bf16(63.0));
        assert_eq!(f.tensor("q").unwrap().i8().unwrap()[0], -32);
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn writer_picks_version_1_for_all_f32_and_2_otherwise() {
    let version = |bytes: &[u8]| split(bytes).0["__metadata__"]["format_version"].clone();
    assert_eq!(version(&valid_file()), json!("1"));
    assert_eq!(version(&valid_v2_file()), json!("2"));
    let q = [0i8; 64];
    let only_i8 = write_weight_file(
        "{}",
        &[TensorData {
            name: "q",
            shape: &[64],
            data: TensorBytes::I8(&q),
        }],
        "",
    );
    assert_eq!(version(&only_i8), json!("2"));
    assert_eq!(load(&only_i8).unwrap().format_version(), 2);
}

#[test]
fn rewriting_a_v1_file_reproduces_it_byte_for_byte() {
    // The fuzz seeds were written by this writer before version 2 existed.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
    for name in ["one_stage", "two_stages"] {
        let old = std::fs::read(dir.join(format!("{name}.lvt"))).unwrap();
        let f = load(&old).unwrap();
        assert_eq!(f.format_version(), 1);
        let tensors: Vec<TensorData> = f
            .tensors()
            .map(|t| TensorData {
                name: t.name,
                shape: t.shape,
                data: TensorBytes::F32(t.f32().unwrap()),
            })
            .collect();
        let new = write_weight_file(f.config_json(), &tensors, f.source().unwrap());
        assert!(new == old, "{name}: rewritten file differs");
    }
}

#[test]
fn all_f32_file_labelled_version_2_loads() {
    let (mut header, data) = split(&valid_file());
    header["__metadata__"]["format_version"] = json!("2");
    let f = load(&join(&header, &data)).unwrap();
    assert_eq!(f.format_version(), 2);
    assert_eq!(f.precision_summary(), [(Dtype::F32, 2)]);
}

#[test]
fn version_1_header_with_bf16_or_i8_is_refused() {
    let e = edit_v2(|h, _| h["__metadata__"]["format_version"] = json!("1"))
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(
            e,
            FormatError::DtypeVersion { ref tensor, dtype: Dtype::Bf16, version: 1 } if tensor == "w"
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("format version 1 does not allow"),
        "{e}"
    );
    // The same with only an I8 tensor left non-F32.
    let e = edit_v2(|h, data| {
        h["__metadata__"]["format_version"] = json!("1");
        h["w"]["dtype"] = json!("F32");
        h["w"]["shape"] = json!([32]);
        set_checksum(h, "w", &data[..128]);
    })
    .map(|_| ())
    .unwrap_err();
    assert!(
        matches!(
            e,
            FormatError::DtypeVersion { ref tensor, dtype: Dtype::I8, version: 1 } if tensor == "q"
        ),
        "{e}"
    );
}

#[test]
fn versions_a_build_does_not_know_are_refused() {
    for v in ["3", "0", "20", "2.0", "v2"] {
        let text = v.to_string();
        match edit_v2(move |h, _| h["__metadata__"]["format_version"] = json!(text)) {
            Err(FormatError::UnsupportedVersion {
                found,
                supported: 2,
            }) => assert_eq!(found, v),
            other => panic!("version {v:?}: {other:?}"),
        }
    }
}

#[test]
fn bf16_tensor_whose_header_says_f32_is_refused() {
    // 128 bytes of bf16 data labelled F32 with the bf16 shape: F32 needs 256 bytes.
    let e = edit_v2(|h, _| h["w"]["dtype"] = json!("F32"))
        .map(|_| ())
        .unwrap_err();
    match &e {
        FormatError::TensorSize {
            tensor,
            dtype: Dtype::F32,
            shape,
            expected: 256,
            found: 128,
        } => assert_eq!((tensor.as_str(), &shape[..]), ("w", &[2, 16, 2][..])),
        other => panic!("{other}"),
    }
    let text = e.to_string();
    assert!(
        text.contains("`w`") && text.contains("256") && text.contains("128"),
        "{text}"
    );
    // And the other way round: F32 data labelled BF16 (half the bytes it spans).
    let e = edit_v2(|h, _| h["b"]["dtype"] = json!("BF16"))
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(e, FormatError::TensorSize { ref tensor, dtype: Dtype::Bf16, expected: 32, found: 64, .. } if tensor == "b"),
        "{e}"
    );
}

#[test]
fn shape_that_lies_about_a_bf16_tensor_is_refused() {
    for (shape, expected) in [(json!([2, 16, 4]), 256), (json!([63]), 126), (json!([]), 2)] {
        let s = shape.clone();
        let e = edit_v2(move |h, _| h["w"]["shape"] = s)
            .map(|_| ())
            .unwrap_err();
        assert!(
            matches!(e, FormatError::TensorSize { ref tensor, expected: x, found: 128, .. } if tensor == "w" && x == expected),
            "{shape}: {e}"
        );
    }
}

#[test]
fn odd_byte_size_of_a_bf16_tensor_is_refused() {
    // `q` (last) becomes a BF16 tensor spanning 65 bytes: no whole number of elements.
    let e = edit_v2(|h, data| {
        h["q"]["dtype"] = json!("BF16");
        h["q"]["shape"] = json!([32]);
        h["q"]["data_offsets"] = json!([192, 257]);
        data.push(0);
        set_checksum(h, "q", &data[192..]);
    })
    .map(|_| ())
    .unwrap_err();
    assert!(
        matches!(e, FormatError::TensorSize { ref tensor, dtype: Dtype::Bf16, expected: 64, found: 65, .. } if tensor == "q"),
        "{e}"
    );
    assert!(
        e.to_string().contains("not a whole number of 2-byte BF16"),
        "{e}"
    );
    // An odd BF16 span in the middle of the file.
    let e = edit_v2(|h, data| {
        h["w"]["shape"] = json!([64]);
        h["w"]["data_offsets"] = json!([0, 129]);
        h["b"]["data_offsets"] = json!([129, 193]);
        h["q"]["data_offsets"] = json!([193, 257]);
        data.insert(128, 0);
    })
    .map(|_| ())
    .unwrap_err();
    assert!(
        matches!(e, FormatError::TensorSize { ref tensor, found: 129, .. } if tensor == "w"),
        "{e}"
    );
}

#[test]
fn unpadded_last_tensor_is_refused() {
    // A consistent BF16 tensor of 33 elements (66 bytes) at the end of the file.
    let e = edit_v2(|h, data| {
        h["q"]["dtype"] = json!("BF16");
        h["q"]["shape"] = json!([33]);
        h["q"]["data_offsets"] = json!([192, 258]);
        data.extend_from_slice(&[0, 0]);
        set_checksum(h, "q", &data[192..]);
    })
    .map(|_| ())
    .unwrap_err();
    assert!(
        matches!(e, FormatError::Unpadded { ref tensor, bytes: 66 } if tensor == "q"),
        "{e}"
    );
}

#[test]
fn misaligned_bf16_offsets_are_refused() {
    // `w` shrinks to 48 bf16 values (96 bytes): `b` then starts at 96.
    let e = edit_v2(|h, data| {
        h["w"]["shape"] = json!([48]);
        h["w"]["data_offsets"] = json!([0, 96]);
        h["b"]["data_offsets"] = json!([96, 160]);
        h["q"]["data_offsets"] = json!([160, 224]);
        data.drain(96..128);
        set_checksum(h, "w", &data[..96]);
    })
    .map(|_| ())
    .unwrap_err();
    assert!(
        matches!(e, FormatError::Misaligned { ref tensor, .. } if tensor == "b"),
        "{e}"
    );
    // A BF16 tensor that itself starts off the 64-byte grid: `w` becomes 130 I8
    // values, followed by `q` (now BF16), then `b`.
    let e = edit_v2(|h, data| {
        h["w"]["dtype"] = json!("I8");
        h["w"]["shape"] = json!([130]);
        h["w"]["data_offsets"] = json!([0, 130]);
        h["q"]["dtype"] = json!("BF16");
        h["q"]["shape"] = json!([32]);
        h["q"]["data_offsets"] = json!([130, 194]);
        h["b"]["data_offsets"] = json!([194, 258]);
        let (w, b, q) = (data[..128].to_vec(), &data[128..192], &data[192..]);
        *data = [&w[..], &[0, 0], q, b].concat();
        set_checksum(h, "w", &data[..130]);
    })
    .map(|_| ())
    .unwrap_err();
    assert!(
        matches!(e, FormatError::Misaligned { ref tensor, offset } if tensor == "q" && offset % 64 == 2),
        "{e}"
    );
}

#[test]
fn unknown_dtypes_are_refused_by_name() {
    // Safetensors dtypes levit-rs does not store, and strings that are no dtype at all
    // (which safetensors refuses without naming the tensor): all name `w`.
    for dtype in [
        "F16", "F64", "I16", "U8", "F8_E4M3", "bf16", "Bf16", "BF8", "", "F32 ",
    ] {
        let d = dtype.to_string();
        let e = edit_v2(move |h, _| h["w"]["dtype"] = json!(d))
            .map(|_| ())
            .unwrap_err();
        match &e {
            FormatError::Dtype {
                tensor,
                dtype: found,
            } => {
                assert_eq!((tensor.as_str(), found.as_str()), ("w", dtype));
            }
            other => panic!("{dtype:?}: {other}"),
        }
        assert!(e.to_string().contains("`w`"), "{e}");
    }
    // A dtype that is not even a string.
    assert!(edit_v2(|h, _| h["w"]["dtype"] = json!(2)).is_err());
}

#[test]
fn crc_mismatch_on_a_bf16_tensor_names_it() {
    let mut file = valid_v2_file();
    let (header, _) = split(&file);
    let start = file.len() - 256;
    assert_eq!(header["w"]["data_offsets"], json!([0, 128]));
    file[start + 77] ^= 0x01;
    let e = load(&file).map(|_| ()).unwrap_err();
    assert!(
        matches!(e, FormatError::Checksum { ref tensor, .. } if tensor == "w"),
        "{e}"
    );
    // Without verification the bytes load, and the flipped bit is visible.
    let f = WeightFile::from_bytes(&file, false).unwrap();
    assert_eq!(
        f.tensor("w").unwrap().bf16().unwrap()[38],
        bf16(38.0) ^ 0x0100
    );
    assert!(f.verify_checksums().is_err());
}

#[test]
fn truncated_v2_file_is_a_container_error() {
    let file = valid_v2_file();
    for len in 0..file.len() {
        let e = load(&file[..len]).map(|_| ()).unwrap_err();
        assert!(matches!(e, FormatError::Container(_)), "len {len}: {e}");
    }
}

#[test]
fn every_single_bit_flip_of_a_v2_file_is_an_error_or_harmless() {
    let file = valid_v2_file();
    let header_end = 8 + u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    for i in 0..file.len() {
        for bit in [0x01u8, 0x04, 0x80] {
            let mut f = file.clone();
            f[i] ^= bit;
            let r = load(&f);
            if let Err(e) = &r {
                drop(e.to_string());
            }
            if i >= header_end {
                assert!(r.is_err(), "flip at data byte {i} went unnoticed");
            }
        }
    }
}

#[test]
fn overflowing_bf16_shapes_are_errors() {
    for shape in [
        json!([u64::MAX, 2]),
        json!([1u64 << 62, 4]),
        json!([1u64 << 32, 1u64 << 31]),
    ] {
        let s = shape.clone();
        assert!(edit_v2(move |h, _| h["w"]["shape"] = s).is_err(), "{shape}");
    }
}

#[test]
fn empty_bf16_tensor_gives_empty_views() {
    let (mut header, data) = split(&valid_v2_file());
    header["z"] = json!({"dtype": "BF16", "shape": [16, 0], "data_offsets": [256, 256]});
    set_checksum(&mut header, "z", &[]);
    let f = load(&join(&header, &data)).unwrap();
    let z = f.tensor("z").unwrap();
    assert!(z.is_empty() && z.bf16().unwrap().is_empty());
}

#[test]
#[should_panic(expected = "not 64-byte sized")]
fn writer_refuses_unpadded_bf16_tensors() {
    let w = [0u16; 33];
    write_weight_file(
        "{}",
        &[TensorData {
            name: "w",
            shape: &[33],
            data: TensorBytes::Bf16(&w),
        }],
        "",
    );
}

/// bf16 of an f32, round to nearest even, NaN quieted (the format's rounding rule).
fn rne(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) as u16) | 0x0040;
    }
    ((bits as u64 + 0x7fff + ((bits as u64 >> 16) & 1)) >> 16) as u16
}

#[test]
fn rounding_rule_examples() {
    assert_eq!(rne(1.0), 0x3f80);
    assert_eq!(
        rne(f32::from_bits(0x3f80_8000)),
        0x3f80,
        "tie to even (down)"
    );
    assert_eq!(rne(f32::from_bits(0x3f81_8000)), 0x3f82, "tie to even (up)");
    assert_eq!(rne(f32::from_bits(0x3f80_8001)), 0x3f81);
    assert_eq!(rne(f32::MAX), 0x7f80, "rounds to infinity");
    assert_eq!(rne(-0.0), 0x8000);
    assert_eq!(rne(f32::NAN) & 0x7fc0, 0x7fc0);
}

/// The bf16 seed, written by `levit-weights recast` (Python) from the f32 seed, holds
/// exactly the layout docs/weight-format.md describes, computed here from scratch:
/// the contract between the converter and the kernels, checked across languages.
#[test]
fn python_bf16_file_has_the_documented_layout() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
    let f32_file = load(&std::fs::read(dir.join("one_stage.lvt")).unwrap()).unwrap();
    let bf16_file = load(&std::fs::read(dir.join("one_stage_bf16.lvt")).unwrap()).unwrap_or_else(
        |e| panic!("{e}; regenerate with `levit-weights recast fuzz/seeds/one_stage.lvt -o fuzz/seeds/one_stage_bf16.lvt --precision bf16`"),
    );
    assert_eq!(
        (bf16_file.format_version(), f32_file.format_version()),
        (2, 1)
    );
    assert_eq!(bf16_file.config_json(), f32_file.config_json());
    assert_eq!(bf16_file.tensor_count(), f32_file.tensor_count());
    let mut gemm = 0;
    for t in f32_file.tensors() {
        let b = bf16_file.tensor(t.name).unwrap();
        if !t.name.ends_with(".weight") {
            assert_eq!(b.dtype, Dtype::F32, "{}", t.name);
            assert_eq!((b.shape, b.bytes), (t.shape, t.bytes), "{}", t.name);
            continue;
        }
        gemm += 1;
        // f32 panels [P, K, 16]: panels[p][k][j] = B[k][p*16 + j].
        let (p_count, k) = (t.shape[0], t.shape[1]);
        let kp = k.div_ceil(32) * 32;
        assert_eq!(b.dtype, Dtype::Bf16, "{}", t.name);
        assert_eq!(b.shape, &[p_count, kp / 2, 16, 2], "{}", t.name);
        let (src, got) = (t.f32().unwrap(), b.bf16().unwrap());
        let at = |p: usize, kk: usize, j: usize| ((p * (kp / 2) + kk / 2) * 16 + j) * 2 + kk % 2;
        // The converter zeroes the columns past N, which this Rust-made f32 seed fills
        // with random values: in the last panel, the columns from the first all-zero
        // one on are padding and must be all zero.
        let last = p_count - 1;
        let n_last = (0..16)
            .find(|&j| (0..kp).all(|kk| got[at(last, kk, j)] == 0))
            .unwrap_or(16);
        assert!(n_last > 0, "{}: an all-zero last panel", t.name);
        for p in 0..p_count {
            let real = if p == last { n_last } else { 16 };
            for kk in 0..kp {
                for j in 0..16 {
                    let want = if kk < k && j < real {
                        rne(src[(p * k + kk) * 16 + j])
                    } else {
                        0
                    };
                    assert_eq!(got[at(p, kk, j)], want, "{} p {p} k {kk} j {j}", t.name);
                }
            }
        }
    }
    assert!(gemm >= 5, "{gemm} GEMM weights");
    assert_eq!(
        bf16_file.precision_summary(),
        [
            (Dtype::F32, f32_file.tensor_count() - gemm),
            (Dtype::Bf16, gemm)
        ]
    );
}
