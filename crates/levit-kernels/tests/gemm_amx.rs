//! The AMX bf16 GEMM kernel (`amx_bf16_32x32`) against the bf16-activation reference
//! (`gemm::reference::gemm_bf16_activations`: A rounded to bf16, B bf16 widened, f32
//! sums in order), over awkward shapes, all epilogues, row gathers and padded
//! strides; plus bit-exact checks where every sum is exact, determinism across block
//! splits, and untouched memory outside a block. On a CPU (or OS) without AMX every
//! test passes after printing why it skipped.
//!
//! Error bound. Both sides multiply the same operands: `a'_k = bf16(a_k)` and the
//! bf16 weights `b'_k`. A product of two bf16 (8-bit significands) is exact in f32
//! (16 bits), and the test data never underflows (inputs are 0 or at least 2^-24 in
//! magnitude, so products are at least 2^-48 or 0, and bf16 inputs are never
//! subnormal, so the tile unit's DAZ changes nothing). So each side sums the same
//! `K + 1` exact terms (K products and the bias), only in a different order: the
//! reference in order with one rounding per addition; the tile unit accumulates
//! with f32 round-to-nearest additions (Intel SDM, TDPBF16PS) in its own order,
//! then the epilogue adds the bias. Any order of `K + 1` terms summed with rounded
//! additions is within `γ_{K+1} · S` of the exact sum, where `S = Σ|a'_k b'_k| +
//! |bias|`, `γ_n = n·u/(1-n·u)`, `u = 2^-24` (Higham, *Accuracy and Stability*,
//! §4.2), so the two differ by at most `2·γ_{K+1}·S`. The tile unit also flushes
//! subnormal results to zero (FTZ), at most `2^-126` per addition: `(K+2)·2^-126`
//! more. The activations are at most 1.5-Lipschitz and are evaluated with a few ulp
//! of their own error, so we accept
//! `|got - want| <= 1.5 · (2γ_{K+1}·S + (K+2)·2^-126) + 8 ulp(want) (+ 1 ulp(c) for
//! the residual)`.
//! The bound is derived, not tuned; the largest observed error/bound ratio is printed
//! with `--nocapture`.

mod common;

use common::{ulp, Rng, U};
use levit_kernels::bf16::{from_bf16, pack_b, to_bf16};
use levit_kernels::gemm::{reference, Epilogue, GemmArgs, GemmKernel, PackedB};
use levit_kernels::parallel::{self, SpinPool};
use levit_kernels::{panels, Activation, Isa, Precision, NR};

const EPILOGUES: [Epilogue; 4] = [
    Epilogue::BiasAct(Activation::None),
    Epilogue::BiasAct(Activation::HardSwish),
    Epilogue::BiasAct(Activation::Silu),
    Epilogue::BiasResidual,
];

const MS: [usize; 9] = [1, 2, 15, 16, 17, 31, 33, 49, 196];
const KS: [usize; 11] = [0, 1, 27, 31, 32, 33, 64, 128, 144, 384, 1536];
const NS: [usize; 8] = [1, 15, 16, 17, 33, 48, 64, 1000];

/// The AMX kernel, or `None` after printing why this CPU skips the test.
fn amx(test: &str) -> Option<GemmKernel> {
    if !Isa::Amx.is_supported() {
        println!("{test}: skipped, this CPU or OS does not run AMX-BF16 tiles");
        return None;
    }
    let kernel = GemmKernel::select(Precision::Bf16, Isa::Amx)
        .expect("AMX is supported, so a bf16 kernel must be selected");
    assert_eq!(kernel.isa(), Isa::Amx, "selected {kernel:?}");
    Some(kernel)
}

/// bf16(x) as f32.
fn round(x: f32) -> f32 {
    from_bf16(to_bf16(x))
}

/// One test problem with its own storage.
struct Problem {
    m: usize,
    k: usize,
    n: usize,
    a: Vec<f32>,
    lda: usize,
    rows: Option<Vec<u32>>,
    /// Row-major `[k, n]`, already bf16-rounded (what the packed weights hold).
    b: Vec<f32>,
    packed: Vec<u16>,
    bias: Vec<f32>,
    ldc: usize,
    c0: Vec<f32>,
    epilogue: Epilogue,
}

impl Problem {
    #[allow(clippy::too_many_arguments)]
    fn new(
        rng: &mut Rng,
        m: usize,
        k: usize,
        n: usize,
        gather: bool,
        lda_pad: usize,
        ldc_pad: usize,
        epilogue: Epilogue,
    ) -> Problem {
        let lda = k + lda_pad;
        let src_rows = if gather { 2 * m + 1 } else { m };
        let a = rng.vec(src_rows * lda, 1.0);
        let rows = gather.then(|| (0..m).map(|_| rng.below(src_rows) as u32).collect());
        let b: Vec<f32> = rng.vec(k * n, 1.0).into_iter().map(round).collect();
        Problem::with(
            m,
            k,
            n,
            a,
            lda,
            rows,
            b,
            rng.vec(n, 1.0),
            ldc_pad,
            epilogue,
            rng,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn with(
        m: usize,
        k: usize,
        n: usize,
        a: Vec<f32>,
        lda: usize,
        rows: Option<Vec<u32>>,
        b: Vec<f32>,
        bias: Vec<f32>,
        ldc_pad: usize,
        epilogue: Epilogue,
        rng: &mut Rng,
    ) -> Problem {
        let packed = pack_b(&b, k, n);
        let ldc = n + ldc_pad;
        let c0 = rng.vec((m - 1) * ldc + n, 4.0);
        Problem {
            m,
            k,
            n,
            a,
            lda,
            rows,
            b,
            packed,
            bias,
            ldc,
            c0,
            epilogue,
        }
    }

    fn args(&self) -> GemmArgs<'_> {
        GemmArgs {
            m: self.m,
            k: self.k,
            n: self.n,
            a: &self.a,
            lda: self.lda,
            a_rows: self.rows.as_deref(),
            b: PackedB::Bf16(&self.packed),
            bias: &self.bias,
            ldc: self.ldc,
            epilogue: self.epilogue,
        }
    }

    fn a_row(&self, i: usize) -> &[f32] {
        &self.a[self.args().a_row_offset(i)..][..self.k]
    }

    /// The error bound of the module doc for element (i, j).
    fn tolerance(&self, i: usize, j: usize, want: f32) -> f64 {
        let s: f64 = self
            .a_row(i)
            .iter()
            .enumerate()
            .map(|(kk, &a)| (round(a) as f64 * self.b[kk * self.n + j] as f64).abs())
            .sum::<f64>()
            + (self.bias[j] as f64).abs();
        let terms = (self.k + 1) as f64;
        let gamma = terms * U / (1.0 - terms * U);
        let ftz = (self.k + 2) as f64 * f32::MIN_POSITIVE as f64;
        let mut tol = 1.5 * (2.0 * gamma * s + ftz) + 8.0 * ulp(want);
        if self.epilogue == Epilogue::BiasResidual {
            tol += ulp(self.c0[i * self.ldc + j]);
        }
        tol
    }

    fn run(&self, kernel: &GemmKernel) -> Vec<f32> {
        let mut c = self.c0.clone();
        kernel.run(&self.args(), &mut c);
        c
    }

    fn reference(&self) -> Vec<f32> {
        let mut c = self.c0.clone();
        reference::gemm_bf16_activations(&self.args(), &mut c);
        c
    }

    fn describe(&self) -> String {
        format!(
            "m={} k={} n={} lda={} gather={} ldc={} {:?}",
            self.m,
            self.k,
            self.n,
            self.lda,
            self.rows.is_some(),
            self.ldc,
            self.epilogue
        )
    }

    /// Checks `got` against `want` inside the output and untouched padding past `n`.
    /// Returns the largest error/bound ratio.
    fn compare(&self, got: &[f32], want: &[f32]) -> f64 {
        assert_eq!(got.len(), self.c0.len());
        let mut worst = 0.0f64;
        for (idx, (&g, &w)) in got.iter().zip(want).enumerate() {
            let (i, j) = (idx / self.ldc, idx % self.ldc);
            if j >= self.n {
                assert_eq!(
                    g.to_bits(),
                    self.c0[idx].to_bits(),
                    "{}: padding ({i},{j}) written",
                    self.describe()
                );
                continue;
            }
            let tol = self.tolerance(i, j, w);
            let err = (g as f64 - w as f64).abs();
            assert!(
                err <= tol,
                "{}: C[{i},{j}] = {g}, want {w} (err {err:e} > tol {tol:e})",
                self.describe()
            );
            worst = worst.max(err / tol);
        }
        worst
    }
}

#[test]
fn amx_kernel_is_selected_where_amx_runs() {
    let all = GemmKernel::all();
    let listed = all.iter().find(|k| k.isa() == Isa::Amx);
    let Some(kernel) = amx("amx_kernel_is_selected_where_amx_runs") else {
        assert!(
            listed.is_none(),
            "an AMX kernel is listed on a CPU without AMX"
        );
        return;
    };
    assert_eq!(kernel.name(), "amx_bf16_32x32");
    assert_eq!(kernel.precision(), Precision::Bf16);
    assert_eq!(listed, Some(&kernel));
    // A lower ISA level never gets it.
    assert_ne!(
        GemmKernel::select(Precision::Bf16, Isa::Avx512Bf16).map(|k| k.isa()),
        Some(Isa::Amx)
    );
    assert_eq!(kernel.split().rows % 16, 0);
}

#[test]
fn matches_the_bf16_reference_on_awkward_shapes() {
    let Some(kernel) = amx("matches_the_bf16_reference_on_awkward_shapes") else {
        return;
    };
    let mut rng = Rng::new(11);
    let mut worst = 0.0f64;
    let mut case = 0usize;
    for m in MS {
        for k in KS {
            for n in NS {
                // Rotate the variants so every epilogue meets every shape class, with
                // and without a gather and padded strides.
                let epilogue = EPILOGUES[case % 4];
                let gather = (case / 4) % 2 == 1;
                let ldc_pad = [0, 3, 16][case % 3];
                let lda_pad = [0, 5][(case / 3) % 2];
                case += 1;
                let p = Problem::new(&mut rng, m, k, n, gather, lda_pad, ldc_pad, epilogue);
                worst = worst.max(p.compare(&p.run(&kernel), &p.reference()));
            }
        }
    }
    println!("{case} shapes: worst error/bound = {worst:.4}");
}

#[test]
fn every_epilogue_with_and_without_gather_and_strides() {
    let Some(kernel) = amx("every_epilogue_with_and_without_gather_and_strides") else {
        return;
    };
    let mut rng = Rng::new(12);
    let mut worst = 0.0f64;
    for (m, k, n) in [(13, 65, 33), (49, 27, 48), (33, 1536, 17), (196, 144, 64)] {
        for epilogue in EPILOGUES {
            for gather in [false, true] {
                for (lda_pad, ldc_pad) in [(0, 0), (3, 7)] {
                    let p = Problem::new(&mut rng, m, k, n, gather, lda_pad, ldc_pad, epilogue);
                    worst = worst.max(p.compare(&p.run(&kernel), &p.reference()));
                }
            }
        }
    }
    println!("worst error/bound = {worst:.4}");
}

#[test]
fn exact_sums_match_the_reference_bit_for_bit() {
    // Small integers: every product and partial sum is an integer below 2^24, exact in
    // any order, so any indexing slip (a wrong row, K pair, panel or tail) shows as a
    // bit difference regardless of the summation order.
    let Some(kernel) = amx("exact_sums_match_the_reference_bit_for_bit") else {
        return;
    };
    let mut rng = Rng::new(13);
    let mut int = |n: usize, r: usize| -> Vec<f32> {
        (0..n)
            .map(|_| rng.below(2 * r + 1) as f32 - r as f32)
            .collect()
    };
    for (m, k, n) in [
        (1, 1, 1),
        (17, 27, 33),
        (33, 31, 17),
        (16, 33, 16),
        (49, 1536, 48),
        (196, 144, 64),
        (31, 2100, 40),
    ] {
        for gather in [false, true] {
            let lda = k + 2;
            let src_rows = if gather { m + 5 } else { m };
            let a = int(src_rows * lda, 4);
            let rows = gather.then(|| (0..m).map(|i| ((i * 7 + 3) % src_rows) as u32).collect());
            let b = int(k * n, 4);
            let bias = int(n, 8);
            let mut rng2 = Rng::new(14);
            let p = Problem::with(
                m,
                k,
                n,
                a,
                lda,
                rows,
                b,
                bias,
                3,
                Epilogue::BiasAct(Activation::None),
                &mut rng2,
            );
            let (got, want) = (p.run(&kernel), p.reference());
            for (idx, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(
                    g.to_bits(),
                    w.to_bits(),
                    "{}: element ({}, {})",
                    p.describe(),
                    idx / p.ldc,
                    idx % p.ldc
                );
            }
        }
    }
}

#[test]
fn activations_are_rounded_to_nearest_even() {
    // K = 1, B = 1, bias = 0: the output is bf16(a) itself, exactly.
    let Some(kernel) = amx("activations_are_rounded_to_nearest_even") else {
        return;
    };
    let a: Vec<f32> = [
        0x3F80_8000u32, // 1 + 2^-8: a tie, to even (1.0)
        0x3F81_8000,    // a tie with an odd neighbour: up
        0x3F80_8001,    // above the tie: up
        0x3F80_7FFF,    // below the tie: down
        0xC020_0000,    // -2.5: exact
        0x4049_0FDB,    // pi
    ]
    .into_iter()
    .map(f32::from_bits)
    .collect();
    let m = a.len();
    let packed = pack_b(&[1.0; 3], 1, 3);
    let args = GemmArgs {
        m,
        k: 1,
        n: 3,
        a: &a,
        lda: 1,
        a_rows: None,
        b: PackedB::Bf16(&packed),
        bias: &[0.0; 3],
        ldc: 3,
        epilogue: Epilogue::BiasAct(Activation::None),
    };
    let mut c = vec![0.0; m * 3];
    kernel.run(&args, &mut c);
    for (i, &x) in a.iter().enumerate() {
        for j in 0..3 {
            assert_eq!(c[i * 3 + j].to_bits(), round(x).to_bits(), "row {i}");
        }
    }
}

#[test]
fn blocks_are_bit_identical_to_the_whole() {
    let Some(kernel) = amx("blocks_are_bit_identical_to_the_whole") else {
        return;
    };
    let mut rng = Rng::new(15);
    for (m, k, n, epilogue) in [
        (50, 70, 150, Epilogue::BiasResidual),
        (196, 384, 100, Epilogue::BiasAct(Activation::Silu)),
        (37, 1536, 70, Epilogue::BiasAct(Activation::HardSwish)),
    ] {
        let p = Problem::new(&mut rng, m, k, n, true, 1, 5, epilogue);
        let np = panels(n);
        let whole = p.run(&kernel);
        let run = |blocks: &[(std::ops::Range<usize>, std::ops::Range<usize>)]| {
            let mut c = p.c0.clone();
            for (rows, pan) in blocks {
                kernel.run_block(&p.args(), &mut c, rows.clone(), pan.clone());
            }
            c
        };
        let bits = |c: &[f32]| c.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let want = bits(&whole);
        // Panels in odd pieces, rows in uneven pieces (not multiples of 16), a 2-D grid.
        let cuts = [
            vec![(0..m, 0..1), (0..m, 1..np - 2), (0..m, np - 2..np)],
            vec![
                (0..1, 0..np),
                (1..14, 0..np),
                (14..37, 0..np),
                (37..m, 0..np),
            ],
            vec![
                (0..5, 0..3),
                (5..m, 0..3),
                (0..20, 3..np),
                (20..m - 1, 3..np),
                (m - 1..m, 3..np),
            ],
        ];
        for blocks in &cuts {
            assert_eq!(bits(&run(blocks)), want, "{}: {blocks:?}", p.describe());
        }
        // Every row split point.
        for split in (1..m).step_by(if m > 64 { 7 } else { 1 }) {
            let c = run(&[(0..split, 0..np), (split..m, 0..np)]);
            assert_eq!(bits(&c), want, "{}: rows split at {split}", p.describe());
        }
        // Empty ranges touch nothing.
        let c = run(&[(5..5, 0..np), (0..m, 3..3)]);
        assert_eq!(bits(&c), bits(&p.c0));
    }
}

#[test]
fn threaded_runs_are_bit_identical_to_one_thread() {
    // `parallel::gemm` cuts by panels or by rows in the kernel's `Split`; each
    // thread's tiles hold their AMX state on their own thread.
    let Some(kernel) = amx("threaded_runs_are_bit_identical_to_one_thread") else {
        return;
    };
    let pool = SpinPool::new(3).expect("thread pool");
    let mut rng = Rng::new(17);
    for (m, k, n) in [
        (196, 384, 100),
        (49, 512, 16),
        (16, 1536, 768),
        (100, 27, 40),
    ] {
        let p = Problem::new(&mut rng, m, k, n, false, 0, 0, Epilogue::BiasResidual);
        let whole = p.run(&kernel);
        let mut c = p.c0.clone();
        parallel::gemm(&kernel, &p.args(), &mut c, &pool);
        let bits = |c: &[f32]| c.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&c), bits(&whole), "{}", p.describe());
    }
}

#[test]
fn nothing_outside_the_block_is_written() {
    let Some(kernel) = amx("nothing_outside_the_block_is_written") else {
        return;
    };
    const SENTINEL: u32 = 0x7FC0_1234; // a quiet NaN with a payload
    let mut rng = Rng::new(16);
    for (m, k, n) in [(40, 33, 37), (17, 1536, 50), (3, 0, 20)] {
        for epilogue in EPILOGUES {
            let p = Problem::new(&mut rng, m, k, n, false, 0, 9, epilogue);
            let whole = p.run(&kernel);
            let np = panels(n);
            let blocks = [
                (1..m.min(21), 1..np.min(3)),
                (0..m, np - 1..np),
                (m - 1..m, 0..1),
            ];
            for (rows, pan) in blocks {
                // The block holds the starting values, everything else (other rows,
                // other panels, columns past n and a tail past the last row) the
                // sentinel.
                let in_block = |idx: usize| {
                    let (i, j) = (idx / p.ldc, idx % p.ldc);
                    rows.contains(&i) && pan.contains(&(j / NR)) && j < n
                };
                let mut c: Vec<f32> = (0..p.c0.len() + 40)
                    .map(|idx| {
                        if idx < p.c0.len() && in_block(idx) {
                            p.c0[idx]
                        } else {
                            f32::from_bits(SENTINEL)
                        }
                    })
                    .collect();
                kernel.run_block(&p.args(), &mut c, rows.clone(), pan.clone());
                for (idx, v) in c.iter().enumerate() {
                    if idx < p.c0.len() && in_block(idx) {
                        assert_eq!(v.to_bits(), whole[idx].to_bits(), "{}", p.describe());
                    } else {
                        assert_eq!(
                            v.to_bits(),
                            SENTINEL,
                            "{}: block {rows:?} x {pan:?} wrote ({}, {})",
                            p.describe(),
                            idx / p.ldc,
                            idx % p.ldc
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn zero_k_gives_the_epilogue_of_the_bias() {
    let Some(kernel) = amx("zero_k_gives_the_epilogue_of_the_bias") else {
        return;
    };
    let bias: Vec<f32> = (0..20).map(|j| j as f32 - 10.0).collect();
    for epilogue in EPILOGUES {
        let args = GemmArgs {
            m: 3,
            k: 0,
            n: 20,
            a: &[],
            lda: 0,
            a_rows: None,
            b: PackedB::Bf16(&[]),
            bias: &bias,
            ldc: 20,
            epilogue,
        };
        let mut got = vec![1.0; 60];
        let mut want = got.clone();
        kernel.run(&args, &mut got);
        reference::gemm_bf16_activations(&args, &mut want);
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 4.0 * ulp(*w) as f32,
                "{epilogue:?}: {g} vs {w}"
            );
        }
    }
}

#[test]
fn nan_stays_in_its_row() {
    // A NaN in one row of A must not leak into the other rows of its tile (the zero
    // padding rows and K tail multiply zeros only).
    let Some(kernel) = amx("nan_stays_in_its_row") else {
        return;
    };
    let (m, k, n) = (20, 40, 20);
    let mut a = vec![1.0f32; m * k];
    a[17 * k + 35] = f32::NAN;
    a[3 * k] = f32::INFINITY;
    let packed = pack_b(&vec![0.5; k * n], k, n);
    let bias = vec![0.0; n];
    for act in [Activation::None, Activation::HardSwish, Activation::Silu] {
        let args = GemmArgs {
            m,
            k,
            n,
            a: &a,
            lda: k,
            a_rows: None,
            b: PackedB::Bf16(&packed),
            bias: &bias,
            ldc: n,
            epilogue: Epilogue::BiasAct(act),
        };
        let mut c = vec![0.0; m * n];
        kernel.run(&args, &mut c);
        for i in 0..m {
            let row = &c[i * n..][..n];
            match i {
                17 => assert!(row.iter().all(|v| v.is_nan()), "{act:?} row {i}"),
                3 => assert!(row.iter().all(|v| !v.is_finite()), "{act:?} row {i}"),
                _ => assert!(row.iter().all(|v| v.is_finite()), "{act:?} row {i}"),
            }
        }
    }
}
