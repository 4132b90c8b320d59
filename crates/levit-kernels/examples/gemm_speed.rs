//! Single-thread GEMM throughput on LeViT shapes, per supported path.
//!
//! `cargo run --release -p levit-kernels --example gemm_speed [-- M K N]...`
//!
//! Also measures the core's FMA peak per path with register-only loops
//! (`levit_kernels::peak`), so the GEMM numbers can be read as a fraction of what this
//! core actually sustains.

use std::hint::black_box;
use std::time::Duration;

use levit_kernels::gemm::{self, Epilogue, GemmArgs, PackedB};
use levit_kernels::peak::{self, best_rate as time};
use levit_kernels::{Activation, Isa};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("M K N"))
        .collect();
    let shapes: Vec<(usize, usize, usize)> = if args.is_empty() {
        vec![
            (196, 384, 768),
            (49, 512, 1152),
            (16, 768, 1536),
            (3136, 432, 96),
            (784, 256, 512),
            (12544, 27, 16),
            (1, 768, 1000),
        ]
    } else {
        args.chunks(3).map(|c| (c[0], c[1], c[2])).collect()
    };
    let budget = Duration::from_millis(400);

    for isa in Isa::supported() {
        let g = peak::fma_peak_gflops(isa, budget);
        println!("peak  {:<8} FMA loop: {g:7.1} GFLOP/s", isa.name());
    }

    let mut seed = 1u32;
    let mut rnd = move || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    };
    for (m, k, n) in shapes {
        let a: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
        let packed = gemm::pack_b(&b, k, n);
        let bias: Vec<f32> = (0..n).map(|_| rnd()).collect();
        let mut c = vec![0.0f32; m * n];
        let flops = 2.0 * (m * k * n) as f64;
        let mut line = format!("M={m:5} K={k:4} N={n:4}:");
        for isa in Isa::supported() {
            let args = GemmArgs {
                m,
                k,
                n,
                a: &a,
                lda: k,
                a_rows: None,
                b: PackedB::F32(&packed),
                bias: &bias,
                ldc: n,
                epilogue: Epilogue::BiasAct(Activation::HardSwish),
            };
            let g = time(flops, budget, || gemm::gemm(isa, &args, black_box(&mut c)));
            line += &format!("  {isa} {g:6.1}");
            // Cold B: rotate over copies of the weights totalling more than L3, as in a
            // full model whose weights do not stay cached between layers.
            let copies = (256 << 20) / (packed.len() * 4) + 1;
            let cold: Vec<Vec<f32>> = (0..copies).map(|_| packed.clone()).collect();
            let mut next = 0;
            let g = time(flops, budget, || {
                let args = GemmArgs {
                    b: PackedB::F32(&cold[next]),
                    ..args
                };
                next = (next + 1) % copies;
                gemm::gemm(isa, &args, black_box(&mut c))
            });
            line += &format!(" (cold B {g:6.1})");
        }
        println!("{line}  GFLOP/s");
    }
}
