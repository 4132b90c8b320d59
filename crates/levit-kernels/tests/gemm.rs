//! Every GEMM kernel this CPU runs ([`GemmKernel::all`]: f32 and bf16, every ISA)
//! against the scalar reference (and the `gemm` crate as an independent oracle) over
//! awkward shapes, all epilogues, row gathers, `lda > k` and `ldc > n`. A forced
//! `LEVIT_ISA` level keeps only the kernels it includes (valgrind runs this file with
//! `LEVIT_ISA=avx2` and `portable`: it cannot decode AVX-512).
//!
//! Three kinds of kernel, three references:
//! - f32 kernels: `reference::gemm` on the f32 panels, within the f32 bound;
//! - widening bf16 kernels (weights widened exactly to f32, f32 FMAs on f32 A):
//!   `reference::gemm` on the bf16 panels, within the f32 bound, and bit for bit the
//!   f32 kernel of the same ISA on the widened weights;
//! - bf16 dot kernels (`Avx512Bf16`, `Amx`: A rounded to bf16 too, pairs multiplied
//!   by the hardware): `reference::gemm_bf16_activations`, within the dot bound.
//!
//! f32 bound. For `y = Σ_k a_k b_k + bias` summed in order, both the reference
//! (mul then add) and a SIMD path (FMA chain) are within `γ_{K+1} · S` of the exact
//! value, where `S = Σ|a_k b_k| + |bias|` and `γ_n = n·u/(1-n·u)`, `u = 2^-24`
//! (Higham, *Accuracy and Stability*, §3.1). So they differ by at most `2·γ_{K+1}·S`
//! before the epilogue. The activations are at most 1.5-Lipschitz (hardswish'
//! peaks at 1.5) and are evaluated with a few ulp of their own error (SiLU's exp is
//! within 2 ulp, plus a divide), so we accept
//! `|got - want| <= 1.5 · 2γ_{K+1} · S + 8 ulp(want) (+ 1 ulp(c) for the residual)`.
//!
//! Dot bound. The kernel and `gemm_bf16_activations` sum the same K + 1 terms (the
//! products `a'_k b'_k` of bf16 values, exact in f32 since 8-bit significands
//! multiply into 16 bits, and the bias) in different orders: the hardware groups the
//! pairs its own way (`vdpbf16ps` adds the odd product first, AMX sums a tile row).
//! Any order of the n - 1 additions of n terms, each rounded once, is within
//! `γ_{n-1} · Σ|terms|` of the exact sum (Higham §4.2), so the two differ by at most
//! `2·γ_{K+1}·S'`, `S' = Σ|a'_k b'_k| + |bias|`: the f32 bound with `S'`. The dot
//! instructions also flush denormal inputs and results to zero; each flush moves one
//! of at most `K + 1` terms or sums by less than `2^-126 · max(1, |a'|, |b'|)`, so we add
//! `1.5 · (K+1) · 2^-125 · (1 + max|a| + max|b|)`.
//!
//! Rounding to bf16 grows a magnitude by at most a factor `1 + 2^-8`, so `S` computed
//! once from the f32 operands bounds the others: the widening kernels' sum by
//! `(1 + 2^-8) · S` and `S'` by `(1 + 2^-8)^2 · S`. These bounds are rigorous, not
//! tuned constants (the largest observed error/bound ratio is printed with
//! `--nocapture`).

mod common;

use common::{ulp, Rng, U};
use levit_kernels::bf16;
use levit_kernels::gemm::{self, Epilogue, GemmArgs, GemmKernel, PackedB};
use levit_kernels::{packed_len, panels, Activation, Isa, Precision};
use proptest::prelude::*;

const EPILOGUES: [Epilogue; 4] = [
    Epilogue::BiasAct(Activation::None),
    Epilogue::BiasAct(Activation::HardSwish),
    Epilogue::BiasAct(Activation::Silu),
    Epilogue::BiasResidual,
];

/// What the kernels may not write: the output's padding (`ldc > n`) and the floats
/// after its last row hold this NaN, which must come back bit for bit.
const SENTINEL: f32 = f32::from_bits(0x7FC0_BEEF);

/// Floats of sentinel after the output's last row.
const TAIL: usize = 16;

/// Every f32 and bf16 kernel this CPU runs whose ISA the forced `LEVIT_ISA` level (if
/// any) includes (the int8 kernels quantize their activations and have their own
/// tests, `tests/gemm_int8.rs`).
fn kernels() -> Vec<GemmKernel> {
    let levels = Isa::supported();
    GemmKernel::all()
        .into_iter()
        .filter(|k| k.precision() != Precision::Int8)
        .filter(|k| levels.iter().any(|level| level.includes(k.isa())))
        .collect()
}

/// The precisions this file tests (see [`kernels`]).
const PRECISIONS: [Precision; 2] = [Precision::F32, Precision::Bf16];

/// What a kernel computes, and so which reference and bound it is held to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// f32 weights, f32 FMAs.
    F32,
    /// bf16 weights widened exactly to f32, f32 FMAs on f32 activations.
    Widening,
    /// bf16 weights and bf16-rounded activations in a hardware dot instruction.
    Dot,
}

impl Kind {
    fn of(kernel: &GemmKernel) -> Kind {
        match (kernel.precision(), kernel.isa()) {
            (Precision::F32, _) => Kind::F32,
            (Precision::Bf16, Isa::Amx | Isa::Avx512Bf16) => Kind::Dot,
            (Precision::Bf16, _) => Kind::Widening,
            (Precision::Int8, _) => unreachable!("int8 kernels are tested in gemm_int8.rs"),
        }
    }

    /// Factor by which `S` of the f32 operands bounds the kind's sum of magnitudes.
    fn growth(self) -> f64 {
        let g = 1.0 + (-8f64).exp2();
        match self {
            Kind::F32 => 1.0,
            Kind::Widening => g,
            Kind::Dot => g * g,
        }
    }
}

/// A row-major `[k, n]` matrix rounded to bf16 and back (exact).
fn rounded(x: &[f32]) -> Vec<f32> {
    x.iter()
        .map(|&v| bf16::from_bf16(bf16::to_bf16(v)))
        .collect()
}

/// One test problem with its own storage, packed in both precisions.
struct Problem {
    m: usize,
    k: usize,
    n: usize,
    a: Vec<f32>,
    lda: usize,
    rows: Option<Vec<u32>>,
    b: Vec<f32>,
    packed: Vec<f32>,
    packed_bf16: Vec<u16>,
    /// f32 panels of the bf16-rounded weights.
    packed_widened: Vec<f32>,
    bias: Vec<f32>,
    ldc: usize,
    /// The output's initial contents: random inside, [`SENTINEL`] in the padding and
    /// the [`TAIL`].
    c0: Vec<f32>,
    epilogue: Epilogue,
    /// `max|a| + max|b|`, for the dot bound's denormal term.
    max_abs: f64,
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
        // With a gather the source has more rows than the output, read out of order.
        let src_rows = if gather { 2 * m + 1 } else { m };
        let a = rng.vec(src_rows * lda, 1.0);
        let rows = gather.then(|| (0..m).map(|_| rng.below(src_rows) as u32).collect());
        let b = rng.vec(k * n, 1.0);
        Problem::with(m, k, n, a, lda, rows, b, rng, ldc_pad, epilogue)
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
        rng: &mut Rng,
        ldc_pad: usize,
        epilogue: Epilogue,
    ) -> Problem {
        let packed = gemm::pack_b(&b, k, n);
        assert_eq!(packed.len(), packed_len(k, n));
        let packed_bf16 = bf16::pack_b(&b, k, n);
        let packed_widened = gemm::pack_b(&rounded(&b), k, n);
        let bias = rng.vec(n, 1.0);
        let ldc = n + ldc_pad;
        let mut c0 = rng.vec((m - 1) * ldc + n + TAIL, 4.0);
        for (idx, c) in c0.iter_mut().enumerate() {
            if idx / ldc >= m || idx % ldc >= n {
                *c = SENTINEL;
            }
        }
        let max = |x: &[f32]| x.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64));
        let max_abs = max(&a) + max(&b);
        Problem {
            max_abs,
            m,
            k,
            n,
            a,
            lda,
            rows,
            b,
            packed,
            packed_bf16,
            packed_widened,
            bias,
            ldc,
            c0,
            epilogue,
        }
    }

    fn args_with<'a>(&'a self, b: PackedB<'a>) -> GemmArgs<'a> {
        GemmArgs {
            m: self.m,
            k: self.k,
            n: self.n,
            a: &self.a,
            lda: self.lda,
            a_rows: self.rows.as_deref(),
            b,
            bias: &self.bias,
            ldc: self.ldc,
            epilogue: self.epilogue,
        }
    }

    /// The operands with the weights in `precision`.
    fn args(&self, precision: Precision) -> GemmArgs<'_> {
        self.args_with(match precision {
            Precision::F32 => PackedB::F32(&self.packed),
            Precision::Bf16 => PackedB::Bf16(&self.packed_bf16),
            Precision::Int8 => unreachable!("int8 kernels are tested in gemm_int8.rs"),
        })
    }

    fn a_row(&self, i: usize) -> &[f32] {
        &self.a[self.args(Precision::F32).a_row_offset(i)..][..self.k]
    }

    /// `S[i][j] = Σ_k |a_ik b_kj| + |bias_j|` of the f32 operands (the module doc).
    fn magnitudes(&self) -> Vec<f64> {
        let mut s = vec![0.0f64; self.m * self.n];
        for (i, s) in s.chunks_exact_mut(self.n).enumerate() {
            for (s, &bias) in s.iter_mut().zip(&self.bias) {
                *s = (bias as f64).abs();
            }
            for (&a, b) in self.a_row(i).iter().zip(self.b.chunks_exact(self.n)) {
                for (s, &b) in s.iter_mut().zip(b) {
                    *s += (a as f64 * b as f64).abs();
                }
            }
        }
        s
    }

    /// The error bound of the module doc for element (i, j) of a `kind` kernel.
    fn tolerance(&self, kind: Kind, s: &[f64], i: usize, j: usize, want: f32) -> f64 {
        let n = (self.k + 1) as f64;
        let gamma = n * U / (1.0 - n * U);
        let mut tol = 1.5 * 2.0 * gamma * kind.growth() * s[i * self.n + j] + 8.0 * ulp(want);
        if kind == Kind::Dot {
            tol += 1.5 * n * (-125f64).exp2() * (1.0 + self.max_abs);
        }
        if self.epilogue == Epilogue::BiasResidual {
            tol += ulp(self.c0[i * self.ldc + j]);
        }
        tol
    }

    fn run_with(&self, kernel: &GemmKernel, args: &GemmArgs) -> Vec<f32> {
        let mut c = self.c0.clone();
        kernel.run(args, &mut c);
        c
    }

    fn run(&self, kernel: &GemmKernel) -> Vec<f32> {
        self.run_with(kernel, &self.args(kernel.precision()))
    }

    fn reference(&self, kind: Kind) -> Vec<f32> {
        let mut c = self.c0.clone();
        match kind {
            Kind::F32 => gemm::reference::gemm(&self.args(Precision::F32), &mut c),
            Kind::Widening => gemm::reference::gemm(&self.args(Precision::Bf16), &mut c),
            Kind::Dot => {
                gemm::reference::gemm_bf16_activations(&self.args(Precision::Bf16), &mut c)
            }
        }
        c
    }

    /// Checks `got` against `want` inside the output and the untouched sentinels
    /// outside it. Returns the largest error/bound ratio.
    fn compare(&self, what: &str, kind: Kind, s: &[f64], got: &[f32], want: &[f32]) -> f64 {
        let mut worst = 0.0f64;
        assert_eq!(got.len(), self.c0.len());
        for (idx, (&g, &w)) in got.iter().zip(want).enumerate() {
            let (i, j) = (idx / self.ldc, idx % self.ldc);
            if i >= self.m || j >= self.n {
                assert_eq!(
                    g.to_bits(),
                    SENTINEL.to_bits(),
                    "{what}: padding ({i},{j}) written"
                );
                continue;
            }
            let tol = self.tolerance(kind, s, i, j, w);
            let err = (g as f64 - w as f64).abs();
            assert!(
                err <= tol,
                "{what}: m={} k={} n={} gather={} lda={} ldc={} {:?}: C[{i},{j}] = {g}, want {w} (err {err:e} > tol {tol:e})",
                self.m, self.k, self.n, self.rows.is_some(), self.lda, self.ldc, self.epilogue
            );
            worst = worst.max(err / tol);
        }
        worst
    }

    /// Runs every kernel of `kernels` and checks it against its kind's reference (and
    /// a widening kernel bit for bit against its ISA's f32 kernel on the widened
    /// weights). Returns each kernel's largest error/bound ratio.
    fn check(&self, kernels: &[GemmKernel]) -> Vec<f64> {
        let s = self.magnitudes();
        let mut wants: Vec<(Kind, Vec<f32>)> = Vec::new();
        let mut worst = vec![0.0f64; kernels.len()];
        for (kernel, worst) in kernels.iter().zip(&mut worst) {
            let kind = Kind::of(kernel);
            if !wants.iter().any(|(k, _)| *k == kind) {
                wants.push((kind, self.reference(kind)));
            }
            let want = &wants.iter().find(|(k, _)| *k == kind).unwrap().1;
            let got = self.run(kernel);
            *worst = self.compare(kernel.name(), kind, &s, &got, want);
            if kind == Kind::Widening {
                let f32_kernel = f32_sibling(kernel);
                let widened = self.run_with(
                    &f32_kernel,
                    &self.args_with(PackedB::F32(&self.packed_widened)),
                );
                assert_same_bits(
                    &format!("{} vs {}", kernel.name(), f32_kernel.name()),
                    &got,
                    &widened,
                );
            }
        }
        worst
    }
}

/// The f32 kernel of a widening kernel's ISA.
fn f32_sibling(kernel: &GemmKernel) -> GemmKernel {
    GemmKernel::all()
        .into_iter()
        .find(|k| k.precision() == Precision::F32 && k.isa() == kernel.isa())
        .unwrap_or_else(|| panic!("{}: no f32 kernel of its ISA", kernel.name()))
}

fn assert_same_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (idx, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            g.to_bits(),
            w.to_bits(),
            "{what}: element {idx}: {g} vs {w}"
        );
    }
}

fn mr_values() -> Vec<usize> {
    // Row-tile heights of the paths (12, 6, 4): MR-1, MR, MR+1 of each, and both sides
    // of the 64-row limit of AVX-512's wide tiles.
    let mut v = vec![1, 2, 16, 49, 64, 65, 196];
    for mr in [12, 6, 4] {
        v.extend([mr - 1, mr, mr + 1]);
    }
    v.sort();
    v.dedup();
    v
}

#[test]
fn gemm_matches_reference_on_awkward_shapes() {
    let kernels = kernels();
    let mut rng = Rng::new(1);
    let mut worst = vec![0.0f64; kernels.len()];
    let mut case = 0usize;
    for m in mr_values() {
        for n in [1, 15, 16, 17, 31, 32, 33, 48, 1000] {
            // K around the bf16 pair (odd K ends on half a pair), the 32-deep bf16
            // block, and the dot kernel's 512-step A chunk; the two long K alternate.
            let long = [384, 576][case % 2];
            for k in [0, 1, 2, 3, 27, 31, 32, 33, 63, 64, 65, long] {
                // Rotate the variants so every epilogue meets every shape class,
                // with and without a gather and padded strides.
                let epilogue = EPILOGUES[case % 4];
                let gather = (case / 4) % 2 == 1;
                let ldc_pad = [0, 3, 16][case % 3];
                let lda_pad = [0, 5][(case / 3) % 2];
                case += 1;
                let p = Problem::new(&mut rng, m, k, n, gather, lda_pad, ldc_pad, epilogue);
                for (worst, w) in worst.iter_mut().zip(p.check(&kernels)) {
                    *worst = w.max(*worst);
                }
            }
        }
    }
    for (kernel, worst) in kernels.iter().zip(&worst) {
        println!("{case} shapes, {kernel:?}: worst error/bound = {worst:.4}");
    }
}

#[test]
fn every_epilogue_with_and_without_gather() {
    let kernels = kernels();
    let mut rng = Rng::new(2);
    for (m, k, n) in [(13, 65, 33), (49, 27, 48), (7, 576, 17), (5, 1101, 40)] {
        for epilogue in EPILOGUES {
            for gather in [false, true] {
                for ldc_pad in [0, 7] {
                    let p = Problem::new(&mut rng, m, k, n, gather, 1, ldc_pad, epilogue);
                    p.check(&kernels);
                }
            }
        }
    }
}

#[test]
fn hardswish_epilogue_is_bit_exact_when_the_sum_is_exact() {
    // k = 1 with a = 1: acc + bias is exact on every kernel (a bf16 weight times 1 is
    // exact too), so the epilogue alone decides the bits, and hardswish must match
    // PyTorch's formula exactly.
    let mut rng = Rng::new(3);
    let (m, k, n) = (5, 1, 37);
    let a = vec![1.0f32; m];
    let b: Vec<f32> = (0..n).map(|j| (j as f32 - 18.0) * 0.37).collect();
    let p = Problem::with(
        m,
        k,
        n,
        a,
        1,
        None,
        b,
        &mut rng,
        0,
        Epilogue::BiasAct(Activation::HardSwish),
    );
    for kernel in kernels() {
        let args = p.args(kernel.precision());
        let c = p.run(&kernel);
        for i in 0..m {
            for j in 0..n {
                let want = levit_kernels::activation::hardswish(args.b.at(k, 0, j) + p.bias[j]);
                assert_eq!(c[i * n + j].to_bits(), want.to_bits(), "{kernel:?} col {j}");
            }
        }
    }
}

#[test]
fn blocks_are_bit_identical_to_the_whole() {
    let mut rng = Rng::new(4);
    // The second K crosses the dot kernel's A chunks twice.
    for (m, k, n) in [(50, 70, 150), (30, 1101, 40)] {
        let p = Problem::new(&mut rng, m, k, n, true, 0, 5, Epilogue::BiasResidual);
        let np = panels(p.n);
        for kernel in kernels() {
            let args = p.args(kernel.precision());
            let whole = p.run(&kernel);
            let blocks = |blocks: &[(std::ops::Range<usize>, std::ops::Range<usize>)]| {
                let mut c = p.c0.clone();
                for (rows, pan) in blocks {
                    kernel.run_block(&args, &mut c, rows.clone(), pan.clone());
                }
                c
            };
            // Panels split in three, rows split in uneven pieces, and a 2-D grid.
            let by_panels = [(0..m, 0..1), (0..m, 1..np - 1), (0..m, np - 1..np)];
            assert_same_bits(&format!("{kernel:?}: panels"), &blocks(&by_panels), &whole);
            let by_rows = [
                (0..1, 0..np),
                (1..14, 0..np),
                (14..23, 0..np),
                (23..m, 0..np),
            ];
            assert_same_bits(&format!("{kernel:?}: rows"), &blocks(&by_rows), &whole);
            let grid = [(0..20, 0..1), (0..20, 1..np), (20..m, 0..1), (20..m, 1..np)];
            assert_same_bits(&format!("{kernel:?}: grid"), &blocks(&grid), &whole);
            // Empty ranges touch nothing.
            let empty = [(5..5, 0..np), (0..m, 2..2)];
            assert_same_bits(&format!("{kernel:?}: empty"), &blocks(&empty), &p.c0);
        }
    }
}

#[test]
fn results_are_deterministic_across_row_splits() {
    // Tiles of different heights compute each element with the same chain.
    let mut rng = Rng::new(5);
    let p = Problem::new(
        &mut rng,
        37,
        129,
        64,
        false,
        0,
        0,
        Epilogue::BiasAct(Activation::Silu),
    );
    for kernel in kernels() {
        let args = p.args(kernel.precision());
        let whole = p.run(&kernel);
        for split in 1..37 {
            let mut c = p.c0.clone();
            kernel.run_block(&args, &mut c, 0..split, 0..panels(p.n));
            kernel.run_block(&args, &mut c, split..37, 0..panels(p.n));
            assert_same_bits(&format!("{kernel:?}: split at {split}"), &c, &whole);
        }
    }
}

#[test]
fn isa_entry_points_run_the_selected_kernel() {
    // gemm::gemm / gemm_rows / gemm_panels / gemm_block on a level are its selected
    // kernel's run and run_block, for both precisions.
    let mut rng = Rng::new(8);
    let p = Problem::new(&mut rng, 30, 45, 70, true, 2, 3, Epilogue::BiasResidual);
    let np = panels(p.n);
    for isa in Isa::supported() {
        for precision in PRECISIONS {
            let kernel = GemmKernel::select(precision, isa).unwrap();
            let args = p.args(precision);
            let whole = p.run(&kernel);
            let what = format!("{isa} {precision} ({kernel:?})");
            let mut c = p.c0.clone();
            gemm::gemm(isa, &args, &mut c);
            assert_same_bits(&what, &c, &whole);
            let mut c = p.c0.clone();
            gemm::gemm_rows(isa, &args, &mut c, 0..7);
            gemm::gemm_rows(isa, &args, &mut c, 7..30);
            assert_same_bits(&what, &c, &whole);
            let mut c = p.c0.clone();
            gemm::gemm_panels(isa, &args, &mut c, 0..3);
            gemm::gemm_panels(isa, &args, &mut c, 3..np);
            assert_same_bits(&what, &c, &whole);
            let mut c = p.c0.clone();
            gemm::gemm_block(isa, &args, &mut c, 0..30, 0..1);
            gemm::gemm_block(isa, &args, &mut c, 0..30, 1..np);
            assert_same_bits(&what, &c, &whole);
        }
    }
}

#[test]
fn selection_respects_the_level_and_names_say_isa_and_precision() {
    for level in Isa::supported() {
        for precision in PRECISIONS {
            let kernel = GemmKernel::select(precision, level)
                .unwrap_or_else(|| panic!("no {precision} kernel for {level}"));
            assert_eq!(kernel.precision(), precision, "{level}: {kernel:?}");
            assert!(
                level.includes(kernel.isa()),
                "{level} selected {kernel:?} of {}",
                kernel.isa()
            );
            // The best: no kernel the level includes comes before it in the registry.
            let first = GemmKernel::all()
                .into_iter()
                .find(|k| k.precision() == precision && level.includes(k.isa()));
            assert_eq!(first, Some(kernel));
        }
    }
    let all = GemmKernel::all();
    let mut names: Vec<&str> = all.iter().map(|k| k.name()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), all.len(), "duplicate kernel names in {all:?}");
    for kernel in &all {
        let parts: Vec<&str> = kernel.name().split('_').collect();
        assert!(
            parts.contains(&kernel.isa().name()),
            "{kernel:?}: no ISA {}",
            kernel.isa()
        );
        assert!(
            parts
                .iter()
                .any(|part| part.starts_with(kernel.precision().name())),
            "{kernel:?}: no precision {}",
            kernel.precision()
        );
        assert!(kernel.isa().is_supported(), "{kernel:?}");
        let split = kernel.split();
        assert!(split.rows > 0 && split.panels > 0, "{kernel:?}: {split:?}");
    }
    // Every widening kernel has an f32 kernel of its ISA, its bit-exact twin.
    for kernel in all
        .iter()
        .filter(|k| k.precision() != Precision::Int8 && Kind::of(k) == Kind::Widening)
    {
        f32_sibling(kernel);
    }
}

#[test]
fn weights_of_another_precision_are_refused() {
    let mut rng = Rng::new(9);
    let p = Problem::new(&mut rng, 3, 5, 20, false, 0, 0, Epilogue::BiasResidual);
    for kernel in kernels() {
        let other = match kernel.precision() {
            Precision::F32 => Precision::Bf16,
            Precision::Bf16 | Precision::Int8 => Precision::F32,
        };
        let args = p.args(other);
        assert!(kernel.check(&args, p.c0.len()).is_err(), "{kernel:?}");
        let refused = std::panic::catch_unwind(|| p.run_with(&kernel, &args));
        assert!(refused.is_err(), "{kernel:?} ran {other} weights");
    }
}

#[test]
fn zero_k_gives_the_epilogue_of_the_bias() {
    let bias: Vec<f32> = (0..20).map(|j| j as f32 - 10.0).collect();
    for kernel in kernels() {
        for epilogue in EPILOGUES {
            let args = GemmArgs {
                m: 3,
                k: 0,
                n: 20,
                a: &[],
                lda: 0,
                a_rows: None,
                b: match kernel.precision() {
                    Precision::F32 => PackedB::F32(&[]),
                    Precision::Bf16 => PackedB::Bf16(&[]),
                    Precision::Int8 => unreachable!("not in kernels()"),
                },
                bias: &bias,
                ldc: 20,
                epilogue,
            };
            let mut got = vec![1.0; 60];
            let mut want = got.clone();
            kernel.run(&args, &mut got);
            gemm::reference::gemm(&args, &mut want);
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 4.0 * ulp(*w) as f32,
                    "{kernel:?} {epilogue:?}: {g} vs {w}"
                );
            }
        }
    }
}

#[test]
fn nan_propagates() {
    let (m, k, n) = (3, 5, 20);
    let mut a = vec![1.0f32; m * k];
    a[k + 2] = f32::NAN; // row 1
    let b = vec![0.5; k * n];
    let mut rng = Rng::new(10);
    for act in [Activation::None, Activation::HardSwish, Activation::Silu] {
        let p = Problem::with(
            m,
            k,
            n,
            a.clone(),
            k,
            None,
            b.clone(),
            &mut rng,
            0,
            Epilogue::BiasAct(act),
        );
        for kernel in kernels() {
            let c = p.run(&kernel);
            assert!(c[n..2 * n].iter().all(|v| v.is_nan()), "{kernel:?} {act:?}");
            assert!(
                c[..n].iter().chain(&c[2 * n..m * n]).all(|v| v.is_finite()),
                "{kernel:?} {act:?}"
            );
        }
    }
}

/// Row-major product through the `gemm` crate: an oracle independent of our packing.
fn oracle(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut dst = vec![0.0f32; m * n];
    // SAFETY: dst is m x n row-major (rs = n, cs = 1), a is m x k, b is k x n, all
    // dense; read_dst = false so dst's contents are ignored.
    unsafe {
        gemm_crate::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm_crate::Parallelism::None,
        );
    }
    dst
}

extern crate gemm as gemm_crate;

#[test]
fn matches_the_gemm_crate() {
    let mut rng = Rng::new(6);
    let kernels = kernels();
    for (m, k, n) in [(196, 384, 768), (49, 65, 1000), (13, 576, 33), (1, 27, 16)] {
        let p = Problem::new(
            &mut rng,
            m,
            k,
            n,
            false,
            0,
            0,
            Epilogue::BiasAct(Activation::None),
        );
        let s = p.magnitudes();
        for kind in [Kind::F32, Kind::Widening, Kind::Dot] {
            // The oracle on the operands the kind multiplies.
            let (a, b) = match kind {
                Kind::F32 => (p.a.clone(), p.b.clone()),
                Kind::Widening => (p.a.clone(), rounded(&p.b)),
                Kind::Dot => (rounded(&p.a), rounded(&p.b)),
            };
            let prod = oracle(m, k, n, &a, &b);
            let want: Vec<f32> = (0..m * n).map(|idx| prod[idx] + p.bias[idx % n]).collect();
            for kernel in kernels.iter().filter(|k| Kind::of(k) == kind) {
                let got = p.run(kernel);
                for i in 0..m {
                    for j in 0..n {
                        let (g, w) = (got[i * n + j], want[i * n + j]);
                        // The oracle blocks K its own way: allow both sides the bound.
                        let tol = 2.0 * p.tolerance(kind, &s, i, j, w);
                        assert!(
                            ((g - w) as f64).abs() <= tol,
                            "{kernel:?} {m}x{k}x{n} ({i},{j}): {g} vs {w}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn forced_paths_parse_and_run() {
    for isa in Isa::ALL {
        assert_eq!(Isa::parse(isa.name()), Ok(isa));
        assert_eq!(Isa::parse(&isa.name().to_uppercase()), Ok(isa));
    }
    assert_eq!(Isa::parse(" avx-512 "), Ok(Isa::Avx512));
    // "scalar" used to select the `wide` path, which is not scalar code: refused now.
    assert!(Isa::parse("scalar").is_err());
    assert!(Isa::parse("sse9").is_err());
    assert!(Isa::Portable.is_supported());
    // Every path a LEVIT_ISA value can select runs and agrees with the reference, in
    // both precisions.
    let mut rng = Rng::new(7);
    let p = Problem::new(
        &mut rng,
        17,
        33,
        40,
        true,
        0,
        2,
        Epilogue::BiasAct(Activation::HardSwish),
    );
    let s = p.magnitudes();
    for isa in Isa::ALL {
        let name = isa.name();
        match Isa::parse(name).unwrap().require_supported() {
            Ok(isa) => {
                for precision in PRECISIONS {
                    let kernel = GemmKernel::select(precision, isa).unwrap();
                    let kind = Kind::of(&kernel);
                    let mut got = p.c0.clone();
                    gemm::gemm(isa, &p.args(precision), &mut got);
                    p.compare(name, kind, &s, &got, &p.reference(kind));
                }
            }
            Err(e) => println!("skipping {name}: {e}"),
        }
    }
}

#[test]
#[should_panic(expected = "inconsistent operands")]
fn short_output_panics() {
    let packed = gemm::pack_b(&[1.0; 4], 2, 2);
    let args = GemmArgs {
        m: 2,
        k: 2,
        n: 2,
        a: &[1.0; 4],
        lda: 2,
        a_rows: None,
        b: PackedB::F32(&packed),
        bias: &[0.0; 2],
        ldc: 2,
        epilogue: Epilogue::BiasAct(Activation::None),
    };
    gemm::gemm(Isa::best(), &args, &mut [0.0; 3]);
}

/// A GEMM of contiguous row-major `a` (`m x k`) into a dense `m x n` output.
fn dense_args<'a>(
    m: usize,
    k: usize,
    n: usize,
    a: &'a [f32],
    packed: &'a [f32],
    bias: &'a [f32],
    epilogue: Epilogue,
) -> GemmArgs<'a> {
    GemmArgs {
        m,
        k,
        n,
        a,
        lda: k,
        a_rows: None,
        b: PackedB::F32(packed),
        bias,
        ldc: n,
        epilogue,
    }
}

#[test]
fn tap_table_gemm_equals_the_gemm_of_the_gathered_rows() {
    // A[i][k] = a[koff[k] + 2i] with an arbitrary (non-monotonic) tap table: gather the
    // rows and compare bitwise with the row GEMM on every path that has a tap kernel.
    let mut rng = Rng::new(21);
    let (m, k, n) = (29, 31, 37);
    let koff: Vec<u32> = (0..k as u32)
        .map(|j| (j * 17) % 53 + (j % 3) * 60)
        .collect();
    let a_len = *koff.iter().max().unwrap() as usize + 2 * (m - 1) + 1;
    let a = rng.vec(a_len, 1.0);
    let (a_ref, koff_ref) = (&a, &koff);
    let rows: Vec<f32> = (0..m)
        .flat_map(|i| koff_ref.iter().map(move |&o| a_ref[o as usize + 2 * i]))
        .collect();
    let b = rng.vec(k * n, 0.3);
    let packed = gemm::pack_b(&b, k, n);
    let bias = rng.vec(n, 0.1);
    for isa in Isa::supported()
        .into_iter()
        .filter(|&i| gemm::TapsArgs::supported(i))
    {
        for epilogue in [
            Epilogue::BiasAct(Activation::HardSwish),
            Epilogue::BiasResidual,
        ] {
            let start = rng.vec(m * n, 1.0);
            let mut want = start.clone();
            let args = dense_args(m, k, n, &rows, &packed, &bias, epilogue);
            gemm::gemm(isa, &args, &mut want);
            let mut got = start.clone();
            let taps = gemm::TapsArgs {
                m,
                k,
                n,
                a: &a,
                koff: &koff,
                b: &packed,
                bias: &bias,
                ldc: n,
                epilogue,
            };
            gemm::gemm_taps(isa, &taps, &mut got);
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.to_bits(), w.to_bits(), "{isa} {epilogue:?}");
            }
            // Every bound is checked: a short tap table, a tap past `a`, a short C.
            let short = gemm::TapsArgs {
                koff: &koff[..k - 1],
                ..taps
            };
            assert!(short.check(m * n).is_err());
            let past = gemm::TapsArgs {
                a: &a[..a_len - 1],
                ..taps
            };
            assert!(past.check(m * n).is_err());
            assert!(taps.check(m * n - 1).is_err());
            assert!(taps.check(m * n).is_ok());
        }
    }
}

#[test]
fn segmented_gemm_equals_the_gemm_of_the_gathered_rows() {
    // Rows of runs of 8 floats, 50 apart, consecutive rows 6 floats apart (they
    // overlap, like the pixels of a convolution). Three runs (a 3x3 convolution) take
    // the kernels' unrolled loop, any other count the general one.
    let mut rng = Rng::new(23);
    let (m, n, len, stride, lda) = (30, 37, 8, 50, 6);
    for run_count in [1, 2, 3, 4] {
        let k = run_count * len;
        let span = (run_count - 1) * stride + len;
        let a = rng.vec((m - 1) * lda + span, 1.0);
        let rows: Vec<f32> = (0..m)
            .flat_map(|i| (0..k).map(move |kk| (i, kk)))
            .map(|(i, kk)| a[i * lda + (kk / len) * stride + kk % len])
            .collect();
        let packed = gemm::pack_b(&rng.vec(k * n, 0.3), k, n);
        let bias = rng.vec(n, 0.1);
        let runs = gemm::Segments { len, stride };
        for isa in Isa::supported()
            .into_iter()
            .filter(|&i| gemm::segmented_supported(i))
        {
            let epilogue = Epilogue::BiasAct(Activation::HardSwish);
            let args = dense_args(m, k, n, &rows, &packed, &bias, epilogue);
            let mut want = vec![0.0; m * n];
            gemm::gemm(isa, &args, &mut want);
            let mut got = vec![0.0; m * n];
            let in_place = GemmArgs { a: &a, lda, ..args };
            gemm::gemm_segmented(isa, &in_place, runs, &mut got);
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.to_bits(), w.to_bits(), "{isa}, {run_count} runs");
            }
            // One float short of the last row's span is refused.
            let short = GemmArgs {
                a: &a[..a.len() - 1],
                ..in_place
            };
            let refused = std::panic::catch_unwind(|| {
                gemm::gemm_segmented(isa, &short, runs, &mut vec![0.0; m * n]);
            });
            assert!(refused.is_err(), "{isa}: a short A must be refused");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]
    #[test]
    fn random_shapes_match_reference(
        m in 1usize..60,
        k in 0usize..200,
        n in 1usize..100,
        gather in any::<bool>(),
        lda_pad in 0usize..4,
        ldc_pad in 0usize..20,
        epi in 0usize..4,
        seed in any::<u64>(),
        split in 0usize..100,
    ) {
        let mut rng = Rng::new(seed);
        let p = Problem::new(&mut rng, m, k, n, gather, lda_pad, ldc_pad, EPILOGUES[epi]);
        let kernels = kernels();
        p.check(&kernels);
        for kernel in &kernels {
            // Any panel split gives the same bits.
            let args = p.args(kernel.precision());
            let s = split % (panels(n) + 1);
            let mut c = p.c0.clone();
            kernel.run_block(&args, &mut c, 0..m, 0..s);
            kernel.run_block(&args, &mut c, 0..m, s..panels(n));
            prop_assert_eq!(
                c.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                p.run(kernel).iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
    }
}
