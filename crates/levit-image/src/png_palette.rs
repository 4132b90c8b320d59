//! A check of a PNG's palette chunks before the `png` crate sees them.
//!
//! `png` 0.18.1 panics (a slice index out of order while expanding the palette) when a
//! palette image's `tRNS` chunk has more entries than its `PLTE` chunk, which the PNG
//! specification forbids. The `decode_image` fuzz target found it. Until the crate
//! refuses such files itself, they are refused here with an error.

/// Why the palette chunks of `bytes` (a PNG file) are invalid, or `None` when they are
/// valid, absent, or the file is too damaged to tell (the decoder then reports that).
pub(super) fn palette_problem(bytes: &[u8]) -> Option<String> {
    const SIGNATURE: usize = 8;
    let mut at = SIGNATURE;
    let mut color_type = None;
    let mut palette_entries = None;
    let mut alpha_entries = None;
    // Each chunk: length (u32 big-endian), type (4 bytes), data, CRC (4 bytes).
    while let Some(header) = bytes.get(at..at + 8) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let kind = &header[4..8];
        let data = bytes.get(at + 8..(at + 8).checked_add(len)?)?;
        match kind {
            b"IHDR" if data.len() >= 10 => color_type = Some(data[9]),
            b"PLTE" => {
                if !len.is_multiple_of(3) || len > 3 * 256 {
                    return Some(format!(
                        "PLTE chunk of {len} bytes (3 per entry, at most 256)"
                    ));
                }
                palette_entries = Some(len / 3);
            }
            b"tRNS" => alpha_entries = Some(len),
            b"IDAT" | b"IEND" => break,
            _ => {}
        }
        at = at + 8 + len + 4;
    }
    // Color type 3: indexed colour, the only type whose tRNS is per palette entry.
    match (color_type, alpha_entries) {
        (Some(3), Some(alpha)) if alpha > palette_entries.unwrap_or(0) => Some(format!(
            "tRNS chunk with {alpha} alpha values for a palette of {} entries",
            palette_entries.unwrap_or(0)
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::palette_problem;

    /// A PNG prefix: signature, IHDR of the given colour type, then `chunks`.
    fn png(color_type: u8, chunks: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
        let mut out = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
        let ihdr = [0, 0, 0, 4, 0, 0, 0, 4, 8, color_type, 0, 0, 0];
        let all = std::iter::once((b"IHDR", ihdr.to_vec())).chain(chunks.iter().cloned());
        for (kind, data) in all {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            out.extend_from_slice(kind);
            out.extend_from_slice(&data);
            out.extend_from_slice(&[0; 4]);
        }
        out
    }

    #[test]
    fn valid_and_absent_palettes_pass() {
        assert_eq!(palette_problem(&png(3, &[(b"PLTE", vec![0; 12])])), None);
        let with_alpha = [(b"PLTE", vec![0; 12]), (b"tRNS", vec![0; 4])];
        assert_eq!(palette_problem(&png(3, &with_alpha)), None);
        // Truecolour tRNS is a colour key, not per palette entry.
        assert_eq!(palette_problem(&png(2, &[(b"tRNS", vec![0; 6])])), None);
        assert_eq!(palette_problem(&png(6, &[])), None);
        // Damaged or truncated files are left to the decoder.
        assert_eq!(palette_problem(b"\x89PNG"), None);
        let mut cut = png(3, &[(b"PLTE", vec![0; 12])]);
        cut.truncate(30);
        assert_eq!(palette_problem(&cut), None);
    }

    #[test]
    fn too_many_alpha_values_or_a_ragged_palette_are_refused() {
        let extra_alpha = [(b"PLTE", vec![0; 12]), (b"tRNS", vec![0; 5])];
        assert!(palette_problem(&png(3, &extra_alpha)).is_some());
        assert!(palette_problem(&png(3, &[(b"tRNS", vec![0; 1])])).is_some());
        assert!(palette_problem(&png(3, &[(b"PLTE", vec![0; 49])])).is_some());
        assert!(palette_problem(&png(3, &[(b"PLTE", vec![0; 3 * 257])])).is_some());
    }
}
