//! Single-thread GEMM throughput on LeViT shapes, per supported path.
//!
//! `cargo run --release -p levit-kernels --example gemm_speed [-- M K N]...`
//!
//! Also measures the machine's FMA peak with a register-only loop (AVX-512 and AVX2),
//! so the GEMM numbers can be read as a fraction of what this core actually sustains.

use std::hint::black_box;
use std::time::{Duration, Instant};

use levit_kernels::gemm::{self, Epilogue, GemmArgs};
use levit_kernels::{Activation, Isa};

/// Best-of GFLOP/s: runs batches until `budget` is spent and keeps the fastest batch.
fn time<F: FnMut()>(flops: f64, budget: Duration, mut f: F) -> f64 {
    f();
    let reps = ((2e8 / flops).ceil() as usize).max(1);
    let start = Instant::now();
    let mut best = f64::INFINITY;
    while start.elapsed() < budget {
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    flops / best / 1e9
}

#[cfg(target_arch = "x86_64")]
mod peak {
    use core::arch::x86_64::*;

    /// 24 independent FMA chains of `iters` steps; returns a value so nothing folds.
    #[target_feature(enable = "avx512f,fma")]
    pub fn avx512(iters: usize) -> f32 {
        let mut acc = [_mm512_set1_ps(0.0); 24];
        let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        // Literal indices keep every chain in a register (see gemm/avx512.rs).
        macro_rules! step {
            ($($i:literal)+) => { $( acc[$i] = _mm512_fmadd_ps(acc[$i], a, b); )+ };
        }
        for _ in 0..iters {
            step!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23);
        }
        acc.iter().map(|&x| _mm512_reduce_add_ps(x)).sum()
    }

    /// 12 independent FMA chains of `iters` steps.
    #[target_feature(enable = "avx2,fma")]
    pub fn avx2(iters: usize) -> f32 {
        let mut acc = [_mm256_set1_ps(0.0); 12];
        let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        macro_rules! step {
            ($($i:literal)+) => { $( acc[$i] = _mm256_fmadd_ps(acc[$i], a, b); )+ };
        }
        for _ in 0..iters {
            step!(0 1 2 3 4 5 6 7 8 9 10 11);
        }
        let mut s = [0.0f32; 8];
        for x in acc {
            let mut t = [0.0f32; 8];
            // SAFETY: t holds 8 floats.
            unsafe { _mm256_storeu_ps(t.as_mut_ptr(), x) };
            for (s, t) in s.iter_mut().zip(t) {
                *s += t;
            }
        }
        s.iter().sum()
    }
}

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

    #[cfg(target_arch = "x86_64")]
    {
        let iters = 1_000_000;
        if Isa::Avx512.is_supported() {
            let f = 24.0 * 16.0 * 2.0 * iters as f64;
            let g = time(f, budget, || {
                // SAFETY: AVX-512F + FMA checked just above.
                black_box(unsafe { peak::avx512(black_box(iters)) });
            });
            println!("peak  avx512 FMA loop: {g:7.1} GFLOP/s");
        }
        if Isa::Avx2.is_supported() {
            let f = 12.0 * 8.0 * 2.0 * iters as f64;
            let g = time(f, budget, || {
                // SAFETY: AVX2 + FMA checked by is_supported.
                black_box(unsafe { peak::avx2(black_box(iters)) });
            });
            println!("peak  avx2   FMA loop: {g:7.1} GFLOP/s");
        }
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
                b: &packed,
                bias: &bias,
                ldc: n,
                epilogue: Epilogue::BiasAct(Activation::HardSwish),
            };
            let g = time(flops, budget, || gemm::gemm(isa, &args, black_box(&mut c)));
            line += &format!("  {isa} {g:6.1}");
        }
        println!("{line}  GFLOP/s");
    }
}
