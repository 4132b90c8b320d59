//! A small valid weight file and header surgery, shared by the corruption tests.
#![allow(dead_code)] // each test binary uses a different subset

use levit_format::{write_weight_file, FormatError, TensorData, WeightFile};
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
                data: &a,
            },
            TensorData {
                name: "b",
                shape: &[16],
                data: &b,
            },
        ],
        "test",
    )
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
