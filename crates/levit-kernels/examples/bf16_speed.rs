//! Single-thread throughput of every bf16 GEMM kernel against the f32 kernel of the
//! same vector ISA, on LeViT shapes, with warm and cold weights.
//!
//! `cargo run --release -p levit-kernels --example bf16_speed [-- M K N]...`
//!
//! Warm: the same weights every call (they stay in L2/L3). Cold: calls rotate over
//! copies of the weights totalling more than L3, as in a full model whose weights do
//! not stay cached between layers; there the bf16 kernels stream half the bytes.
//! Each bf16 kernel and its f32 kernel are timed in alternating rounds (best of
//! each), so that a change of turbo or of a neighbour's load during the run does not
//! favour one side.
//! `LEVIT_ISA` restricts the kernels to those its level includes. Figures are
//! G multiply-adds per second (one per `a * b` term, as the peak loops count them).

use std::hint::black_box;
use std::time::Duration;

use levit_kernels::gemm::{self, Epilogue, GemmArgs, GemmKernel, PackedB};
use levit_kernels::peak::{self, best_rate};
use levit_kernels::{bf16, Activation, Isa, Precision};

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
        ]
    } else {
        args.chunks(3).map(|c| (c[0], c[1], c[2])).collect()
    };
    let budget = Duration::from_millis(300);
    let levels = Isa::supported();
    let kernels: Vec<GemmKernel> = GemmKernel::all()
        .into_iter()
        .filter(|k| levels.iter().any(|level| level.includes(k.isa())))
        .collect();
    let bf16_kernels: Vec<&GemmKernel> = kernels
        .iter()
        .filter(|k| k.precision() == Precision::Bf16)
        .collect();
    // The f32 kernel each bf16 kernel is compared with: its ISA's vector family's.
    let f32_of = |k: &GemmKernel| {
        GemmKernel::select(Precision::F32, k.isa().vector()).expect("an f32 kernel")
    };

    // The core's own peak for each kernel's instruction: f32 FMAs (the f32 and the
    // widening kernels), vdpbf16ps, AMX.
    let mut peaks: Vec<(Precision, Isa)> = Vec::new();
    for k in &bf16_kernels {
        let dot = (k.isa() != k.isa().vector()).then_some((Precision::Bf16, k.isa()));
        for key in dot.into_iter().chain([(Precision::F32, k.isa().vector())]) {
            if !peaks.contains(&key) {
                peaks.push(key);
            }
        }
    }
    for (precision, isa) in peaks {
        let g = peak::dot_peak_gmacs(precision, isa, budget);
        println!("peak {precision} on {isa}: {g:6.1} G multiply-adds/s");
    }

    // Values in [-0.5, 0.5) from a multiplicative hash: deterministic, no pattern the
    // kernels could exploit.
    let values = |len: usize, salt: u32| -> Vec<f32> {
        (0..len as u32)
            .map(|i| (i ^ salt).wrapping_mul(0x9E37_79B9) as f32 / 4_294_967_296.0 - 0.5)
            .collect()
    };
    println!(
        "{:>16} {:<24} {:>8} {:>8}   {:<18} {:>8} {:>8}   {:>6} {:>6}",
        "M x K x N", "bf16 kernel", "warm", "cold", "f32 kernel", "warm", "cold", "warm", "cold"
    );
    for (m, k, n) in shapes {
        let a = values(m * k, 1);
        let b = values(k * n, 2);
        let packed_f32 = gemm::pack_b(&b, k, n);
        let packed_bf16 = bf16::pack_b(&b, k, n);
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
        let cold_f32 = copies(&packed_f32);
        let cold_bf16 = copies(&packed_bf16);
        // (warm, cold) G multiply-adds/s of `kernel` on weights of its precision.
        let mut rates = |kernel: &GemmKernel| {
            let warm_b = match kernel.precision() {
                Precision::F32 => PackedB::F32(&packed_f32),
                Precision::Bf16 => PackedB::Bf16(&packed_bf16),
                Precision::Int8 => unreachable!("bf16 and f32 kernels only"),
            };
            let args = GemmArgs { b: warm_b, ..base };
            let warm = best_rate(macs, budget / ROUNDS as u32, || {
                kernel.run(&args, black_box(&mut c))
            });
            let mut next = 0;
            let cold = best_rate(macs, budget / ROUNDS as u32, || {
                let b = match kernel.precision() {
                    Precision::F32 => PackedB::F32(&cold_f32[next % cold_f32.len()]),
                    Precision::Bf16 => PackedB::Bf16(&cold_bf16[next % cold_bf16.len()]),
                    Precision::Int8 => unreachable!("bf16 and f32 kernels only"),
                };
                next += 1;
                kernel.run(&GemmArgs { b, ..base }, black_box(&mut c))
            });
            (warm, cold)
        };
        for kernel in &bf16_kernels {
            // The two kernels in turn, best of each: a turbo or neighbour change
            // during the run hits both alike.
            let f32_kernel = f32_of(kernel);
            let (mut w, mut c, mut fw, mut fc) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
            for _ in 0..ROUNDS {
                let (rw, rc) = rates(kernel);
                (w, c) = (w.max(rw), c.max(rc));
                let (rw, rc) = rates(&f32_kernel);
                (fw, fc) = (fw.max(rw), fc.max(rc));
            }
            println!(
                "{:>16} {:<24} {w:8.1} {c:8.1}   {:<18} {fw:8.1} {fc:8.1}   {:6.2} {:6.2}",
                format!("{m}x{k}x{n}"),
                kernel.name(),
                f32_kernel.name(),
                w / fw,
                c / fc
            );
        }
    }
    println!("(G multiply-adds/s, 1 thread; the last two columns are bf16 / f32)");
}

/// Copies of `packed` totalling more than [`COLD_BYTES`].
fn copies<T: Clone>(packed: &[T]) -> Vec<Vec<T>> {
    let bytes = std::mem::size_of_val(packed).max(1);
    (0..COLD_BYTES / bytes + 1)
        .map(|_| packed.to_vec())
        .collect()
}
