//! A port of Pillow's resampler (`libImaging/Resample.c`), bicubic, 8 bits per channel.

use image::RgbImage;

/// Pillow's fixed-point precision for 8-bit images: 32 - 8 - 2.
pub(crate) const PRECISION_BITS: u32 = 22;

/// Pillow's `bicubic_filter` (Keys, a = -0.5), support 2.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Per-output-pixel input window and fixed-point weights (`precompute_coeffs` +
/// `normalize_coeffs_8bpc`).
pub(crate) struct Coeffs {
    /// (first input index, number of taps) per output pixel.
    pub(crate) bounds: Vec<(usize, usize)>,
    /// `ksize` weights per output pixel.
    pub(crate) weights: Vec<i32>,
    pub(crate) ksize: usize,
}

/// The coefficients of output pixels `first..first + count` of a resize from `in_size`
/// to `out_size` (indexed from 0 = `first`): Pillow computes them for every output
/// pixel, but only the crop's are needed, and an image with an extreme aspect ratio
/// resizes its longer side to billions of pixels.
pub(crate) fn precompute_coeffs(in_size: u32, out_size: u32, first: u32, count: u32) -> Coeffs {
    debug_assert!(u64::from(first) + u64::from(count) <= u64::from(out_size));
    // box = (0, in_size): in0 = 0, in1 = in_size (floats in Pillow, exact here).
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let ss = 1.0 / filterscale;
    let mut bounds = Vec::with_capacity(count as usize);
    let mut weights = vec![0i32; ksize * count as usize];
    let mut k = vec![0.0f64; ksize];
    for (i, xx) in (first as usize..).take(count as usize).enumerate() {
        let center = (xx as f64 + 0.5) * scale;
        // C's (int) truncates toward zero; then clamp.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
        let taps = (xmax - xmin).max(0) as usize;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(taps) {
            let w = bicubic(((x as i64 + xmin) as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        let row = &mut weights[i * ksize..][..ksize];
        for (x, &kx) in k.iter().enumerate().take(taps) {
            let v = if ww != 0.0 { kx / ww } else { kx };
            let scaled = v * (1u32 << PRECISION_BITS) as f64;
            row[x] = if v < 0.0 {
                (-0.5 + scaled) as i32
            } else {
                (0.5 + scaled) as i32
            };
        }
        bounds.push((xmin as usize, taps));
    }
    Coeffs {
        bounds,
        weights,
        ksize,
    }
}

#[inline]
fn clip8(v: i32) -> u8 {
    if v >= (1 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// Pillow's `img.resize((rw, rh), BICUBIC)` on an RGB image, returning only the window
/// `[left, left + cw) x [top, top + ch)` of the result (HWC bytes). Pixels outside the
/// window are not computed; those inside are bit-identical to Pillow's.
pub(crate) fn resample_bicubic_window(
    src: &RgbImage,
    (rw, rh): (u32, u32),
    (left, top): (u32, u32),
    (cw, ch): (u32, u32),
) -> Vec<u8> {
    let (w, h) = src.dimensions();
    // Coefficients of the window's columns and rows only (index 0: `left`, `top`).
    let hc = (rw != w).then(|| precompute_coeffs(w, rw, left, cw));
    let vc = (rh != h).then(|| precompute_coeffs(h, rh, top, ch));
    let (cw, ch) = (cw as usize, ch as usize);
    let (left, top) = (left as usize, top as usize);
    let src = src.as_raw();

    // Input rows the vertical pass reads for the window's output rows.
    let (y_first, y_last) = match &vc {
        Some(vc) => {
            let first = vc.bounds[0].0;
            let last = vc.bounds.iter().map(|&(s, n)| s + n).max().unwrap_or(first);
            (first, last.max(first))
        }
        None => (top, top + ch),
    };

    // Horizontal pass over rows y_first..y_last, output columns left..left+cw.
    let rows = y_last - y_first;
    let mut temp = vec![0u8; rows * cw * 3];
    for (r, trow) in temp.chunks_exact_mut(cw * 3).enumerate() {
        let srow = &src[(y_first + r) * w as usize * 3..][..w as usize * 3];
        match &hc {
            Some(hc) => {
                for (i, out) in trow.chunks_exact_mut(3).enumerate() {
                    let (xmin, taps) = hc.bounds[i];
                    let k = &hc.weights[i * hc.ksize..][..taps];
                    let mut ss = [1i32 << (PRECISION_BITS - 1); 3];
                    for (x, &kx) in k.iter().enumerate() {
                        let p = &srow[(xmin + x) * 3..][..3];
                        ss[0] += p[0] as i32 * kx;
                        ss[1] += p[1] as i32 * kx;
                        ss[2] += p[2] as i32 * kx;
                    }
                    out.copy_from_slice(&[clip8(ss[0]), clip8(ss[1]), clip8(ss[2])]);
                }
            }
            None => trow.copy_from_slice(&srow[left * 3..][..cw * 3]),
        }
    }

    // Vertical pass.
    match &vc {
        None => temp,
        Some(vc) => {
            let mut out = vec![0u8; ch * cw * 3];
            for (j, orow) in out.chunks_exact_mut(cw * 3).enumerate() {
                let (ymin, taps) = vc.bounds[j];
                let k = &vc.weights[j * vc.ksize..][..taps];
                for (i, out) in orow.chunks_exact_mut(3).enumerate() {
                    let mut ss = [1i32 << (PRECISION_BITS - 1); 3];
                    for (y, &ky) in k.iter().enumerate() {
                        let p = &temp[((ymin + y - y_first) * cw + i) * 3..][..3];
                        ss[0] += p[0] as i32 * ky;
                        ss[1] += p[1] as i32 * ky;
                        ss[2] += p[2] as i32 * ky;
                    }
                    out.copy_from_slice(&[clip8(ss[0]), clip8(ss[1]), clip8(ss[2])]);
                }
            }
            out
        }
    }
}
