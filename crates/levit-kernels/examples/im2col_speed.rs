//! Time of `im2col_3x3_s2` and `mean_rows` on LeViT's shapes (single thread).
//!
//! `cargo run --release -p levit-kernels --example im2col_speed`

use std::hint::black_box;
use std::time::{Duration, Instant};

use levit_kernels::conv::{
    conv_3x3_s2_rows, im2col_3x3_s2, ConvGeometry, ConvInput, ConvWeights, ImageLayout,
};
use levit_kernels::gemm::{self, Epilogue, GemmKernel, PackedB};
use levit_kernels::reduce::mean_rows;
use levit_kernels::{Activation, Isa};

fn time<F: FnMut()>(mut f: F) -> f64 {
    f();
    let start = Instant::now();
    let mut best = f64::INFINITY;
    while start.elapsed() < Duration::from_millis(300) {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    for (layout, cin, hw) in [
        (ImageLayout::Chw, 3, 224),
        (ImageLayout::Hwc, 16, 112),
        (ImageLayout::Hwc, 48, 112),
        (ImageLayout::Hwc, 96, 56),
        (ImageLayout::Hwc, 192, 28),
    ] {
        let g = ConvGeometry {
            cin,
            hin: hw,
            win: hw,
        };
        let input: Vec<f32> = (0..g.input_len()).map(|i| i as f32).collect();
        let mut cols = vec![0.0; g.cols_len()];
        let t = time(|| im2col_3x3_s2(&input, layout, g, black_box(&mut cols)));
        let gbs = (g.cols_len() * 4) as f64 / t / 1e9;
        println!(
            "im2col {layout:?} cin={cin:3} {hw}x{hw}: {:7.1} us ({gbs:5.1} GB/s written)",
            t * 1e6
        );
    }
    // The stem convolutions of LeViT-128S and -384, whole image, per path.
    for (layout, cin, hw, cout) in [
        (ImageLayout::Chw, 3, 224, 16),
        (ImageLayout::Chw, 3, 224, 48),
        (ImageLayout::Hwc, 16, 112, 32),
        (ImageLayout::Hwc, 32, 56, 64),
        (ImageLayout::Hwc, 64, 28, 128),
        (ImageLayout::Hwc, 48, 112, 96),
    ] {
        let g = ConvGeometry {
            cin,
            hin: hw,
            win: hw,
        };
        let input: Vec<f32> = (0..g.input_len())
            .map(|i| (i % 255) as f32 / 255.0)
            .collect();
        let b: Vec<f32> = (0..g.k() * cout).map(|i| (i % 7) as f32 * 0.1).collect();
        let weight = gemm::pack_b(&b, g.k(), cout);
        let bias = vec![0.1; cout];
        let w = ConvWeights {
            weight: PackedB::F32(&weight),
            bias: &bias,
            cout,
            epilogue: Epilogue::BiasAct(Activation::HardSwish),
        };
        let mut cols = vec![0.0; g.cols_len()];
        let mut out = vec![0.0; g.hout() * g.wout() * cout];
        let macs = (g.hout() * g.wout() * g.k() * cout) as f64;
        for isa in Isa::supported() {
            let kernel = GemmKernel::select(levit_kernels::Precision::F32, isa).unwrap();
            let t = time(|| {
                let src = ConvInput {
                    image: &input,
                    layout,
                    geometry: g,
                };
                conv_3x3_s2_rows(
                    &kernel,
                    &src,
                    &w,
                    0..g.hout(),
                    &mut cols,
                    black_box(&mut out),
                )
            });
            println!(
                "conv {layout:?} {cin}->{cout} {hw}x{hw} {isa}: {:7.1} us ({:5.1} GMAC/s)",
                t * 1e6,
                macs / t / 1e9
            );
        }
    }
    for (rows, ch) in [(16, 768), (16, 384), (49, 1024)] {
        let x: Vec<f32> = (0..rows * ch).map(|i| i as f32).collect();
        let mut out = vec![0.0; ch];
        let t = time(|| mean_rows(&x, rows, ch, black_box(&mut out)));
        println!("mean_rows {rows}x{ch}: {:6.2} us", t * 1e6);
    }
}
