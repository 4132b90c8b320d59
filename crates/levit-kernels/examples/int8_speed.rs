//! Single-thread throughput of every int8 GEMM kernel against the f32 kernel of the
//! same vector ISA, on LeViT shapes, with warm and cold weights, and each kernel's
//! share of its instruction's measured peak.
//!
//! `cargo run --release -p levit-kernels --example int8_speed [-- M K N]...`
//!
//! Warm: the same weights every call (they stay in L2/L3). Cold: calls rotate over
//! copies of the weights totalling more than L3, as in a full model. The int8 time
//! includes the kernel's quantization of A (once per row tile). Each int8 kernel and
//! its f32 kernel are timed in alternating rounds (best of each). `LEVIT_ISA`
//! restricts the kernels to those its level includes. Figures are G multiply-adds per
//! second.

use std::hint::black_box;
use std::time::Duration;

use levit_kernels::gemm::{self, Epilogue, GemmArgs, GemmKernel, PackedB};
use levit_kernels::peak::{self, best_rate};
use levit_kernels::{int8, Activation, Isa, Precision};

/// Rounds of timing per kernel pair (each `budget / ROUNDS` per measurement).
const ROUNDS: usize = 4;

/// Bytes of weight copies the cold runs rotate over (more than any L3 here).
const COLD_BYTES: usize = 256 << 20;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("M K N"))
        .collect();
    let shapes: Vec<(usize, usize, usize)> = if args.is_empty() {
        vec![
            (196, 128, 256),
            (196, 384, 768),
            (196, 768, 384),
            (49, 512, 1024),
            (49, 1024, 512),
            (16, 768, 1536),
            (16, 1536, 768),
            (1, 768, 1000),
        ]
    } else {
        args.chunks(3).map(|c| (c[0], c[1], c[2])).collect()
    };
    let budget = Duration::from_millis(300);
    let levels = Isa::supported();
    let int8_kernels: Vec<GemmKernel> = GemmKernel::all()
        .into_iter()
        .filter(|k| k.precision() == Precision::Int8)
        .filter(|k| levels.iter().any(|level| level.includes(k.isa())))
        .collect();
    let f32_of = |k: &GemmKernel| {
        GemmKernel::select(Precision::F32, k.isa().vector()).expect("an f32 kernel")
    };
    // The peak of each int8 kernel's instruction on its level.
    let peaks: Vec<f64> = int8_kernels
        .iter()
        .map(|k| {
            let g = peak::dot_peak_gmacs(Precision::Int8, k.isa(), budget);
            println!(
                "peak int8 on {} ({}): {g:7.1} G multiply-adds/s",
                k.isa(),
                k.name()
            );
            g
        })
        .collect();

    let values = |len: usize, salt: u32| -> Vec<f32> {
        (0..len as u32)
            .map(|i| (i ^ salt).wrapping_mul(0x9E37_79B9) as f32 / 4_294_967_296.0 - 0.5)
            .collect()
    };
    println!(
        "{:>16} {:<24} {:>8} {:>8} {:>6}   {:<18} {:>8} {:>8}   {:>6} {:>6}",
        "M x K x N",
        "int8 kernel",
        "warm",
        "cold",
        "%peak",
        "f32 kernel",
        "warm",
        "cold",
        "warm",
        "cold"
    );
    for (m, k, n) in shapes {
        let a = values(m * k, 1);
        let b = values(k * n, 2);
        let packed_f32 = gemm::pack_b(&b, k, n);
        let packed_int8 = int8::pack_b(&b, k, n);
        let bias = values(n, 3);
        let mut c = vec![0.0f32; m * n];
        let macs = (m * k * n) as f64;
        let base = GemmArgs {
            m,
            k,
            n,
            a: &a,
            lda: k,
            a_rows: None,
            b: PackedB::F32(&packed_f32),
            bias: &bias,
            ldc: n,
            epilogue: Epilogue::BiasAct(Activation::HardSwish),
        };
        let copies_of = |bytes: usize| COLD_BYTES / bytes.max(1) + 1;
        let cold_f32: Vec<Vec<f32>> = (0..copies_of(packed_f32.len() * 4))
            .map(|_| packed_f32.clone())
            .collect();
        let cold_int8: Vec<int8::Weights> = (0..copies_of(packed_int8.data.len()))
            .map(|_| packed_int8.clone())
            .collect();
        let mut rates = |kernel: &GemmKernel| {
            let pick = |i: Option<usize>| match (kernel.precision(), i) {
                (Precision::Int8, None) => PackedB::Int8(packed_int8.view()),
                (Precision::Int8, Some(i)) => PackedB::Int8(cold_int8[i % cold_int8.len()].view()),
                (_, None) => PackedB::F32(&packed_f32),
                (_, Some(i)) => PackedB::F32(&cold_f32[i % cold_f32.len()]),
            };
            let args = GemmArgs {
                b: pick(None),
                ..base
            };
            let warm = best_rate(macs, budget / ROUNDS as u32, || {
                kernel.run(&args, black_box(&mut c))
            });
            let mut next = 0;
            let cold = best_rate(macs, budget / ROUNDS as u32, || {
                next += 1;
                kernel.run(
                    &GemmArgs {
                        b: pick(Some(next)),
                        ..base
                    },
                    black_box(&mut c),
                )
            });
            (warm, cold)
        };
        for (kernel, peak) in int8_kernels.iter().zip(&peaks) {
            let f32_kernel = f32_of(kernel);
            let (mut w, mut c, mut fw, mut fc) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
            for _ in 0..ROUNDS {
                let (rw, rc) = rates(kernel);
                (w, c) = (w.max(rw), c.max(rc));
                let (rw, rc) = rates(&f32_kernel);
                (fw, fc) = (fw.max(rw), fc.max(rc));
            }
            println!(
                "{:>16} {:<24} {w:8.1} {c:8.1} {:6.1}   {:<18} {fw:8.1} {fc:8.1}   {:6.2} {:6.2}",
                format!("{m}x{k}x{n}"),
                kernel.name(),
                100.0 * w / peak,
                f32_kernel.name(),
                w / fw,
                c / fc
            );
        }
    }
    println!("(G multiply-adds/s, 1 thread; %peak is warm / the instruction's peak; the last two columns are int8 / f32)");
}
