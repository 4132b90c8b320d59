//! 3x3, stride 2, padding 1 convolution as im2col + packed GEMM.
//!
//! The column matrix has one row per output pixel (row-major over `(oy, ox)`) and
//! `K = 9 * cin` columns in `(ky, kx, ci)` order, the order the converter packs the
//! conv weights in. A GEMM of it with the packed weights yields the output in
//! `[oy*ow + ox, cout]` layout, i.e. channels-last, which is also LeViT's token layout.

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

/// Fills `cols` (`[hout*wout, 9*cin]`) from `input`; padding reads as zero.
///
/// # Panics
/// If `input` or `cols` are shorter than the geometry needs (checked at plan time).
pub fn im2col_3x3_s2(input: &[f32], layout: ImageLayout, g: ConvGeometry, cols: &mut [f32]) {
    assert!(input.len() >= g.input_len(), "im2col: input too short");
    assert!(
        cols.len() >= g.cols_len(),
        "im2col: column buffer too short"
    );
    let (cin, hin, win) = (g.cin, g.hin as isize, g.win as isize);
    let k = g.k();
    for oy in 0..g.hout() {
        for ox in 0..g.wout() {
            let row = &mut cols[(oy * g.wout() + ox) * k..][..k];
            for ky in 0..3 {
                let iy = (oy * 2 + ky) as isize - 1;
                for kx in 0..3 {
                    let ix = (ox * 2 + kx) as isize - 1;
                    let dst = &mut row[(ky * 3 + kx) * cin..][..cin];
                    if iy < 0 || iy >= hin || ix < 0 || ix >= win {
                        dst.fill(0.0);
                        continue;
                    }
                    let (iy, ix) = (iy as usize, ix as usize);
                    match layout {
                        ImageLayout::Hwc => {
                            dst.copy_from_slice(&input[(iy * g.win + ix) * cin..][..cin]);
                        }
                        ImageLayout::Chw => {
                            for (c, d) in dst.iter_mut().enumerate() {
                                *d = input[(c * g.hin + iy) * g.win + ix];
                            }
                        }
                    }
                }
            }
        }
    }
}
