//! Writes a weight file. The production writer is `levit-weights` (Python); this one
//! exists so Rust tests, fuzz seeds and benchmarks can make files without Python. Both
//! follow `docs/weight-format.md`; the golden tests prove they agree.

use std::collections::BTreeMap;

use crate::{ALIGNMENT, FORMAT_VERSION, MAGIC};

/// One tensor to write: name, stored shape, data (`shape.product()` floats).
pub struct TensorData<'a> {
    /// Name.
    pub name: &'a str,
    /// Shape.
    pub shape: &'a [usize],
    /// Data.
    pub data: &'a [f32],
}

fn crc_hex(bytes: &[u8]) -> String {
    format!("{:08x}", crc32fast::hash(bytes))
}

/// Serialises a complete `.lvt` file.
///
/// # Panics
/// If a tensor's data length is not its shape's product or its byte size is not a
/// multiple of 64 (the format requires padded shapes).
pub fn write_weight_file(config_json: &str, tensors: &[TensorData], source: &str) -> Vec<u8> {
    let mut entries = serde_json::Map::new();
    let mut checksums = BTreeMap::new();
    let mut offset = 0usize;
    for t in tensors {
        assert_eq!(
            t.shape.iter().product::<usize>(),
            t.data.len(),
            "{}: shape/data",
            t.name
        );
        let bytes = t.data.len() * 4;
        assert!(
            bytes.is_multiple_of(ALIGNMENT),
            "{}: {bytes} bytes is not 64-byte sized",
            t.name
        );
        entries.insert(
            t.name.to_string(),
            serde_json::json!({"dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + bytes]}),
        );
        checksums.insert(t.name.to_string(), crc_hex(bytemuck::cast_slice(t.data)));
        offset += bytes;
    }
    let metadata = serde_json::json!({
        "format": MAGIC,
        "format_version": FORMAT_VERSION.to_string(),
        "config": config_json,
        "config_crc32": crc_hex(config_json.as_bytes()),
        "checksums": serde_json::to_string(&checksums).expect("map of strings"),
        "source": source,
    });
    entries.insert("__metadata__".to_string(), metadata);
    let mut header = serde_json::to_string(&entries).expect("json").into_bytes();
    while !(8 + header.len()).is_multiple_of(ALIGNMENT) {
        header.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + header.len() + offset);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    for t in tensors {
        out.extend_from_slice(bytemuck::cast_slice(t.data));
    }
    out
}
