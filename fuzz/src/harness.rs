//! What every fuzz input must satisfy, shared by the fuzz targets (`fuzz_targets/`) and
//! the regression test `crates/levit/tests/robustness_fuzz.rs`, which replays each file
//! under `fuzz/regressions/` through these functions. Depends only on `levit`,
//! `levit-format` (a dependency of `levit`) and `serde_json`, so both crates can
//! compile it.

use std::sync::Arc;

use levit::{Engine, Error, FormatError, Model, ModelOptions};
use levit_format::{Dtype, WeightFile};
use serde_json::Value;

/// Largest model (multiply-accumulates per image) the harness runs an inference on, so
/// that every input stays fast; larger models that load are only loaded.
pub const MAX_INFER_MACS: u64 = 2_000_000;

/// Loads `bytes` as a weight file. It must give `Ok` or a typed `Err` (whose message
/// formats), never panic. A file that fails only its tensor checksums is loaded again
/// without verification, so that arbitrary weight values reach the engine too. A model
/// that loads runs one inference, which must succeed with `num_classes` logits.
/// First the same bytes go through the format layer alone ([`check_weight_file`]), so
/// that files the engine refuses (other dtypes, shapes) still exercise the loader.
/// Returns whether a model loaded.
pub fn load_and_run(bytes: &[u8]) -> bool {
    check_weight_file(bytes);
    let mut options = ModelOptions {
        verify_checksums: true,
        ..ModelOptions::default()
    };
    let result = match Model::from_bytes(bytes, options.clone()) {
        Err(Error::Format(FormatError::Checksum { .. })) => {
            options.verify_checksums = false;
            Model::from_bytes(bytes, options)
        }
        other => other,
    };
    match result {
        Ok(model) => {
            infer_once(model);
            true
        }
        Err(e) => {
            drop(e.to_string());
            false
        }
    }
}

/// Loads `bytes` with `levit-format` alone (any format version and dtype, no model
/// checks): `Ok` or a typed `Err`, never a panic. A file that fails only its checksums
/// is loaded again without verification. Every tensor of a file that loads must keep
/// the format's promises: 64-byte aligned data of exactly `product(shape)` elements of
/// its dtype, only the accessor of its dtype returning data, a dtype its version allows.
/// Returns whether the file loaded.
pub fn check_weight_file(bytes: &[u8]) -> bool {
    let file = match WeightFile::from_bytes(bytes, true) {
        Err(FormatError::Checksum { .. }) => WeightFile::from_bytes(bytes, false),
        other => other,
    };
    let file = match file {
        Ok(file) => file,
        Err(e) => {
            drop(e.to_string());
            return false;
        }
    };
    let version = file.format_version();
    let mut count = 0;
    for (i, t) in file.tensors().enumerate() {
        count += 1;
        assert!(
            t.dtype.allowed_in(version),
            "{} in version {version}",
            t.dtype
        );
        assert_eq!(t.bytes.as_ptr() as usize % 64, 0, "{} misaligned", t.name);
        assert_eq!(t.bytes.len(), t.len() * t.dtype.size(), "{}", t.name);
        assert_eq!(t.shape.iter().product::<usize>(), t.len(), "{}", t.name);
        assert_eq!(t.bytes.len() % 64, 0, "{} unpadded", t.name);
        let typed = [
            t.f32().map(<[f32]>::len),
            t.bf16().map(<[u16]>::len),
            t.i8().map(<[i8]>::len),
        ];
        for (d, len) in Dtype::ALL.into_iter().zip(typed) {
            assert_eq!(len, (d == t.dtype).then_some(t.len()), "{} as {d}", t.name);
        }
        assert_eq!(file.tensor_index(t.name), Some(i), "{}", t.name);
        assert_eq!(
            file.tensor(t.name).map(|v| v.bytes.as_ptr()),
            Some(t.bytes.as_ptr())
        );
    }
    assert_eq!(count, file.tensor_count());
    let summary = file.precision_summary();
    assert_eq!(summary.iter().map(|&(_, n)| n).sum::<usize>(), count);
    drop(file.verify_checksums().map_err(|e| e.to_string()));
    true
}

fn infer_once(model: Model) {
    if model.macs() > MAX_INFER_MACS {
        return;
    }
    let classes = model.num_classes();
    let input: Vec<f32> = (0..model.input_len())
        .map(|i| (i % 17) as f32 * 0.125 - 1.0)
        .collect();
    let mut engine = Engine::new(Arc::new(model));
    let logits = engine
        .infer(&input)
        .expect("an input of input_len() floats is accepted");
    assert_eq!(logits.len(), classes, "one logit per class");
}

/// Recomputes the config CRC and every tensor CRC of a `.lvt`-shaped input (when its
/// header is a JSON object), re-padding the header to 64 bytes, so that mutations of the
/// header reach the validation behind the checksums. Other inputs come back unchanged.
pub fn fix_checksums(data: &[u8]) -> Vec<u8> {
    try_fix_checksums(data).unwrap_or_else(|| data.to_vec())
}

fn try_fix_checksums(data: &[u8]) -> Option<Vec<u8>> {
    let len = usize::try_from(u64::from_le_bytes(data.get(..8)?.try_into().ok()?)).ok()?;
    let header_end = len.checked_add(8)?;
    let mut header: serde_json::Map<String, Value> =
        serde_json::from_slice(data.get(8..header_end)?).ok()?;
    let body = &data[header_end..];
    let mut sums = serde_json::Map::new();
    for (name, info) in &header {
        let offsets = info.get("data_offsets").and_then(Value::as_array);
        let range = offsets.and_then(|o| {
            let begin = usize::try_from(o.first()?.as_u64()?).ok()?;
            let end = usize::try_from(o.get(1)?.as_u64()?).ok()?;
            body.get(begin..end)
        });
        if let Some(bytes) = range {
            sums.insert(name.clone(), format!("{:08x}", crc32(bytes)).into());
        }
    }
    let meta = header.get_mut("__metadata__")?.as_object_mut()?;
    if let Some(config) = meta.get("config").and_then(Value::as_str) {
        let crc = format!("{:08x}", crc32(config.as_bytes()));
        meta.insert("config_crc32".into(), crc.into());
    }
    meta.insert("checksums".into(), Value::Object(sums).to_string().into());
    let mut text = serde_json::to_vec(&header).ok()?;
    while !(8 + text.len()).is_multiple_of(64) {
        text.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + body.len());
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(body);
    Some(out)
}

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC_TABLE: [u32; 256] = crc_table();

/// CRC-32 (IEEE), as the weight format uses it.
pub fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |c, &b| {
        CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8)
    })
}
