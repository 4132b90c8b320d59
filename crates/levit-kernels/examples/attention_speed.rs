//! Single-thread attention throughput on LeViT-384-like shapes, per attention kernel
//! this CPU runs (every precision) and for the scalar reference.
//!
//! `cargo run --release -p levit-kernels --example attention_speed [-- H D Dv nq nk]...`
//!
//! FLOPs counted: `2·H·nq·nk·(key_dim + val_dim)` (the two matrix products).

use std::hint::black_box;
use std::time::{Duration, Instant};

use levit_kernels::attention::{self, AttentionArgs, AttentionKernel, AttentionShape, HeadView};
use levit_kernels::Activation;

fn time<F: FnMut()>(budget: Duration, mut f: F) -> f64 {
    f();
    let start = Instant::now();
    let mut best = f64::INFINITY;
    while start.elapsed() < budget {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    // (heads, key_dim, val_dim, nq, nk): LeViT-384's, then LeViT-128S's attentions,
    // or the shapes given on the command line (five numbers each).
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("H D Dv nq nk"))
        .collect();
    let shapes: Vec<_> = if args.is_empty() {
        vec![
            (6, 32, 64, 196, 196),
            (12, 32, 128, 49, 196),
            (9, 32, 64, 49, 49),
            (24, 32, 128, 16, 49),
            (12, 32, 64, 16, 16),
            (4, 16, 32, 196, 196),
            (8, 16, 64, 49, 196),
            (6, 16, 32, 49, 49),
            (16, 16, 64, 16, 49),
            (8, 16, 32, 16, 16),
        ]
    } else {
        args.chunks(5)
            .map(|c| (c[0], c[1], c[2], c[3], c[4]))
            .collect()
    };
    let mut seed = 7u32;
    let mut rnd = move || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (seed >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
    };
    for (heads, d, dv, nq, nk) in shapes {
        let shape = AttentionShape {
            heads,
            key_dim: d,
            val_dim: dv,
            nq,
            nk,
            scale: (d as f32).powf(-0.5),
        };
        let hs = d + dv;
        let q: Vec<f32> = (0..nq * heads * d).map(|_| rnd()).collect();
        let kv: Vec<f32> = (0..nk * heads * hs).map(|_| rnd()).collect();
        let bias: Vec<f32> = (0..shape.bias_len()).map(|_| rnd()).collect();
        let args = AttentionArgs {
            shape,
            q: &q,
            q_view: HeadView {
                offset: 0,
                row_stride: heads * d,
                head_stride: d,
            },
            kv: &kv,
            k_view: HeadView {
                offset: 0,
                row_stride: heads * hs,
                head_stride: hs,
            },
            v_view: HeadView {
                offset: d,
                row_stride: heads * hs,
                head_stride: hs,
            },
            bias: &bias,
            act: Activation::HardSwish,
        };
        let mut out = vec![0.0; shape.out_len()];
        let mut scratch = vec![0.0; shape.scratch_len()];
        let flops = 2.0 * (heads * nq * nk * (d + dv)) as f64;
        let budget = Duration::from_millis(300);
        let mut line = format!("H={heads:2} D={d} Dv={dv:3} nq={nq:3} nk={nk:3}:");
        for kernel in AttentionKernel::all() {
            let t = time(budget, || {
                kernel.run(&args, black_box(&mut out), &mut scratch)
            });
            line += &format!(
                "\n  {:28} {:6.1} us {:5.1} GF/s",
                kernel.name(),
                t * 1e6,
                flops / t / 1e9
            );
            // Cold bias: in a model the gathered bias table of each block is read once
            // per inference, from L3 or memory; rotate over copies larger than L3.
            let copies = (64 << 20) / (bias.len() * 4) + 1;
            let cold: Vec<Vec<f32>> = (0..copies).map(|_| bias.clone()).collect();
            let mut next = 0;
            let t = time(budget, || {
                let args = AttentionArgs {
                    bias: &cold[next],
                    ..args
                };
                next = (next + 1) % copies;
                kernel.run(&args, black_box(&mut out), &mut scratch)
            });
            line += &format!(" (cold bias {:6.1} us)", t * 1e6);
        }
        let t = time(budget, || {
            attention::reference::attention(&args, black_box(&mut out), &mut scratch)
        });
        line += &format!("\n  {:28} {:6.1} us", "reference", t * 1e6);
        println!("{line}");
    }
}
