//! Every supported GEMM path against the scalar reference (and the `gemm` crate as an
//! independent oracle) over awkward shapes, all epilogues, row gathers and `ldc > n`.
//!
//! Error bound. For `y = Σ_k a_k b_k + bias` summed in order, both the reference
//! (mul then add) and a SIMD path (FMA chain) are within `γ_{K+1} · S` of the exact
//! value, where `S = Σ|a_k b_k| + |bias|` and `γ_n = n·u/(1-n·u)`, `u = 2^-24`
//! (Higham, *Accuracy and Stability*, §3.1). So they differ by at most `2·γ_{K+1}·S`
//! before the epilogue. The activations are at most 1.5-Lipschitz (hardswish'
//! peaks at 1.5) and are evaluated with a few ulp of their own error (SiLU's exp is
//! within 2 ulp, plus a divide), so we accept
//! `|got - want| <= 1.5 · 2γ_{K+1} · S + 8 ulp(want) (+ 1 ulp(c) for the residual)`.
//! This bound is rigorous, not a tuned constant (the largest observed error/bound
//! ratio is printed with `--nocapture`).

mod common;

use common::{ulp, Rng, U};
use levit_kernels::gemm::{self, Epilogue, GemmArgs};
use levit_kernels::{packed_len, panels, Activation, Isa, NR};
use proptest::prelude::*;

const EPILOGUES: [Epilogue; 4] = [
    Epilogue::BiasAct(Activation::None),
    Epilogue::BiasAct(Activation::HardSwish),
    Epilogue::BiasAct(Activation::Silu),
    Epilogue::BiasResidual,
];

/// One test problem with its own storage.
struct Problem {
    m: usize,
    k: usize,
    n: usize,
    a: Vec<f32>,
    lda: usize,
    rows: Option<Vec<u32>>,
    b: Vec<f32>,
    packed: Vec<f32>,
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
        // With a gather the source has more rows than the output, read out of order.
        let src_rows = if gather { 2 * m + 1 } else { m };
        let a = rng.vec(src_rows * lda, 1.0);
        let rows = gather.then(|| (0..m).map(|_| rng.below(src_rows) as u32).collect());
        let b = rng.vec(k * n, 1.0);
        let packed = gemm::pack_b(&b, k, n);
        assert_eq!(packed.len(), packed_len(k, n));
        let bias = rng.vec(n, 1.0);
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
            b: &self.packed,
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
            .map(|(kk, &a)| (a as f64 * self.b[kk * self.n + j] as f64).abs())
            .sum::<f64>()
            + (self.bias[j] as f64).abs();
        let n = (self.k + 1) as f64;
        let gamma = n * U / (1.0 - n * U);
        let mut tol = 1.5 * 2.0 * gamma * s + 8.0 * ulp(want);
        if self.epilogue == Epilogue::BiasResidual {
            tol += ulp(self.c0[i * self.ldc + j]);
        }
        tol
    }

    fn run(&self, isa: Isa) -> Vec<f32> {
        let mut c = self.c0.clone();
        gemm::gemm(isa, &self.args(), &mut c);
        c
    }

    fn reference(&self) -> Vec<f32> {
        let mut c = self.c0.clone();
        gemm::reference::gemm(&self.args(), &mut c);
        c
    }

    /// Checks `got` against `want` inside the output and untouched padding outside it.
    /// Returns the largest error/bound ratio.
    fn compare(&self, what: &str, got: &[f32], want: &[f32]) -> f64 {
        let mut worst = 0.0f64;
        for i in 0..self.m {
            for j in 0..self.ldc {
                let idx = i * self.ldc + j;
                if idx >= got.len() {
                    break;
                }
                let (g, w) = (got[idx], want[idx]);
                if j >= self.n {
                    assert_eq!(
                        g.to_bits(),
                        self.c0[idx].to_bits(),
                        "{what}: padding ({i},{j}) written"
                    );
                    continue;
                }
                let tol = self.tolerance(i, j, w);
                let err = (g as f64 - w as f64).abs();
                assert!(
                    err <= tol,
                    "{what}: m={} k={} n={} gather={} ldc={} {:?}: C[{i},{j}] = {g}, want {w} (err {err:e} > tol {tol:e})",
                    self.m, self.k, self.n, self.rows.is_some(), self.ldc, self.epilogue
                );
                worst = worst.max(err / tol);
            }
        }
        worst
    }
}

fn mr_values() -> Vec<usize> {
    // Row-tile heights of the paths (12, 6, 4): MR-1, MR, MR+1 of each, and both sides
    // of the 64-row limit of AVX-512's wide tiles.
    let mut v = vec![1, 16, 49, 64, 65, 196];
    for mr in [12, 6, 4] {
        v.extend([mr - 1, mr, mr + 1]);
    }
    v.sort();
    v.dedup();
    v
}

#[test]
fn gemm_matches_reference_on_awkward_shapes() {
    let isas = Isa::supported();
    let mut rng = Rng::new(1);
    let mut worst = 0.0f64;
    let mut case = 0usize;
    for m in mr_values() {
        for n in [1, 15, 16, 17, 31, 32, 33, 48, 1000] {
            for k in [1, 3, 27, 64, 65, 576] {
                // Rotate the variants so every epilogue meets every shape class,
                // with and without a gather and padded strides.
                let epilogue = EPILOGUES[case % 4];
                let gather = (case / 4) % 2 == 1;
                let ldc_pad = [0, 3, 16][case % 3];
                let lda_pad = [0, 5][(case / 3) % 2];
                case += 1;
                let p = Problem::new(&mut rng, m, k, n, gather, lda_pad, ldc_pad, epilogue);
                let want = p.reference();
                for &isa in &isas {
                    let got = p.run(isa);
                    worst = worst.max(p.compare(isa.name(), &got, &want));
                }
            }
        }
    }
    println!("{case} shapes x {isas:?}: worst error/bound = {worst:.4}");
}

#[test]
fn every_epilogue_with_and_without_gather() {
    let mut rng = Rng::new(2);
    for (m, k, n) in [(13, 65, 33), (49, 27, 48), (7, 576, 17)] {
        for epilogue in EPILOGUES {
            for gather in [false, true] {
                for ldc_pad in [0, 7] {
                    let p = Problem::new(&mut rng, m, k, n, gather, 1, ldc_pad, epilogue);
                    let want = p.reference();
                    for isa in Isa::supported() {
                        p.compare(isa.name(), &p.run(isa), &want);
                    }
                }
            }
        }
    }
}

#[test]
fn hardswish_epilogue_is_bit_exact_when_the_sum_is_exact() {
    // k = 1 with a = 1: acc + bias is exact on every path, so the epilogue alone
    // decides the bits, and hardswish must match PyTorch's formula exactly.
    let mut rng = Rng::new(3);
    let (m, k, n) = (5, 1, 37);
    let a = vec![1.0f32; m];
    let b: Vec<f32> = (0..n).map(|j| (j as f32 - 18.0) * 0.37).collect();
    let packed = gemm::pack_b(&b, k, n);
    let bias = rng.vec(n, 0.01);
    for isa in Isa::supported() {
        let args = GemmArgs {
            m,
            k,
            n,
            a: &a,
            lda: 1,
            a_rows: None,
            b: &packed,
            bias: &bias,
            ldc: n,
            epilogue: Epilogue::BiasAct(Activation::HardSwish),
        };
        let mut c = vec![0.0; m * n];
        gemm::gemm(isa, &args, &mut c);
        for i in 0..m {
            for j in 0..n {
                let want = levit_kernels::activation::hardswish(b[j] + bias[j]);
                assert_eq!(c[i * n + j].to_bits(), want.to_bits(), "{isa} col {j}");
            }
        }
    }
}

#[test]
fn blocks_are_bit_identical_to_the_whole() {
    let mut rng = Rng::new(4);
    let p = Problem::new(&mut rng, 50, 70, 150, true, 0, 5, Epilogue::BiasResidual);
    let np = panels(p.n);
    for isa in Isa::supported() {
        let whole = p.run(isa);
        // Panels split in three, rows split in uneven pieces, and a 2-D grid.
        let mut c = p.c0.clone();
        for r in [0..3, 3..np - 2, np - 2..np] {
            gemm::gemm_panels(isa, &p.args(), &mut c, r);
        }
        assert_eq!(c, whole, "{isa}: gemm_panels");
        let mut c = p.c0.clone();
        for r in [0..1, 1..14, 14..37, 37..50] {
            gemm::gemm_rows(isa, &p.args(), &mut c, r);
        }
        assert_eq!(c, whole, "{isa}: gemm_rows");
        let mut c = p.c0.clone();
        for rows in [0..20, 20..50] {
            for pan in [0..1, 1..np] {
                gemm::gemm_block(isa, &p.args(), &mut c, rows.clone(), pan);
            }
        }
        assert_eq!(c, whole, "{isa}: gemm_block");
        // Empty ranges touch nothing.
        let mut c = p.c0.clone();
        gemm::gemm_block(isa, &p.args(), &mut c, 5..5, 0..np);
        gemm::gemm_block(isa, &p.args(), &mut c, 0..50, 3..3);
        assert_eq!(c, p.c0);
    }
}

#[test]
fn results_are_deterministic_across_row_splits() {
    // Tiles of different heights compute each element with the same FMA chain.
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
    for isa in Isa::supported() {
        let whole = p.run(isa);
        for split in 1..37 {
            let mut c = p.c0.clone();
            gemm::gemm_rows(isa, &p.args(), &mut c, 0..split);
            gemm::gemm_rows(isa, &p.args(), &mut c, split..37);
            assert_eq!(c, whole, "{isa}: split at {split}");
        }
    }
}

#[test]
fn zero_k_gives_the_epilogue_of_the_bias() {
    let bias: Vec<f32> = (0..20).map(|j| j as f32 - 10.0).collect();
    for isa in Isa::supported() {
        for epilogue in EPILOGUES {
            let args = GemmArgs {
                m: 3,
                k: 0,
                n: 20,
                a: &[],
                lda: 0,
                a_rows: None,
                b: &[],
                bias: &bias,
                ldc: 20,
                epilogue,
            };
            let mut got = vec![1.0; 60];
            let mut want = got.clone();
            gemm::gemm(isa, &args, &mut got);
            gemm::reference::gemm(&args, &mut want);
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 4.0 * ulp(*w) as f32,
                    "{isa} {epilogue:?}: {g} vs {w}"
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
    let packed = gemm::pack_b(&vec![0.5; k * n], k, n);
    let bias = vec![0.0; n];
    for isa in Isa::supported() {
        for act in [Activation::None, Activation::HardSwish, Activation::Silu] {
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
                epilogue: Epilogue::BiasAct(act),
            };
            let mut c = vec![0.0; m * n];
            gemm::gemm(isa, &args, &mut c);
            assert!(c[n..2 * n].iter().all(|v| v.is_nan()), "{isa} {act:?}");
            assert!(
                c[..n].iter().chain(&c[2 * n..]).all(|v| v.is_finite()),
                "{isa} {act:?}"
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
        let prod = oracle(m, k, n, &p.a, &p.b);
        let want: Vec<f32> = (0..m * n).map(|idx| prod[idx] + p.bias[idx % n]).collect();
        for isa in Isa::supported() {
            let got = p.run(isa);
            for i in 0..m {
                for j in 0..n {
                    let (g, w) = (got[i * n + j], want[i * n + j]);
                    // The oracle blocks K its own way: allow both sides the bound.
                    let tol = 2.0 * p.tolerance(i, j, w);
                    assert!(
                        ((g - w) as f64).abs() <= tol,
                        "{isa} {m}x{k}x{n} ({i},{j}): {g} vs {w}"
                    );
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
    assert_eq!(Isa::parse("scalar"), Ok(Isa::Portable));
    assert!(Isa::parse("sse9").is_err());
    assert!(Isa::Portable.is_supported());
    // Every path a LEVIT_ISA value can select runs and agrees with the reference.
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
    let want = p.reference();
    for name in ["avx512", "avx2", "portable"] {
        let isa = Isa::parse(name).unwrap();
        match isa.require_supported() {
            Ok(isa) => {
                p.compare(name, &p.run(isa), &want);
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
        b: &packed,
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
        b: packed,
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
    // Rows of 3 runs of 8 floats, 50 apart, consecutive rows 6 floats apart (they
    // overlap, like the pixels of a convolution).
    let mut rng = Rng::new(23);
    let (m, n, len, stride, lda) = (30, 37, 8, 50, 6);
    let k = 3 * len;
    let span = 2 * stride + len;
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
            assert_eq!(g.to_bits(), w.to_bits(), "{isa}");
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
        let want = p.reference();
        for isa in Isa::supported() {
            let got = p.run(isa);
            p.compare(isa.name(), &got, &want);
            // Any panel split gives the same bits.
            let s = split % (panels(n) + 1);
            let mut c = p.c0.clone();
            gemm::gemm_panels(isa, &p.args(), &mut c, 0..s);
            gemm::gemm_panels(isa, &p.args(), &mut c, s..panels(n));
            prop_assert_eq!(&c, &got);
        }
        let _ = NR;
    }
}
