//! Unit tests of the transform's arithmetic, Pillow's coefficients, the mode conversion
//! and the decoders' pixel limit (parity with timm on real files:
//! `crates/levit-cli/tests/preprocess_parity.rs`).

use crate::resample::{precompute_coeffs, resample_bicubic_window, PRECISION_BITS};
use crate::transform::round_half_even;
use crate::*;
use image::{DynamicImage, GenericImageView, GrayImage, RgbImage};

#[test]
fn python_rounding_and_torchvision_sizes() {
    assert_eq!(round_half_even(74.5), 74);
    assert_eq!(round_half_even(75.5), 76);
    assert_eq!(round_half_even(74.0), 74);
    assert_eq!(round_half_even(0.5), 0);
    let p = Preprocess::default();
    assert_eq!(p.resize_size(), 248);
    assert_eq!(p.resized_dims(451, 300), (372, 248));
    assert_eq!(p.resized_dims(301, 200), (373, 248));
    assert_eq!(p.resized_dims(427, 640), (248, 371));
    assert_eq!(p.resized_dims(60, 40), (372, 248));
    let fb = Preprocess {
        crop_pct: FB_CROP_PCT,
        ..p
    };
    assert_eq!(fb.resize_size(), 256);
}

#[test]
fn pillow_coefficients_sum_to_one_in_fixed_point() {
    for (i, o) in [(451, 372), (60, 372), (4000, 248), (248, 248), (7, 3)] {
        let c = precompute_coeffs(i, o, 0, o);
        for (xx, &(start, taps)) in c.bounds.iter().enumerate() {
            assert!(start + taps <= i as usize);
            let sum: i64 = c.weights[xx * c.ksize..][..taps]
                .iter()
                .map(|&v| v as i64)
                .sum();
            assert!(
                (sum - (1 << PRECISION_BITS)).abs() <= taps as i64,
                "{i}->{o}"
            );
        }
    }
}

#[test]
fn constant_images_stay_constant() {
    let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(333, 517, [10, 200, 255].into()));
    let x = transform(&img).unwrap();
    let plane = 224 * 224;
    for (c, v) in [10u8, 200, 255].into_iter().enumerate() {
        let want = (v as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        assert!(x[c * plane..(c + 1) * plane].iter().all(|&y| y == want));
    }
}

#[test]
fn sixteen_bit_and_alpha_follow_pillow() {
    let g16 = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(2, 1, vec![100, 400]);
    let rgb = to_rgb8_like_pil(&DynamicImage::ImageLuma16(g16.unwrap())).unwrap();
    assert_eq!(rgb.as_raw(), &[100, 100, 100, 255, 255, 255]);
    let c16 = image::ImageBuffer::<image::Rgb<u16>, _>::from_raw(1, 1, vec![0x12ff, 0, 65535]);
    let rgb = to_rgb8_like_pil(&DynamicImage::ImageRgb16(c16.unwrap())).unwrap();
    assert_eq!(rgb.as_raw(), &[0x12, 0, 255]);
    let rgba = image::RgbaImage::from_raw(1, 1, vec![1, 2, 3, 0]).unwrap();
    let rgb = to_rgb8_like_pil(&DynamicImage::ImageRgba8(rgba)).unwrap();
    assert_eq!(rgb.as_raw(), &[1, 2, 3]);
}

#[test]
fn bad_settings_and_buffers_are_errors() {
    let img = DynamicImage::ImageRgb8(RgbImage::new(10, 10));
    let p = Preprocess {
        crop_pct: 1.5,
        ..Preprocess::default()
    };
    assert!(matches!(
        p.run_into(&img, &mut vec![0.0; p.output_len()]),
        Err(PreprocessError::Settings(_))
    ));
    assert!(matches!(
        transform_into(&img, &mut [0.0; 7]),
        Err(PreprocessError::OutputLength { found: 7, .. })
    ));
    let empty = DynamicImage::ImageRgb8(RgbImage::new(0, 5));
    assert!(matches!(
        transform_into(&empty, &mut vec![0.0; 3 * 224 * 224]),
        Err(PreprocessError::Empty { .. })
    ));
}

#[test]
fn window_coefficients_equal_pillows_full_table() {
    for (i, o, first, count) in [
        (451, 372, 74, 224),
        (60, 372, 0, 372),
        (4000, 248, 12, 224),
        (7, 3, 1, 2),
    ] {
        let full = precompute_coeffs(i, o, 0, o);
        let win = precompute_coeffs(i, o, first, count);
        let (first, count) = (first as usize, count as usize);
        assert_eq!(win.ksize, full.ksize);
        assert_eq!(win.bounds[..], full.bounds[first..][..count]);
        assert_eq!(
            win.weights[..],
            full.weights[first * full.ksize..][..count * full.ksize]
        );
    }
}

/// Pillow's `ImagingResampleHorizontal_8bpc` / `Vertical_8bpc` as written, over the
/// whole image (every output pixel, taps in order), then the crop: the reference the
/// windowed, fixed-tap and row-accumulated resampler must equal.
fn pillow_resize_then_crop(
    src: &RgbImage,
    (rw, rh): (u32, u32),
    (left, top): (u32, u32),
    (cw, ch): (u32, u32),
) -> Vec<u8> {
    let clip8 = |v: i32| -> u8 {
        if v >= (1 << PRECISION_BITS << 8) {
            255
        } else if v <= 0 {
            0
        } else {
            (v >> PRECISION_BITS) as u8
        }
    };
    let (w, h) = (src.width() as usize, src.height() as usize);
    let mut img = src.as_raw().clone();
    let mut cur_w = w;
    if rw as usize != w {
        let c = precompute_coeffs(w as u32, rw, 0, rw);
        let mut out = vec![0u8; h * rw as usize * 3];
        for y in 0..h {
            for x in 0..rw as usize {
                let (xmin, taps) = c.bounds[x];
                for ch in 0..3 {
                    let mut ss = 1i32 << (PRECISION_BITS - 1);
                    for t in 0..taps {
                        ss += img[(y * cur_w + xmin + t) * 3 + ch] as i32
                            * c.weights[x * c.ksize + t];
                    }
                    out[(y * rw as usize + x) * 3 + ch] = clip8(ss);
                }
            }
        }
        img = out;
        cur_w = rw as usize;
    }
    if rh as usize != h {
        let c = precompute_coeffs(h as u32, rh, 0, rh);
        let mut out = vec![0u8; rh as usize * cur_w * 3];
        for y in 0..rh as usize {
            let (ymin, taps) = c.bounds[y];
            for x in 0..cur_w * 3 {
                let mut ss = 1i32 << (PRECISION_BITS - 1);
                for t in 0..taps {
                    ss += img[(ymin + t) * cur_w * 3 + x] as i32 * c.weights[y * c.ksize + t];
                }
                out[y * cur_w * 3 + x] = clip8(ss);
            }
        }
        img = out;
    }
    let mut crop = Vec::with_capacity(cw as usize * ch as usize * 3);
    for y in top as usize..(top + ch) as usize {
        crop.extend_from_slice(&img[(y * cur_w + left as usize) * 3..][..cw as usize * 3]);
    }
    crop
}

#[test]
fn windowed_resampler_equals_pillows_full_resize() {
    // Up- and downscales (every fixed-tap width: ksize 5 to 13, and 15 to 27 on the general path), sizes left
    // unchanged on one axis, rows narrower than the filter, and noise with full-range
    // pixels so that the clamps to 0 and 255 are hit.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for (w, h, rw, rh, cw, ch) in [
        (240, 240, 248, 248, 224, 224),
        (451, 300, 372, 248, 224, 224),
        (600, 400, 372, 248, 224, 224),
        (900, 700, 318, 248, 224, 224),
        (1024, 768, 331, 248, 224, 224),
        (950, 900, 262, 248, 224, 224),
        (1300, 1000, 322, 248, 224, 224),
        (2000, 1500, 330, 248, 224, 224),
        (3000, 500, 1488, 248, 224, 224),
        (248, 300, 248, 300, 224, 224),
        (3, 9, 40, 20, 30, 16),
        (2, 2, 9, 9, 9, 9),
        (1, 6, 7, 42, 7, 7),
        (60, 40, 372, 248, 224, 224),
    ] {
        let px: Vec<u8> = (0..w * h * 3)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                if state.is_multiple_of(5) {
                    255 * (state % 2) as u8
                } else {
                    (state >> 24) as u8
                }
            })
            .collect();
        let src = RgbImage::from_raw(w, h, px).unwrap();
        let (left, top) = ((rw - cw) / 2, (rh - ch) / 2);
        let ours = resample_bicubic_window(&src, (rw, rh), (left, top), (cw, ch));
        let want = pillow_resize_then_crop(&src, (rw, rh), (left, top), (cw, ch));
        assert!(
            ours == want,
            "{w}x{h} -> {rw}x{rh}, crop {cw}x{ch} at ({left}, {top})"
        );
    }
}

#[test]
fn elongated_images_cost_their_crop_not_their_resized_size() {
    // 1 x 8M resizes to 248 x 1984000000: Pillow's coefficient table for the long
    // side alone would be 70 GB; only the crop's 224 rows are computed.
    let tall = DynamicImage::ImageLuma8(GrayImage::from_pixel(1, 8_000_000, [77].into()));
    let x = transform(&tall).unwrap();
    let want: [f32; 3] =
        std::array::from_fn(|c| (77.0 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]);
    for (c, plane) in x.chunks_exact(224 * 224).enumerate() {
        assert!(plane.iter().all(|&v| v == want[c]));
    }
    // 1 x 9M would need a 2232000000-pixel side: more than Pillow can resize to.
    let taller = DynamicImage::ImageLuma8(GrayImage::new(1, 9_000_000));
    let err = transform_into(&taller, &mut vec![0.0; 3 * 224 * 224]).unwrap_err();
    assert!(
        matches!(
            err,
            PreprocessError::TooElongated {
                width: 1,
                height: 9_000_000,
                size: 248,
                long: 2_232_000_000
            }
        ),
        "{err}"
    );
}

/// CRC-32 (IEEE), for patching PNG chunks.
fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |mut c, &b| {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        c
    })
}

#[test]
fn oversized_headers_are_refused_before_decoding() {
    // JPEG: the frame header of a 64x43 progressive file patched to 65535x65535.
    let jpeg: &[u8] = include_bytes!("../../../tests/fixtures/images/rocket_progressive_420.jpg");
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC2]).unwrap();
    let mut big = jpeg.to_vec();
    big[sof + 5..sof + 9].copy_from_slice(&[0xFF; 4]);
    let err = decode_image(&big, Orientation::Ignore)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("65535x65535") && err.contains("89478485"),
        "{err}"
    );
    // The limit counts pixels: the real file passes at exactly its size.
    let img = decode_image(jpeg, Orientation::Ignore).unwrap();
    let pixels = u64::from(img.width()) * u64::from(img.height());
    for orientation in [Orientation::Ignore, Orientation::Apply] {
        let at = |max_pixels| DecodeOptions {
            orientation,
            max_pixels,
            ..DecodeOptions::default()
        };
        assert!(decode_image_with(jpeg, &at(pixels)).is_ok());
        let err = decode_image_with(jpeg, &at(pixels - 1)).unwrap_err();
        assert!(err.to_string().contains("more than the limit"), "{err}");
    }

    // PNG: IHDR patched to 10000x10000 (100 Mpx, within the `image` crate's own
    // 512 MiB allocation limit), its CRC fixed up.
    let png: &[u8] = include_bytes!("../../../tests/fixtures/images/tiny_60x40.png");
    assert_eq!(&png[12..16], b"IHDR");
    let mut big = png.to_vec();
    big[16..20].copy_from_slice(&10_000u32.to_be_bytes());
    big[20..24].copy_from_slice(&10_000u32.to_be_bytes());
    let crc = crc32(&big[12..29]);
    big[29..33].copy_from_slice(&crc.to_be_bytes());
    let err = decode_image(&big, Orientation::Ignore)
        .unwrap_err()
        .to_string();
    assert!(err.contains("10000x10000"), "{err}");
    assert!(decode_image(png, Orientation::Ignore).is_ok());
    let small = DecodeOptions {
        max_pixels: 60 * 40 - 1,
        ..DecodeOptions::default()
    };
    assert!(decode_image_with(png, &small).is_err());
}

/// The committed JPEGs, for the truncation tests.
fn fixture_jpegs() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/images");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    assert!(out.len() >= 9, "{} JPEG fixtures", out.len());
    out
}

#[test]
fn truncated_jpegs_are_refused_as_pil_refuses_them() {
    // PIL (LOAD_TRUNCATED_IMAGES = False) raises "image file is truncated" on each of
    // these cuts of each committed JPEG (checked with Pillow 11).
    let lenient = DecodeOptions {
        allow_truncated: true,
        ..DecodeOptions::default()
    };
    for (name, bytes) in fixture_jpegs() {
        assert!(decode_image(&bytes, Orientation::Ignore).is_ok(), "{name}");
        for cut in [bytes.len() / 2, bytes.len() - 10] {
            let err = decode_image(&bytes[..cut], Orientation::Ignore).unwrap_err();
            assert!(
                err.to_string().contains("image file is truncated"),
                "{name} at {cut}: {err}"
            );
            // Opt-in: decoded, the missing part filled in.
            let img = decode_image_with(&bytes[..cut], &lenient)
                .unwrap_or_else(|e| panic!("{name} at {cut}: {e}"));
            let full = decode_image(&bytes, Orientation::Ignore).unwrap();
            assert_eq!(img.dimensions(), full.dimensions(), "{name}");
        }
    }
    // Trailing bytes after the end-of-image marker are fine (PIL ignores them too).
    let (_, bytes) = &fixture_jpegs()[0];
    let mut junk = bytes.clone();
    junk.extend_from_slice(b"trailing junk");
    assert!(decode_image(&junk, Orientation::Ignore).is_ok());
}

#[cfg(unix)]
#[test]
fn special_files_are_refused_without_blocking_or_reading_them() {
    let dir = std::env::temp_dir().join(format!("levit-image-special-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("photo.jpg");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let zero_link = dir.join("zero.jpg");
    std::os::unix::fs::symlink("/dev/zero", &zero_link).unwrap();
    let start = std::time::Instant::now();
    for (path, kind) in [
        (fifo.as_path(), "a FIFO"),
        (zero_link.as_path(), "a character device"),
        (std::path::Path::new("/dev/zero"), "a character device"),
        (dir.as_path(), "a directory"),
    ] {
        let err = open_image(path).unwrap_err();
        assert!(
            matches!(err, PreprocessError::NotAFile { kind: k, .. } if k == kind),
            "{}: {err}",
            path.display()
        );
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
    // No open blocked waiting for a FIFO writer, nothing read from /dev/zero.
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn files_larger_than_any_accepted_image_are_not_read() {
    let dir = std::env::temp_dir().join(format!("levit-image-large-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let small = DecodeOptions {
        max_pixels: 100,
        ..DecodeOptions::default()
    };
    assert_eq!(small.max_file_bytes(), 800 + (1 << 20));
    let path = dir.join("big.png");
    std::fs::write(&path, vec![0u8; (1 << 20) + 801]).unwrap();
    let err = open_image_with(&path, &small).unwrap_err();
    assert!(
        matches!(err, PreprocessError::FileTooLarge { bytes, limit, .. } if bytes == (1 << 20) + 801 && limit == (1 << 20) + 800),
        "{err}"
    );
    // The default limit: 8 bytes per pixel of MAX_IMAGE_PIXELS, plus 1 MiB.
    assert_eq!(
        DecodeOptions::default().max_file_bytes(),
        MAX_IMAGE_PIXELS * 8 + (1 << 20)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
