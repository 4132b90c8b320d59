//! What every `npy_header` fuzz input must satisfy, shared by the fuzz target
//! (`fuzz_targets/npy_header.rs`) and the regression test
//! `crates/levit-cli/tests/npy_fuzz.rs`, which replays each file under
//! `fuzz/regressions/npy_header/` and each seed under `fuzz/seeds/npy/` through this
//! function. Depends only on `levit-cli` (its `npy` module).

use levit_cli::npy;

/// Parses `bytes` as the header of a `.npy` file and decodes them as a whole f32 file,
/// as `levit infer` does. Both give `Ok` or an `Err` whose message formats on one line,
/// never a panic, a hang or an allocation larger than the input. A decoded tensor is
/// consistent with its header (shape, data size = the rest of the input) and survives a
/// write-read round trip through `npy::encode_header`. Returns whether it decoded.
pub fn parse_and_decode(bytes: &[u8]) -> bool {
    let header = npy::parse_header(bytes);
    if let Err(e) = &header {
        let msg = format!("{e:#}");
        assert!(!msg.contains('\n') && !msg.contains('\x1b'), "{msg:?}");
    }
    match npy::decode_f32(bytes) {
        Err(e) => {
            let msg = format!("{e:#}");
            assert!(!msg.contains('\n') && !msg.contains('\x1b'), "{msg:?}");
            false
        }
        Ok(t) => {
            let h = header.expect("decoded, but the header did not parse");
            assert_eq!(h.shape.len(), t.shape.len());
            assert!(h.shape.iter().zip(&t.shape).all(|(&a, &b)| a as usize == b));
            let n = t.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
            assert!(n == Some(t.data.len()) || t.shape.contains(&0));
            assert_eq!(h.data_offset + 4 * t.data.len(), bytes.len());
            let mut again = npy::encode_header(&t.shape);
            again.extend(t.data.iter().flat_map(|v| v.to_le_bytes()));
            let back = npy::decode_f32(&again).expect("a re-encoded tensor decodes");
            assert_eq!(back.shape, t.shape);
            assert!(back
                .data
                .iter()
                .zip(&t.data)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
            true
        }
    }
}
