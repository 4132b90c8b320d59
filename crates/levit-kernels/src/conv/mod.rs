//! 3x3, stride 2, padding 1 convolution as im2col + packed GEMM.
//!
//! The column matrix has one row per output pixel (row-major over `(oy, ox)`) and
//! `K = 9 * cin` columns in `(ky, kx, ci)` order, the order the converter packs the
//! conv weights in. A GEMM of it with the packed weights yields the output in
//! `[oy*ow + ox, cout]` layout, i.e. channels-last, which is also LeViT's token layout.

use crate::gemm::{self, Epilogue, GemmArgs, GemmKernel, PackedB, TapsArgs};
use crate::Isa;

/// Memory layout of the image fed to [`im2col_3x3_s2`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageLayout {
    /// `[c][h][w]`: the network input.
    Chw,
    /// `[h][w][c]`: the output of a previous conv (channels-last).
    Hwc,
}

/// Output size of a 3x3 stride-2 pad-1 convolution along one axis.
pub const fn conv_out_size(input: usize) -> usize {
    (input + 2 - 3) / 2 + 1
}

/// Geometry of one 3x3 stride-2 convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Input channels.
    pub cin: usize,
    /// Input height.
    pub hin: usize,
    /// Input width.
    pub win: usize,
}

impl ConvGeometry {
    /// Output height.
    pub const fn hout(&self) -> usize {
        conv_out_size(self.hin)
    }
    /// Output width.
    pub const fn wout(&self) -> usize {
        conv_out_size(self.win)
    }
    /// Reduction length of the GEMM.
    pub const fn k(&self) -> usize {
        9 * self.cin
    }
    /// Floats in the column matrix.
    pub const fn cols_len(&self) -> usize {
        self.hout() * self.wout() * self.k()
    }
    /// Floats in the input image.
    pub const fn input_len(&self) -> usize {
        self.cin * self.hin * self.win
    }
}

/// Weights and epilogue of one convolution, for [`conv_3x3_s2_rows`].
#[derive(Clone, Copy, Debug)]
pub struct ConvWeights<'a> {
    /// Packed `[9*cin, cout]` GEMM weights, K in `(ky, kx, ci)` order.
    pub weight: PackedB<'a>,
    /// Bias, `cout` floats.
    pub bias: &'a [f32],
    /// Output channels.
    pub cout: usize,
    /// Fused epilogue (bias and activation).
    pub epilogue: Epilogue,
}

/// The image a convolution reads.
#[derive(Clone, Copy, Debug)]
pub struct ConvInput<'a> {
    /// The pixels, [`ConvGeometry::input_len`] floats.
    pub image: &'a [f32],
    /// Their layout.
    pub layout: ImageLayout,
    /// The convolution's geometry.
    pub geometry: ConvGeometry,
}

/// Output image rows `oy_rows` of the convolution: im2col of those rows into `cols`,
/// then their GEMM into `out`, which holds just those rows (`[rows*wout, cout]`). A
/// `Chw` image with few channels skips im2col where the path has a tap-table kernel,
/// and a wide `Hwc` one reads its taps in place; both exist for f32 weights on
/// AVX-512 only (other precisions and paths take im2col and `kernel`).
///
/// # Panics
/// If a buffer is shorter than the geometry needs (checked at plan time), or the
/// weights are not of `kernel`'s precision.
pub fn conv_3x3_s2_rows(
    kernel: &GemmKernel,
    src: &ConvInput,
    w: &ConvWeights,
    oy_rows: core::ops::Range<usize>,
    cols: &mut [f32],
    out: &mut [f32],
) {
    let g = src.geometry;
    let isa = kernel.isa();
    if let PackedB::F32(weight) = w.weight {
        if src.layout == ImageLayout::Chw && g.cin <= MAX_TAP_CIN && TapsArgs::supported(isa) {
            return conv_rows_from_taps(isa, src, w, weight, oy_rows, cols, out);
        }
        if src.layout == ImageLayout::Hwc
            && g.wout() >= MIN_IN_PLACE_WIDTH
            && gemm::segmented_supported(isa)
        {
            return conv_rows_in_place(kernel, src, w, oy_rows, cols, out);
        }
    }
    let m = oy_rows.len() * g.wout();
    im2col_3x3_s2_rows(src.image, src.layout, g, oy_rows, cols);
    kernel.run(&w.gemm_args(g, m, cols), out);
}

/// Narrowest output for which reading HWC taps in place beats im2col: the in-place
/// GEMMs run one output row at a time, and rows of 13-27 pixels make short row tiles
/// (measured, 1 thread: 16->32 channels at 112x112 316 -> 273 us, 48->96 2414 ->
/// 2316 us, but 64->128 at 28x28 256 -> 268 us).
const MIN_IN_PLACE_WIDTH: usize = 48;

/// [`conv_3x3_s2_rows`] for an HWC image without im2col where the window stays inside
/// the image: pixel `ox`'s A row is the image itself, three runs of `3*cin` floats
/// (one per kernel row) `win*cin` apart, starting at pixel `(2oy-1, 2ox-1)`, and
/// consecutive pixels are `2*cin` floats apart ([`gemm::gemm_segmented`]). Output
/// pixels whose window needs padding (row 0, column 0, and the last row or column of
/// an odd-sized image) get their taps copied as in im2col, one pixel GEMM each.
/// Bit-identical to the im2col path.
fn conv_rows_in_place(
    kernel: &GemmKernel,
    src: &ConvInput,
    w: &ConvWeights,
    oy_rows: core::ops::Range<usize>,
    scratch: &mut [f32],
    out: &mut [f32],
) {
    let (input, g) = (src.image, src.geometry);
    let (cin, k, wout) = (g.cin, g.k(), g.wout());
    let first = oy_rows.start;
    // Pixels 1..=last_inner of a row have windows inside the image horizontally.
    let last_inner = (g.win.saturating_sub(2) / 2).min(wout.saturating_sub(1));
    for oy in oy_rows {
        let out_row = &mut out[(oy - first) * wout * w.cout..][..wout * w.cout];
        if !(oy >= 1 && 2 * oy + 1 < g.hin && last_inner >= 1) {
            // A padded row: im2col it whole.
            im2col_3x3_s2_rows(input, ImageLayout::Hwc, g, oy..oy + 1, scratch);
            kernel.run(&w.gemm_args(g, wout, scratch), out_row);
            continue;
        }
        // Column 0 and any columns past `last_inner` need padding: copied taps.
        for ox in core::iter::once(0).chain(last_inner + 1..wout) {
            let taps = &mut scratch[..k];
            hwc_pixel_taps(input, g, oy, ox, taps);
            let pixel_out = &mut out_row[ox * w.cout..][..w.cout];
            kernel.run(&w.gemm_args(g, 1, taps), pixel_out);
        }
        // Pixels 1..=last_inner read their taps from the image, starting at pixel
        // (2oy - 1, 1).
        let start = ((2 * oy - 1) * g.win + 1) * cin;
        let args = GemmArgs {
            a: &input[start..],
            lda: 2 * cin,
            ..w.gemm_args(g, last_inner, &[])
        };
        let runs = gemm::Segments {
            len: 3 * cin,
            stride: g.win * cin,
        };
        gemm::gemm_segmented(kernel.isa(), &args, runs, &mut out_row[w.cout..]);
    }
}

/// Widest `Chw` image the tap-table path takes (the RGB stem has 3 channels).
const MAX_TAP_CIN: usize = 4;

/// [`conv_3x3_s2_rows`] for a `Chw` image without im2col: per output row, the
/// `3*cin` input rows it reads are copied, zero-padded, into `scratch`
/// (`[ky][c][2*wout + 1]`, column 0 and the tail are padding), and a tap-table GEMM
/// reads each pixel's `9*cin` taps from there: output pixel `ox`, tap `(ky, kx, c)`
/// is `scratch[(ky*cin + c)*wp + kx + 2*ox]`. Bit-identical to the im2col path (same
/// FMA chain per output, same epilogue).
fn conv_rows_from_taps(
    isa: Isa,
    src: &ConvInput,
    w: &ConvWeights,
    weight: &[f32],
    oy_rows: core::ops::Range<usize>,
    scratch: &mut [f32],
    out: &mut [f32],
) {
    let (input, g) = (src.image, src.geometry);
    let (cin, wout, win) = (g.cin, g.wout(), g.win);
    let wp = 2 * wout + 1;
    let padded = &mut scratch[..3 * cin * wp];
    let mut koff = [0u32; 9 * MAX_TAP_CIN];
    for ky in 0..3 {
        for kx in 0..3 {
            for c in 0..cin {
                koff[(ky * 3 + kx) * cin + c] = ((ky * cin + c) * wp + kx) as u32;
            }
        }
    }
    let first = oy_rows.start;
    for oy in oy_rows {
        for ky in 0..3 {
            let iy = (oy * 2 + ky).wrapping_sub(1);
            for c in 0..cin {
                let row = &mut padded[(ky * cin + c) * wp..][..wp];
                if iy >= g.hin {
                    row.fill(0.0);
                    continue;
                }
                // Column j holds input column j - 1; past the image reads as zero.
                let src = &input[(c * g.hin + iy) * win..][..win];
                let n = win.min(wp - 1);
                row[0] = 0.0;
                row[1..=n].copy_from_slice(&src[..n]);
                row[n + 1..].fill(0.0);
            }
        }
        let args = TapsArgs {
            m: wout,
            k: g.k(),
            n: w.cout,
            a: padded,
            koff: &koff[..g.k()],
            b: weight,
            bias: w.bias,
            ldc: w.cout,
            epilogue: w.epilogue,
        };
        gemm::gemm_taps(
            isa,
            &args,
            &mut out[(oy - first) * wout * w.cout..][..wout * w.cout],
        );
    }
}

impl ConvWeights<'_> {
    /// The GEMM of `m` column rows held in `cols`.
    pub fn gemm_args<'a>(&'a self, g: ConvGeometry, m: usize, cols: &'a [f32]) -> GemmArgs<'a> {
        GemmArgs {
            m,
            k: g.k(),
            n: self.cout,
            a: cols,
            lda: g.k(),
            a_rows: None,
            b: self.weight,
            bias: self.bias,
            ldc: self.cout,
            epilogue: self.epilogue,
        }
    }
}

/// Fills `cols` (`[hout*wout, 9*cin]`) from `input`; padding reads as zero.
///
/// `Hwc` copies `cin`-float runs (memcpy speed). `Chw` (only the 3-channel network
/// input) walks each input row once per `(oy, ky, c)` and scatters its taps, with the
/// left/right padding handled outside the inner loop, so no per-element bounds logic.
///
/// # Panics
/// If `input` or `cols` are shorter than the geometry needs (checked at plan time).
pub fn im2col_3x3_s2(input: &[f32], layout: ImageLayout, g: ConvGeometry, cols: &mut [f32]) {
    im2col_3x3_s2_rows(input, layout, g, 0..g.hout(), cols);
}

/// [`im2col_3x3_s2`] for output image rows `oy_rows` only: `cols` receives
/// `oy_rows.len() * wout` column rows, so a convolution can run in cache-sized blocks.
///
/// # Panics
/// If `input` or `cols` are too short, or `oy_rows` is not inside `0..hout`.
pub fn im2col_3x3_s2_rows(
    input: &[f32],
    layout: ImageLayout,
    g: ConvGeometry,
    oy_rows: core::ops::Range<usize>,
    cols: &mut [f32],
) {
    assert!(input.len() >= g.input_len(), "im2col: input too short");
    assert!(
        oy_rows.start <= oy_rows.end && oy_rows.end <= g.hout(),
        "im2col: rows {oy_rows:?} outside 0..{}",
        g.hout()
    );
    assert!(
        cols.len() >= oy_rows.len() * g.wout() * g.k(),
        "im2col: column buffer too short"
    );
    if oy_rows.is_empty() || g.cols_len() == 0 {
        return;
    }
    match layout {
        ImageLayout::Hwc => im2col_hwc(input, g, oy_rows, cols),
        ImageLayout::Chw => im2col_chw(input, g, oy_rows, cols),
    }
}

fn im2col_hwc(input: &[f32], g: ConvGeometry, oy_rows: core::ops::Range<usize>, cols: &mut [f32]) {
    let (k, wout) = (g.k(), g.wout());
    let first = oy_rows.start;
    for oy in oy_rows {
        for ox in 0..wout {
            hwc_pixel_taps(
                input,
                g,
                oy,
                ox,
                &mut cols[((oy - first) * wout + ox) * k..][..k],
            );
        }
    }
}

/// The `9*cin` taps of output pixel `(oy, ox)` of an HWC image, `(ky, kx, c)` order,
/// zero where the window leaves the image.
fn hwc_pixel_taps(input: &[f32], g: ConvGeometry, oy: usize, ox: usize, row: &mut [f32]) {
    let cin = g.cin;
    for ky in 0..3 {
        let iy = (oy * 2 + ky).wrapping_sub(1);
        let left = (ox * 2).wrapping_sub(1);
        if iy < g.hin && left < g.win && left + 2 < g.win {
            // The three taps of this kernel row are adjacent pixels, so in HWC they are
            // one run of 3*cin floats: a single copy.
            row[ky * 3 * cin..][..3 * cin]
                .copy_from_slice(&input[(iy * g.win + left) * cin..][..3 * cin]);
            continue;
        }
        for kx in 0..3 {
            let ix = (ox * 2 + kx).wrapping_sub(1);
            let dst = &mut row[(ky * 3 + kx) * cin..][..cin];
            // `wrapping_sub` turns -1 into usize::MAX, caught by the same test.
            if iy >= g.hin || ix >= g.win {
                dst.fill(0.0);
            } else {
                dst.copy_from_slice(&input[(iy * g.win + ix) * cin..][..cin]);
            }
        }
    }
}

fn im2col_chw(input: &[f32], g: ConvGeometry, oy_rows: core::ops::Range<usize>, cols: &mut [f32]) {
    let (cin, k, wout, win) = (g.cin, g.k(), g.wout(), g.win);
    let plane = g.hin * win;
    let first = oy_rows.start;
    for oy in oy_rows {
        let out = &mut cols[(oy - first) * wout * k..][..wout * k];
        for ky in 0..3 {
            let iy = (oy * 2 + ky).wrapping_sub(1);
            if iy >= g.hin {
                for ox in 0..wout {
                    out[ox * k + ky * 3 * cin..][..3 * cin].fill(0.0);
                }
                continue;
            }
            // Input row iy of every channel starts at `input[c*plane + iy*win]`. Each
            // output pixel gets this kernel row's 3*cin taps as one contiguous run
            // (ordered kx, then c), so the writes stream through `cols` once.
            let rows = &input[iy * win..];
            if cin == 3 {
                // The RGB stem: the same loop with the three channel rows hoisted, so the
                // interior pixels run without bounds checks.
                let c0 = &rows[..win];
                let c1 = &rows[plane..][..win];
                let c2 = &rows[2 * plane..][..win];
                for ox in 0..wout {
                    let taps = &mut out[ox * k + ky * 9..][..9];
                    let left = (ox * 2).wrapping_sub(1);
                    if left < win && left + 2 < win {
                        let (a, b, c) = (&c0[left..][..3], &c1[left..][..3], &c2[left..][..3]);
                        taps.copy_from_slice(&[
                            a[0], b[0], c[0], a[1], b[1], c[1], a[2], b[2], c[2],
                        ]);
                        continue;
                    }
                    for (kx, t) in taps.chunks_exact_mut(3).enumerate() {
                        let ix = (ox * 2 + kx).wrapping_sub(1);
                        if ix >= win {
                            t.fill(0.0);
                        } else {
                            t.copy_from_slice(&[c0[ix], c1[ix], c2[ix]]);
                        }
                    }
                }
                continue;
            }
            for ox in 0..wout {
                let taps = &mut out[ox * k + ky * 3 * cin..][..3 * cin];
                for (kx, taps) in taps.chunks_exact_mut(cin).enumerate() {
                    // `wrapping_sub` turns -1 into usize::MAX, caught by the same test.
                    let ix = (ox * 2 + kx).wrapping_sub(1);
                    if ix >= win {
                        taps.fill(0.0);
                    } else {
                        for (c, t) in taps.iter_mut().enumerate() {
                            *t = rows[c * plane + ix];
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The original per-element definition, kept as the oracle.
    fn naive(input: &[f32], layout: ImageLayout, g: ConvGeometry) -> Vec<f32> {
        let mut cols = vec![f32::NAN; g.cols_len()];
        let k = g.k();
        for oy in 0..g.hout() {
            for ox in 0..g.wout() {
                for ky in 0..3 {
                    for kx in 0..3 {
                        for c in 0..g.cin {
                            let iy = (oy * 2 + ky) as isize - 1;
                            let ix = (ox * 2 + kx) as isize - 1;
                            let inside = iy >= 0
                                && ix >= 0
                                && (iy as usize) < g.hin
                                && (ix as usize) < g.win;
                            let v = if !inside {
                                0.0
                            } else {
                                let (iy, ix) = (iy as usize, ix as usize);
                                match layout {
                                    ImageLayout::Hwc => input[(iy * g.win + ix) * g.cin + c],
                                    ImageLayout::Chw => input[(c * g.hin + iy) * g.win + ix],
                                }
                            };
                            cols[(oy * g.wout() + ox) * k + (ky * 3 + kx) * g.cin + c] = v;
                        }
                    }
                }
            }
        }
        cols
    }

    #[test]
    fn im2col_matches_the_definition() {
        for layout in [ImageLayout::Chw, ImageLayout::Hwc] {
            for cin in [1, 3, 5] {
                for (hin, win) in [
                    (1, 1),
                    (1, 2),
                    (2, 1),
                    (2, 2),
                    (3, 3),
                    (4, 7),
                    (7, 4),
                    (8, 8),
                    (9, 13),
                ] {
                    let g = ConvGeometry { cin, hin, win };
                    let input: Vec<f32> = (0..g.input_len()).map(|i| i as f32 + 1.0).collect();
                    let mut cols = vec![f32::NAN; g.cols_len() + 3];
                    im2col_3x3_s2(&input, layout, g, &mut cols);
                    let want = naive(&input, layout, g);
                    assert_eq!(
                        &cols[..g.cols_len()],
                        &want[..],
                        "{layout:?} {cin} {hin}x{win}"
                    );
                    assert!(
                        cols[g.cols_len()..].iter().all(|x| x.is_nan()),
                        "wrote past the end"
                    );
                }
            }
        }
    }

    #[test]
    fn row_blocks_reassemble_the_whole_matrix() {
        for layout in [ImageLayout::Chw, ImageLayout::Hwc] {
            let g = ConvGeometry {
                cin: 3,
                hin: 13,
                win: 10,
            };
            let input: Vec<f32> = (0..g.input_len()).map(|i| i as f32 * 0.5).collect();
            let want = naive(&input, layout, g);
            let row = g.wout() * g.k();
            for block in 1..=g.hout() {
                let mut start = 0;
                while start < g.hout() {
                    let end = (start + block).min(g.hout());
                    let mut cols = vec![f32::NAN; (end - start) * row];
                    im2col_3x3_s2_rows(&input, layout, g, start..end, &mut cols);
                    assert_eq!(
                        &cols[..],
                        &want[start * row..end * row],
                        "{layout:?} {start}..{end}"
                    );
                    start = end;
                }
            }
        }
    }

    #[test]
    fn tap_and_in_place_paths_are_bit_identical_to_im2col_and_gemm() {
        use crate::Activation;
        let isas: Vec<Isa> = Isa::supported()
            .into_iter()
            .filter(|&i| TapsArgs::supported(i) || gemm::segmented_supported(i))
            .collect();
        // Odd and even sizes, tiny images, 1..3 panels with a partial last one, and
        // row/column block starts away from 0.
        for (layout, cin, hin, win, cout) in [
            (ImageLayout::Chw, 3, 224, 224, 48),
            (ImageLayout::Chw, 3, 9, 23, 16),
            (ImageLayout::Chw, 1, 5, 6, 7),
            (ImageLayout::Chw, 4, 8, 3, 33),
            (ImageLayout::Hwc, 16, 112, 112, 32),
            (ImageLayout::Hwc, 5, 9, 23, 17),
            (ImageLayout::Hwc, 3, 7, 97, 17),
            (ImageLayout::Hwc, 2, 6, 100, 33),
            (ImageLayout::Hwc, 7, 6, 5, 40),
            (ImageLayout::Hwc, 3, 2, 2, 16),
            (ImageLayout::Hwc, 2, 3, 1, 5),
        ] {
            let g = ConvGeometry { cin, hin, win };
            let input: Vec<f32> = (0..g.input_len())
                .map(|i| ((i * 7919) % 101) as f32 * 0.02 - 1.0)
                .collect();
            let b: Vec<f32> = (0..g.k() * cout)
                .map(|i| ((i * 104_729) % 97) as f32 * 0.01 - 0.5)
                .collect();
            let weight = gemm::pack_b(&b, g.k(), cout);
            let bias: Vec<f32> = (0..cout).map(|i| i as f32 * 0.03 - 0.4).collect();
            for epilogue in [
                Epilogue::BiasAct(Activation::HardSwish),
                Epilogue::BiasResidual,
            ] {
                let w = ConvWeights {
                    weight: PackedB::F32(&weight),
                    bias: &bias,
                    cout,
                    epilogue,
                };
                for &isa in &isas {
                    let kernel = GemmKernel::select(crate::Precision::F32, isa).unwrap();
                    for rows in [0..g.hout(), g.hout() / 2..g.hout()] {
                        let m = rows.len() * g.wout();
                        let start: Vec<f32> = (0..m * cout).map(|i| (i % 5) as f32 - 2.0).collect();
                        let mut cols = vec![f32::NAN; m * g.k()];
                        im2col_3x3_s2_rows(&input, layout, g, rows.clone(), &mut cols);
                        let mut want = start.clone();
                        gemm::gemm(isa, &w.gemm_args(g, m, &cols), &mut want);
                        let mut got = start.clone();
                        let mut scratch = vec![f32::NAN; m * g.k()];
                        let src = ConvInput {
                            image: &input,
                            layout,
                            geometry: g,
                        };
                        conv_3x3_s2_rows(&kernel, &src, &w, rows.clone(), &mut scratch, &mut got);
                        for (j, (x, y)) in got.iter().zip(&want).enumerate() {
                            assert_eq!(
                                x.to_bits(),
                                y.to_bits(),
                                "{isa} {layout:?} cin {cin} {hin}x{win} cout {cout} rows {rows:?} at {j}"
                            );
                        }
                    }
                }
            }
        }
    }
}
