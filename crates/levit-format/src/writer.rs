//! Writes a weight file. The production writer is `levit-weights` (Python); this one
//! exists so Rust tests, fuzz seeds and benchmarks can make files without Python. Both
//! follow `docs/weight-format.md`; the golden tests prove they agree.

use std::collections::BTreeMap;

use crate::{Dtype, ALIGNMENT, MAGIC};

/// The elements of one tensor to write, typed.
#[derive(Clone, Copy, Debug)]
pub enum TensorBytes<'a> {
    /// f32 values.
    F32(&'a [f32]),
    /// bf16 bit patterns (as [`crate::TensorView::bf16`] returns them).
    Bf16(&'a [u16]),
    /// Signed bytes.
    I8(&'a [i8]),
    /// Signed 32-bit integers.
    I32(&'a [i32]),
}

impl<'a> TensorBytes<'a> {
    /// The dtype written to the header.
    pub fn dtype(&self) -> Dtype {
        match self {
            TensorBytes::F32(_) => Dtype::F32,
            TensorBytes::Bf16(_) => Dtype::Bf16,
            TensorBytes::I8(_) => Dtype::I8,
            TensorBytes::I32(_) => Dtype::I32,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorBytes::F32(d) => d.len(),
            TensorBytes::Bf16(d) => d.len(),
            TensorBytes::I8(d) => d.len(),
            TensorBytes::I32(d) => d.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The little-endian bytes as stored (this crate targets little-endian machines,
    /// as the in-place views do).
    pub fn as_bytes(&self) -> &'a [u8] {
        match *self {
            TensorBytes::F32(d) => bytemuck::cast_slice(d),
            TensorBytes::Bf16(d) => bytemuck::cast_slice(d),
            TensorBytes::I8(d) => bytemuck::cast_slice(d),
            TensorBytes::I32(d) => bytemuck::cast_slice(d),
        }
    }
}

/// One tensor to write: name, stored shape, data (`shape.product()` elements).
#[derive(Clone, Copy, Debug)]
pub struct TensorData<'a> {
    /// Name.
    pub name: &'a str,
    /// Shape.
    pub shape: &'a [usize],
    /// Data, with its dtype.
    pub data: TensorBytes<'a>,
}

fn crc_hex(bytes: &[u8]) -> String {
    format!("{:08x}", crc32fast::hash(bytes))
}

/// Serialises a complete `.lvt` file. It is format version 1 when every tensor is F32
/// (byte for byte what this writer produced before version 2 existed) and version 2
/// as soon as one tensor is BF16, I8 or I32.
///
/// # Panics
/// If a tensor's element count is not its shape's product or its byte size is not a
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
        let bytes = t.data.as_bytes();
        assert!(
            bytes.len().is_multiple_of(ALIGNMENT),
            "{}: {} bytes is not 64-byte sized",
            t.name,
            bytes.len()
        );
        entries.insert(
            t.name.to_string(),
            serde_json::json!({
                "dtype": t.data.dtype().name(),
                "shape": t.shape,
                "data_offsets": [offset, offset + bytes.len()],
            }),
        );
        checksums.insert(t.name.to_string(), crc_hex(bytes));
        offset += bytes.len();
    }
    let version = if tensors.iter().all(|t| t.data.dtype() == Dtype::F32) {
        1
    } else {
        2
    };
    let metadata = serde_json::json!({
        "format": MAGIC,
        "format_version": version.to_string(),
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
        out.extend_from_slice(t.data.as_bytes());
    }
    out
}
