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
    match &hc {
        Some(hc) => {
            let taps = FixedTaps::new(hc, w as usize);
            for (r, trow) in temp.chunks_exact_mut(cw * 3).enumerate() {
                let srow = &src[(y_first + r) * w as usize * 3..][..w as usize * 3];
                taps.row(srow, trow);
            }
        }
        None => {
            for (r, trow) in temp.chunks_exact_mut(cw * 3).enumerate() {
                let srow = &src[(y_first + r) * w as usize * 3..][..w as usize * 3];
                trow.copy_from_slice(&srow[left * 3..][..cw * 3]);
            }
        }
    }

    // Vertical pass: each output row is a weighted sum of whole input rows, accumulated
    // row by row over contiguous bytes (so it vectorizes). Integer sums do not depend on
    // their order (i32 addition is associative, even wrapping), so each value equals
    // Pillow's tap-by-tap sum exactly.
    match &vc {
        None => temp,
        Some(vc) => {
            let row_len = cw * 3;
            let mut out = vec![0u8; ch * row_len];
            let mut acc = vec![0i32; row_len];
            for (j, orow) in out.chunks_exact_mut(row_len).enumerate() {
                let (ymin, taps) = vc.bounds[j];
                let k = &vc.weights[j * vc.ksize..][..taps];
                acc.fill(1 << (PRECISION_BITS - 1));
                for (y, &ky) in k.iter().enumerate() {
                    let trow = &temp[(ymin + y - y_first) * row_len..][..row_len];
                    for (a, &p) in acc.iter_mut().zip(trow) {
                        *a += p as i32 * ky;
                    }
                }
                for (o, &a) in orow.iter_mut().zip(&acc) {
                    *o = clip8(a);
                }
            }
            out
        }
    }
}

/// The horizontal coefficients with every output pixel's window widened to the same
/// `ksize` taps (the extra taps weigh 0 and the window is shifted left at the right
/// edge to stay inside the row), so the inner loop has a fixed length the compiler
/// unrolls: adding `p * 0` changes no sum, so the result equals Pillow's.
struct FixedTaps {
    /// First input pixel of each output pixel's window.
    starts: Vec<usize>,
    /// `ksize` weights per output pixel.
    weights: Vec<i32>,
    ksize: usize,
}

impl FixedTaps {
    /// A row narrower than `ksize` gets windows of the whole row (`ksize` = `width`).
    fn new(c: &Coeffs, width: usize) -> FixedTaps {
        let k = c.ksize.min(width);
        let mut starts = Vec::with_capacity(c.bounds.len());
        let mut weights = vec![0i32; k * c.bounds.len()];
        for (i, &(xmin, taps)) in c.bounds.iter().enumerate() {
            let start = xmin.min(width - k);
            // shift + taps <= k: taps <= ksize, and xmin + taps <= width.
            let shift = xmin - start;
            weights[i * k + shift..][..taps].copy_from_slice(&c.weights[i * c.ksize..][..taps]);
            starts.push(start);
        }
        FixedTaps {
            starts,
            weights,
            ksize: k,
        }
    }

    /// One row: `srow` (the whole input row, RGB) into `trow` (the window's columns).
    fn row(&self, srow: &[u8], trow: &mut [u8]) {
        match self.ksize {
            5 => self.row_k::<5>(srow, trow),
            7 => self.row_k::<7>(srow, trow),
            9 => self.row_k::<9>(srow, trow),
            11 => self.row_k::<11>(srow, trow),
            13 => self.row_k::<13>(srow, trow),
            _ => self.row_any(srow, trow),
        }
    }

    fn row_k<const K: usize>(&self, srow: &[u8], trow: &mut [u8]) {
        for ((out, &start), k) in trow
            .chunks_exact_mut(3)
            .zip(&self.starts)
            .zip(self.weights.chunks_exact(K))
        {
            // A constant length: the bounds checks of the unrolled loop fold away.
            let px = &srow[start * 3..][..3 * K];
            let k: &[i32; K] = k.try_into().expect("K weights");
            let mut ss = [1i32 << (PRECISION_BITS - 1); 3];
            for t in 0..K {
                ss[0] += px[3 * t] as i32 * k[t];
                ss[1] += px[3 * t + 1] as i32 * k[t];
                ss[2] += px[3 * t + 2] as i32 * k[t];
            }
            out.copy_from_slice(&[clip8(ss[0]), clip8(ss[1]), clip8(ss[2])]);
        }
    }

    fn row_any(&self, srow: &[u8], trow: &mut [u8]) {
        let k = self.ksize;
        for ((out, &start), w) in trow
            .chunks_exact_mut(3)
            .zip(&self.starts)
            .zip(self.weights.chunks_exact(k))
        {
            let mut ss = [1i32 << (PRECISION_BITS - 1); 3];
            for (t, &kx) in w.iter().enumerate() {
                let p = &srow[(start + t) * 3..][..3];
                ss[0] += p[0] as i32 * kx;
                ss[1] += p[1] as i32 * kx;
                ss[2] += p[2] as i32 * kx;
            }
            out.copy_from_slice(&[clip8(ss[0]), clip8(ss[1]), clip8(ss[2])]);
        }
    }
}
