//! A small valid weight file and header surgery, shared by the corruption tests.
#![allow(dead_code)] // each test binary uses a different subset

use levit_format::{write_weight_file, FormatError, TensorBytes, TensorData, WeightFile};
use serde_json::Value;

/// The config string of [`valid_file`].
pub const CONFIG: &str = r#"{"test": true}"#;

/// Two tensors: `a` `[2,16]` holding 0..32 and `b` `[16]` holding 0..-16.
pub fn valid_file() -> Vec<u8> {
    let a: Vec<f32> = (0..32).map(|i| i as f32).collect();
    let b: Vec<f32> = (0..16).map(|i| -(i as f32)).collect();
    write_weight_file(
        CONFIG,
        &[
            TensorData {
                name: "a",
                shape: &[2, 16],
                data: TensorBytes::F32(&a),
            },
            TensorData {
                name: "b",
                shape: &[16],
                data: TensorBytes::F32(&b),
            },
        ],
        "test",
    )
}

/// The bf16 bit pattern of `x` (exact for the small integers the tests use).
pub fn bf16(x: f32) -> u16 {
    (x.to_bits() >> 16) as u16
}

/// A version 2 file with one tensor of each dtype, in this order: `w` BF16 `[2,16,2]`
/// holding bf16(0..64), `b` F32 `[16]` holding 0..-16, `q` I8 `[64]` holding -32..32.
pub fn valid_v2_file() -> Vec<u8> {
    let w: Vec<u16> = (0..64).map(|i| bf16(i as f32)).collect();
    let b: Vec<f32> = (0..16).map(|i| -(i as f32)).collect();
    let q: Vec<i8> = (-32..32).collect();
    write_weight_file(
        CONFIG,
        &[
            TensorData {
                name: "w",
                shape: &[2, 16, 2],
                data: TensorBytes::Bf16(&w),
            },
            TensorData {
                name: "b",
                shape: &[16],
                data: TensorBytes::F32(&b),
            },
            TensorData {
                name: "q",
                shape: &[64],
                data: TensorBytes::I8(&q),
            },
        ],
        "test v2",
    )
}

/// Reassembles a file from a header (padded with spaces to 64 bytes) and data.
pub fn join(header: &Value, data: &[u8]) -> Vec<u8> {
    let mut h = serde_json::to_string(header).unwrap().into_bytes();
    while !(8 + h.len()).is_multiple_of(64) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

/// Sets the checksum of `tensor` in the header to the CRC-32 of `bytes`.
pub fn set_checksum(header: &mut Value, tensor: &str, bytes: &[u8]) {
    let meta = &mut header["__metadata__"];
    let mut sums: Value = serde_json::from_str(meta["checksums"].as_str().unwrap()).unwrap();
    sums[tensor] = Value::String(format!("{:08x}", crc32fast::hash(bytes)));
    meta["checksums"] = Value::String(sums.to_string());
}

/// Splits a file into its header JSON and data bytes.
pub fn split(file: &[u8]) -> (Value, Vec<u8>) {
    let n = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    (
        serde_json::from_slice(&file[8..8 + n]).unwrap(),
        file[8 + n..].to_vec(),
    )
}

/// Validates bytes with checksum verification on.
pub fn load(bytes: &[u8]) -> Result<WeightFile, FormatError> {
    WeightFile::from_bytes(bytes, true)
}
