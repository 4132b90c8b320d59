//! Single-thread speed of the AMX bf16 GEMM kernel against the f32 AVX-512 kernel on
//! LeViT shapes.
//!
//! `cargo run --release -p levit-kernels --example amx_speed [-- [--cold] [--epilogue E] [M K N]...]`
//!
//! `E` is `hardswish` (default), `none`, `silu` or `residual`.
//! Warm: the same weights every call (they stay in L2/L3). `--cold`: rotate over
//! copies of the weights totalling more than the L3 (`LEVIT_COLD_MB`, default 640),
//! as in a full model whose weights do not stay cached between layers.

use std::hint::black_box;
use std::time::Duration;

use levit_kernels::gemm::{self, Epilogue, GemmArgs, GemmKernel, PackedB};
use levit_kernels::peak::best_rate;
use levit_kernels::{bf16, Activation, Isa, Precision};

const SHAPES: [(usize, usize, usize); 10] = [
    (196, 128, 256),
    (196, 256, 128),
    (196, 384, 768),
    (196, 768, 384),
    (49, 384, 768),
    (49, 512, 1024),
    (49, 1024, 512),
    (16, 768, 1536),
    (16, 1536, 768),
    (1, 768, 1000),
];

fn main() {
    let mut cold = false;
    let mut dims = Vec::new();
    let mut epilogue = Epilogue::BiasAct(Activation::HardSwish);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--cold" {
            cold = true;
        } else if arg == "--epilogue" {
            epilogue = match args.next().as_deref() {
                Some("none") => Epilogue::BiasAct(Activation::None),
                Some("hardswish") => Epilogue::BiasAct(Activation::HardSwish),
                Some("silu") => Epilogue::BiasAct(Activation::Silu),
                Some("residual") => Epilogue::BiasResidual,
                other => panic!("unknown epilogue {other:?}"),
            };
        } else {
            dims.push(arg.parse::<usize>().expect("--cold or M K N"));
        }
    }
    let shapes: Vec<(usize, usize, usize)> = if dims.is_empty() {
        SHAPES.to_vec()
    } else {
        dims.chunks(3).map(|c| (c[0], c[1], c[2])).collect()
    };
    let Some(amx) = GemmKernel::select(Precision::Bf16, Isa::Amx).filter(|k| k.isa() == Isa::Amx)
    else {
        println!("no AMX kernel on this CPU (or OS): nothing to time");
        return;
    };
    let f32k = GemmKernel::select(Precision::F32, Isa::Avx512).expect("AMX implies AVX-512");
    let cold_bytes: usize = std::env::var("LEVIT_COLD_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(640)
        << 20;
    let budget = Duration::from_millis(300);
    println!(
        "1 thread, {} vs {}, epilogue {epilogue:?}",
        amx.name(),
        f32k.name()
    );
    println!(
        "{:>4} {:>5} {:>5} | {:>9} {:>7} | {:>9} {:>7} | {:>6}{}",
        "M",
        "K",
        "N",
        "amx us",
        "GMAC/s",
        "f32 us",
        "GMAC/s",
        "x",
        if cold {
            " | amx cold us GMAC/s | f32 cold us GMAC/s |  x"
        } else {
            ""
        }
    );

    let mut seed = 1u32;
    let mut rnd = move || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    };
    for (m, k, n) in shapes {
        let a: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
        let packed_f32 = gemm::pack_b(&b, k, n);
        let packed_bf16 = bf16::pack_b(&b, k, n);
        let bias: Vec<f32> = (0..n).map(|_| rnd()).collect();
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
            epilogue,
        };
        let warm = |kernel: &GemmKernel, args: GemmArgs, c: &mut Vec<f32>| {
            best_rate(macs, budget, || kernel.run(&args, black_box(c)))
        };
        let amx_args = GemmArgs {
            b: PackedB::Bf16(&packed_bf16),
            ..base
        };
        let ga = warm(&amx, amx_args, &mut c);
        let gf = warm(&f32k, base, &mut c);
        let us = |g: f64| macs / g / 1e3;
        let mut line = format!(
            "{m:4} {k:5} {n:5} | {:9.1} {ga:7.1} | {:9.1} {gf:7.1} | {:6.2}",
            us(ga),
            us(gf),
            ga / gf
        );
        if cold {
            let copies_bf16 = cold_bytes / (packed_bf16.len() * 2) + 1;
            let cold_b: Vec<Vec<u16>> = (0..copies_bf16).map(|_| packed_bf16.clone()).collect();
            let mut next = 0;
            let gac = best_rate(macs, budget, || {
                let args = GemmArgs {
                    b: PackedB::Bf16(&cold_b[next]),
                    ..base
                };
                next = (next + 1) % copies_bf16;
                amx.run(&args, black_box(&mut c))
            });
            drop(cold_b);
            let copies_f32 = cold_bytes / (packed_f32.len() * 4) + 1;
            let cold_f: Vec<Vec<f32>> = (0..copies_f32).map(|_| packed_f32.clone()).collect();
            let mut next = 0;
            let gfc = best_rate(macs, budget, || {
                let args = GemmArgs {
                    b: PackedB::F32(&cold_f[next]),
                    ..base
                };
                next = (next + 1) % copies_f32;
                f32k.run(&args, black_box(&mut c))
            });
            line += &format!(
                " | {:11.1} {gac:6.1} | {:11.1} {gfc:6.1} | {:5.2}",
                us(gac),
                us(gfc),
                gac / gfc
            );
        }
        println!("{line}");
    }
}
