//! Helpers shared by the `robustness_*` tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use levit::synth::{self, Rng};
use levit::{Config, Model};
use levit_graph::ActKind;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A small three-stage model (64x64 input, resolutions 4 -> 2 -> 1, both attention
/// kinds), about a million multiply-accumulates: fast enough for thousands of
/// inferences per test.
pub fn small_config() -> Config {
    Config {
        variant: "robustness_small".into(),
        img_size: 64,
        in_chans: 3,
        num_classes: 10,
        embed_dim: vec![32, 48, 64],
        key_dim: 8,
        num_heads: vec![2, 3, 4],
        depth: vec![1, 1, 1],
        attn_ratio: vec![2.0, 2.0, 2.0],
        mlp_ratio: vec![2.0, 2.0, 2.0],
        down_attn_ratio: 4.0,
        down_mlp_ratio: 2.0,
        act: ActKind::HardSwish,
        distilled: true,
    }
}

/// The smallest model: one stage, 16x16 input (a single token), one head.
pub fn tiny_config() -> Config {
    Config {
        variant: "robustness_tiny".into(),
        img_size: 16,
        in_chans: 1,
        num_classes: 3,
        embed_dim: vec![8],
        key_dim: 4,
        num_heads: vec![1],
        depth: vec![1],
        attn_ratio: vec![1.0],
        mlp_ratio: vec![1.0],
        act: ActKind::Silu,
        distilled: false,
        ..small_config()
    }
}

/// A seeded random weight file for `small_config()`.
pub fn small_model_bytes() -> Vec<u8> {
    synth::random_weight_file(&small_config(), 11).unwrap()
}

/// A seeded random normalized image for `model`.
pub fn image(model: &Model, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..model.input_len()).map(|_| rng.normal()).collect()
}

/// A path in the temp directory unique to this process and `name`.
pub fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("levit-robustness-{}-{name}", std::process::id()))
}

/// `8 + header length`: where the data section starts.
pub fn data_start(bytes: &[u8]) -> usize {
    8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize
}

/// Rewrites the header JSON of a weight file (the data section is kept), re-padding it
/// to 64 bytes. The caller keeps or breaks the checksums as it likes.
pub fn edit_header(bytes: &[u8], f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let start = data_start(bytes);
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..start]).unwrap();
    f(&mut header);
    let mut text = serde_json::to_vec(&header).unwrap();
    while !(8 + text.len()).is_multiple_of(64) {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[start..]);
    out
}

/// Reads a little-endian f32 C-order `.npy` file: (shape, data).
pub fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{}", path.display());
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).unwrap();
    assert!(header.contains("'<f4'"), "{}: not float32", path.display());
    assert!(
        header.contains("'fortran_order': False"),
        "{}",
        path.display()
    );
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let data: Vec<f32> = bytes[start + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(
        data.len(),
        shape.iter().product::<usize>(),
        "{}",
        path.display()
    );
    (shape, data)
}
