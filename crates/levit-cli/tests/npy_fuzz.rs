//! The fuzzing side of the `.npy` reader (see `docs/robustness.md`): every seed in
//! `fuzz/seeds/npy/` (files written by numpy 2.4) and every input saved under
//! `fuzz/regressions/npy_header/` (inputs the fuzzer once found failing) goes through
//! the fuzz target's own harness, and a deterministic slice of what the fuzzer does
//! (every single-byte change of a seed's header) runs on every `cargo test`.

#[path = "../../../fuzz/src/npy_harness.rs"]
mod npy_harness;

mod common;

use std::path::PathBuf;

fn files(dir: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(common::root().join(dir)) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "md"))
        .collect();
    out.sort();
    out
}

#[test]
fn numpy_seeds_decode_as_numpy_reads_them() {
    let seeds = files("fuzz/seeds/npy");
    assert!(seeds.len() >= 10, "{seeds:?}");
    for seed in seeds {
        let name = seed.file_name().unwrap().to_str().unwrap().to_string();
        let float32 = !["f64.npy", "big_endian.npy", "fortran.npy", "structured.npy"]
            .contains(&name.as_str());
        let bytes = std::fs::read(&seed).unwrap();
        assert_eq!(npy_harness::parse_and_decode(&bytes), float32, "{name}");
    }
}

#[test]
fn saved_fuzz_inputs_replay_cleanly() {
    for input in files("fuzz/regressions/npy_header") {
        npy_harness::parse_and_decode(&std::fs::read(&input).unwrap());
    }
}

#[test]
fn every_byte_change_of_a_header_is_ok_or_a_clean_error() {
    for seed in ["image.npy", "v3.npy", "structured.npy"] {
        let bytes = std::fs::read(common::root().join("fuzz/seeds/npy").join(seed)).unwrap();
        let header_end =
            levit_cli::npy::parse_header(&bytes).map_or(bytes.len(), |h| h.data_offset);
        for i in 0..header_end {
            for b in [
                0u8, b'\n', b' ', b'(', b')', b'[', b'\'', b',', b'9', b'-', 0x80, 0xff,
            ] {
                let mut m = bytes.clone();
                m[i] = b;
                npy_harness::parse_and_decode(&m);
            }
        }
    }
}
