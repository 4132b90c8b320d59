//! Every supported attention path against the scalar reference, with LeViT's strided
//! views, plus the accuracy of the vectorised `exp` the softmax uses.
//!
//! Error bound. A score `s = (q·k)*scale + bias` is within
//! `e_s = 2γ_{D+2}·(scale·Σ_d|q_d k_d| + |bias|)` of the reference's (both sides sum in
//! a different order; `γ_n = n·u/(1-n·u)`). The max subtracted carries the same error,
//! and each `exp` adds at most 2 ulp (reference: ~1), so each probability has relative
//! error at most `ε_p = 2·max_m e_s + 8u`. Then `o = Σ p·v / Σ p` has relative-to-`A`
//! error at most `(2ε_p + 2γ_{nk+1})·A` with `A = Σ p|v| / Σ p`, plus the division's
//! ulp. With the activation (at most 1.5-Lipschitz, a few ulp of its own) we accept
//! `|got - want| <= 1.5·(2ε_p + 2γ_{nk+1})·A + 8 ulp(want)`.

mod common;

use common::{ulp, Rng, U};
use levit_kernels::attention::{self, AttentionArgs, AttentionKernel, AttentionShape, HeadView};
use levit_kernels::parallel::{self, Executor, SpinPool};
use levit_kernels::{bf16, vecmath, Activation, Isa, Precision};

/// Storage for one attention call.
struct Problem {
    shape: AttentionShape,
    q: Vec<f32>,
    q_view: HeadView,
    kv: Vec<f32>,
    k_view: HeadView,
    v_view: HeadView,
    bias: Vec<f32>,
    act: Activation,
}

fn gamma(n: usize) -> f64 {
    let n = n as f64;
    n * U / (1.0 - n * U)
}

impl Problem {
    /// `interleaved`: q, k and v of a head side by side in one qkv projection output
    /// (LeViT's `Attention`); otherwise q from its own buffer and k/v interleaved
    /// (`AttentionSubsample`).
    #[allow(clippy::too_many_arguments)]
    fn new(
        rng: &mut Rng,
        heads: usize,
        key_dim: usize,
        val_dim: usize,
        nq: usize,
        nk: usize,
        interleaved: bool,
        act: Activation,
    ) -> Problem {
        let shape = AttentionShape {
            heads,
            key_dim,
            val_dim,
            nq,
            nk,
            scale: (key_dim as f32).powf(-0.5),
        };
        let (q, q_view, kv, k_view, v_view);
        if interleaved {
            assert_eq!(nq, nk);
            let hs = 2 * key_dim + val_dim;
            let row = heads * hs;
            kv = rng.vec(nk * row, 2.0);
            q = kv.clone();
            q_view = HeadView {
                offset: 0,
                row_stride: row,
                head_stride: hs,
            };
            k_view = HeadView {
                offset: key_dim,
                row_stride: row,
                head_stride: hs,
            };
            v_view = HeadView {
                offset: 2 * key_dim,
                row_stride: row,
                head_stride: hs,
            };
        } else {
            let hs = key_dim + val_dim;
            let row = heads * hs;
            // An extra column of padding per q row exercises row_stride > heads*key_dim.
            q = rng.vec(nq * (heads * key_dim + 1), 2.0);
            q_view = HeadView {
                offset: 0,
                row_stride: heads * key_dim + 1,
                head_stride: key_dim,
            };
            kv = rng.vec(nk * row + 3, 2.0);
            k_view = HeadView {
                offset: 3,
                row_stride: row,
                head_stride: hs,
            };
            v_view = HeadView {
                offset: 3 + key_dim,
                row_stride: row,
                head_stride: hs,
            };
        }
        let bias = rng.vec(shape.bias_len(), 1.5);
        Problem {
            shape,
            q,
            q_view,
            kv,
            k_view,
            v_view,
            bias,
            act,
        }
    }

    fn args(&self) -> AttentionArgs<'_> {
        AttentionArgs {
            shape: self.shape,
            q: &self.q,
            q_view: self.q_view,
            kv: &self.kv,
            k_view: self.k_view,
            v_view: self.v_view,
            bias: &self.bias,
            act: self.act,
        }
    }

    fn run(&self, isa: Isa) -> Vec<f32> {
        let mut out = vec![f32::NAN; self.shape.out_len()];
        let mut scratch = vec![f32::NAN; self.shape.scratch_len()];
        attention::attention(isa, &self.args(), &mut out, &mut scratch);
        out
    }

    fn reference(&self) -> Vec<f32> {
        let mut out = vec![f32::NAN; self.shape.out_len()];
        let mut scratch = vec![0.0; self.shape.scratch_len()];
        attention::reference::attention(&self.args(), &mut out, &mut scratch);
        out
    }

    /// Per (query row, head): the bound's `ε_p` part and `A` for every column.
    fn bound(&self, i: usize, h: usize) -> (f64, Vec<f64>) {
        let s = self.shape;
        let q = &self.q[self.q_view.at(i, h)..][..s.key_dim];
        let mut scores = Vec::with_capacity(s.nk);
        let mut e_s = 0.0f64;
        for m in 0..s.nk {
            let k = &self.kv[self.k_view.at(m, h)..][..s.key_dim];
            let b = self.bias[(h * s.nq + i) * s.nk + m] as f64;
            let dot: f64 = q.iter().zip(k).map(|(&a, &b)| a as f64 * b as f64).sum();
            let mag: f64 = q
                .iter()
                .zip(k)
                .map(|(&a, &b)| (a as f64 * b as f64).abs())
                .sum();
            scores.push(dot * s.scale as f64 + b);
            e_s = e_s.max(2.0 * gamma(s.key_dim + 2) * (s.scale as f64 * mag + b.abs()));
        }
        let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let p: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
        let sum: f64 = p.iter().sum();
        let a = (0..s.val_dim)
            .map(|j| {
                (0..s.nk)
                    .map(|m| p[m] * (self.kv[self.v_view.at(m, h) + j] as f64).abs())
                    .sum::<f64>()
                    / sum
            })
            .collect();
        let eps_p = 2.0 * e_s + 8.0 * U;
        (2.0 * eps_p + 2.0 * gamma(s.nk + 1), a)
    }

    /// Returns the largest error/bound ratio.
    fn compare(&self, what: &str, got: &[f32], want: &[f32]) -> f64 {
        let s = self.shape;
        let mut worst = 0.0f64;
        for i in 0..s.nq {
            for h in 0..s.heads {
                let (rel, a) = self.bound(i, h);
                for (j, a) in a.iter().enumerate() {
                    let idx = i * s.heads * s.val_dim + h * s.val_dim + j;
                    let (g, w) = (got[idx], want[idx]);
                    let tol = 1.5 * rel * a + 8.0 * ulp(w);
                    let err = (g as f64 - w as f64).abs();
                    assert!(
                        err <= tol,
                        "{what}: {:?} {:?}: out[{i}][h{h}][{j}] = {g}, want {w} (err {err:e} > {tol:e})",
                        s, self.act
                    );
                    worst = worst.max(err / tol);
                }
            }
        }
        worst
    }
}

const ACTS: [Activation; 3] = [Activation::HardSwish, Activation::None, Activation::Silu];

#[test]
fn attention_matches_reference_on_levit_shapes() {
    let isas = Isa::supported();
    let mut rng = Rng::new(11);
    let mut worst = 0.0f64;
    let mut case = 0;
    for nk in [1, 16, 49, 196, 17] {
        for nq in [1, 4, 16, 49, 196] {
            for key_dim in [8, 16, 32, 64] {
                for val_dim in [16, 32, 64, 128] {
                    let act = ACTS[case % 3];
                    let heads = 1 + case % 3;
                    let interleaved = nq == nk && case % 2 == 0;
                    case += 1;
                    let p =
                        Problem::new(&mut rng, heads, key_dim, val_dim, nq, nk, interleaved, act);
                    let want = p.reference();
                    for &isa in &isas {
                        worst = worst.max(p.compare(isa.name(), &p.run(isa), &want));
                    }
                }
            }
        }
    }
    println!("{case} shapes x {isas:?}: worst error/bound = {worst:.4}");
}

#[test]
fn interleaved_qkv_views_like_levit() {
    // q offset 0, k offset D, v offset 2D, head stride 2D+Dv, row stride H(2D+Dv).
    let mut rng = Rng::new(12);
    for (heads, d, dv, n) in [
        (4, 16, 64, 196),
        (6, 32, 128, 49),
        (8, 64, 256, 16),
        (3, 16, 32, 17),
    ] {
        for act in ACTS {
            let p = Problem::new(&mut rng, heads, d, dv, n, n, true, act);
            let want = p.reference();
            for isa in Isa::supported() {
                p.compare(isa.name(), &p.run(isa), &want);
            }
        }
    }
}

#[test]
fn odd_widths_use_the_masked_tails() {
    let mut rng = Rng::new(13);
    for (key_dim, val_dim) in [
        (1, 1),
        (3, 7),
        (5, 9),
        (8, 17),
        (13, 33),
        (16, 80),
        (7, 100),
    ] {
        for (nq, nk) in [(1, 1), (5, 3), (7, 33), (9, 65)] {
            let p = Problem::new(
                &mut rng,
                2,
                key_dim,
                val_dim,
                nq,
                nk,
                false,
                Activation::HardSwish,
            );
            let want = p.reference();
            for isa in Isa::supported() {
                p.compare(isa.name(), &p.run(isa), &want);
            }
        }
    }
}

#[test]
fn peaked_softmax_underflows_cleanly() {
    // Bias differences of hundreds: most probabilities are exactly 0 after the max
    // subtraction, and the output is (close to) the v of the winning key.
    let mut rng = Rng::new(14);
    let mut p = Problem::new(&mut rng, 2, 16, 32, 20, 49, false, Activation::None);
    for (n, b) in p.bias.iter_mut().enumerate() {
        *b = if n % 7 == 0 { 300.0 } else { -300.0 + *b };
    }
    let want = p.reference();
    for isa in Isa::supported() {
        let got = p.run(isa);
        assert!(got.iter().all(|x| x.is_finite()), "{isa}");
        p.compare(isa.name(), &got, &want);
    }
}

#[test]
fn nan_inputs_give_nan_rows_without_panicking() {
    let mut rng = Rng::new(15);
    let base = Problem::new(&mut rng, 2, 16, 32, 9, 9, true, Activation::HardSwish);
    let s = base.shape;
    let width = s.heads * s.val_dim;
    for isa in Isa::supported() {
        // NaN in q of row 3, head 1: that row's head-1 output is NaN, the rest finite.
        let mut p = Problem {
            q: base.q.clone(),
            kv: base.kv.clone(),
            bias: base.bias.clone(),
            ..base
        };
        p.q[p.q_view.at(3, 1) + 2] = f32::NAN;
        let got = p.run(isa);
        for i in 0..s.nq {
            for h in 0..s.heads {
                let o = &got[i * width + h * s.val_dim..][..s.val_dim];
                if (i, h) == (3, 1) {
                    assert!(
                        o.iter().all(|x| x.is_nan()),
                        "{isa}: row {i} head {h}: {o:?}"
                    );
                } else {
                    assert!(o.iter().all(|x| x.is_finite()), "{isa}: row {i} head {h}");
                }
            }
        }
        // NaN in one bias entry poisons exactly that (row, head).
        let mut p = Problem {
            q: base.q.clone(),
            kv: base.kv.clone(),
            bias: base.bias.clone(),
            ..base
        };
        p.bias[(s.nq + 5) * s.nk + 4] = f32::NAN; // head 1, row 5, key 4
        let got = p.run(isa);
        assert!(
            got[5 * width + s.val_dim..][..s.val_dim]
                .iter()
                .all(|x| x.is_nan()),
            "{isa}"
        );
        assert!(
            got[5 * width..][..s.val_dim].iter().all(|x| x.is_finite()),
            "{isa}"
        );
        // NaN in one v column of key 0 poisons that column of every row of the head.
        let mut p = Problem {
            q: base.q.clone(),
            kv: base.kv.clone(),
            bias: base.bias.clone(),
            ..base
        };
        p.kv[p.v_view.at(0, 0) + 7] = f32::NAN;
        let got = p.run(isa);
        for i in 0..s.nq {
            assert!(got[i * width + 7].is_nan(), "{isa}");
            assert!(got[i * width + 6].is_finite(), "{isa}");
        }
    }
}

#[test]
#[should_panic(expected = "inconsistent operands")]
fn short_scratch_panics() {
    let mut rng = Rng::new(16);
    let p = Problem::new(&mut rng, 1, 16, 16, 4, 4, true, Activation::None);
    let mut out = vec![0.0; p.shape.out_len()];
    let mut scratch = vec![0.0; p.shape.scratch_len() - 1];
    attention::attention(Isa::best(), &p.args(), &mut out, &mut scratch);
}

/// Correctly rounded f32 of `exp(x)` (f64 `exp` is accurate to < 1 ulp of f64).
fn exp_ref(x: f32) -> f64 {
    (x as f64).exp()
}

/// Error of `got` in units of the f32 ulp at the true value.
fn ulp_err(got: f32, x: f32) -> f64 {
    let t = exp_ref(x);
    let ulp = ulp(t as f32).max(f32::from_bits(1) as f64);
    (got as f64 - t).abs() / ulp
}

#[test]
fn exp_accuracy() {
    // Dense sweep: every 64th f32 in [-88, 88] (~33M points) plus the subnormal range.
    let mut xs: Vec<f32> = Vec::new();
    for sign in [0u32, 0x8000_0000] {
        let mut b = 0u32;
        while f32::from_bits(b) <= 88.0 {
            xs.push(f32::from_bits(b | sign));
            b += 64;
        }
    }
    xs.extend((0..200_000).map(|n| -87.0 - 17.0 * n as f32 / 200_000.0));
    for isa in Isa::supported() {
        let mut got = xs.clone();
        vecmath::exp_in_place(isa, &mut got);
        let (mut worst, mut at) = (0.0f64, 0.0f32);
        for (&x, &g) in xs.iter().zip(&got) {
            let e = ulp_err(g, x);
            if e > worst {
                (worst, at) = (e, x);
            }
        }
        println!(
            "exp {isa}: max error {worst:.3} ulp at x = {at:e} over {} points",
            xs.len()
        );
        assert!(worst <= 2.0, "{isa}: exp error {worst} ulp at {at}");
        // Special values.
        let mut sp = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -1000.0,
            1000.0,
            0.0,
            -0.0,
            88.72,
            88.73,
            -103.5,
            -104.5,
        ];
        vecmath::exp_in_place(isa, &mut sp);
        assert!(sp[0].is_nan(), "{isa}");
        assert_eq!(sp[1], f32::INFINITY, "{isa}");
        assert_eq!(sp[2], 0.0, "{isa}");
        assert_eq!(sp[3], 0.0, "{isa}");
        assert_eq!(sp[4], f32::INFINITY, "{isa}");
        assert_eq!(sp[5], 1.0, "{isa}");
        assert_eq!(sp[6], 1.0, "{isa}");
        assert!(
            sp[7].is_finite() && sp[8] == f32::INFINITY,
            "{isa}: {} {}",
            sp[7],
            sp[8]
        );
        assert!(
            sp[9] == f32::from_bits(1) && sp[10] == 0.0,
            "{isa}: {} {}",
            sp[9],
            sp[10]
        );
    }
}

#[test]
fn exp_handles_every_slice_length() {
    for isa in Isa::supported() {
        for len in 0..40 {
            let xs: Vec<f32> = (0..len).map(|i| i as f32 * 0.25 - 3.0).collect();
            let mut got = xs.clone();
            vecmath::exp_in_place(isa, &mut got);
            for (x, g) in xs.iter().zip(&got) {
                assert!(ulp_err(*g, *x) <= 2.0, "{isa} len {len}");
            }
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    })]
    #[test]
    fn random_shapes_match_reference(
        heads in 1usize..4,
        key_dim in 1usize..70,
        val_dim in 1usize..140,
        nq in 1usize..60,
        nk in 1usize..80,
        act in 0usize..3,
        seed in proptest::prelude::any::<u64>(),
    ) {
        let mut rng = Rng::new(seed);
        let p = Problem::new(&mut rng, heads, key_dim, val_dim, nq, nk, false, ACTS[act]);
        let want = p.reference();
        for isa in Isa::supported() {
            p.compare(isa.name(), &p.run(isa), &want);
        }
    }
}

/// The shapes of this file's tests plus extra edge cases, each with the activation
/// and layout it runs with: `(heads, key_dim, val_dim, nq, nk, interleaved, act)`.
fn bit_check_cases() -> Vec<(usize, usize, usize, usize, usize, bool, Activation)> {
    let mut cases = Vec::new();
    let mut case = 0;
    for nk in [1, 16, 49, 196, 17] {
        for nq in [1, 4, 16, 49, 196] {
            for key_dim in [8, 16, 32, 64] {
                for val_dim in [16, 32, 64, 128] {
                    let interleaved = nq == nk && case % 2 == 0;
                    cases.push((
                        1 + case % 3,
                        key_dim,
                        val_dim,
                        nq,
                        nk,
                        interleaved,
                        ACTS[case % 3],
                    ));
                    case += 1;
                }
            }
        }
    }
    for (heads, d, dv, n) in [(4, 16, 64, 196), (6, 32, 128, 49), (3, 16, 32, 17)] {
        for act in ACTS {
            cases.push((heads, d, dv, n, n, true, act));
        }
    }
    for (key_dim, val_dim) in [
        (1, 1),
        (3, 7),
        (5, 9),
        (8, 17),
        (13, 33),
        (16, 80),
        (7, 100),
    ] {
        for (nq, nk) in [(1, 1), (5, 3), (7, 33), (9, 65)] {
            cases.push((2, key_dim, val_dim, nq, nk, false, Activation::HardSwish));
        }
    }
    cases.extend(edge_cases());
    cases
}

/// Edge cases of the blocking: nk around multiples of 32, nq around multiples of the
/// query block (4), the widths LeViT uses and the vector-count tails around them.
fn edge_cases() -> Vec<(usize, usize, usize, usize, usize, bool, Activation)> {
    let mut cases = Vec::new();
    let mut n = 0;
    for nk in [1, 2, 15, 31, 32, 33, 47, 63, 64, 65, 100] {
        for nq in [1, 2, 3, 5, 6, 7, 8, 13] {
            for key_dim in [16, 32, 64] {
                for val_dim in [8, 24, 32, 48, 64, 80, 96] {
                    n += 1;
                    // Every (nk, nq, key_dim, val_dim) once; heads and activation vary.
                    cases.push((1 + n % 8, key_dim, val_dim, nq, nk, false, ACTS[n % 3]));
                }
            }
        }
    }
    cases
}

#[test]
fn edge_shapes_match_reference() {
    let mut rng = Rng::new(17);
    for (heads, key_dim, val_dim, nq, nk, interleaved, act) in edge_cases() {
        let p = Problem::new(&mut rng, heads, key_dim, val_dim, nq, nk, interleaved, act);
        let want = p.reference();
        for isa in Isa::supported() {
            p.compare(isa.name(), &p.run(isa), &want);
        }
    }
}

#[test]
fn row_splits_are_bit_identical() {
    // Threads split a call over row ranges (`attention_rows`); every split point, QB
    // aligned or not, must give the bits of the whole call.
    let mut rng = Rng::new(18);
    for (heads, key_dim, val_dim, nq, nk) in [(3, 16, 32, 13, 49), (2, 32, 64, 9, 33)] {
        let p = Problem::new(
            &mut rng,
            heads,
            key_dim,
            val_dim,
            nq,
            nk,
            false,
            Activation::HardSwish,
        );
        let width = heads * val_dim;
        for isa in Isa::supported() {
            let whole = p.run(isa);
            for split in 0..=nq {
                let mut out = vec![f32::NAN; p.shape.out_len()];
                let mut scratch = vec![f32::NAN; p.shape.scratch_len()];
                let (lo, hi) = out.split_at_mut(split * width);
                attention::attention_rows(isa, &p.args(), lo, &mut scratch, 0..split);
                attention::attention_rows(isa, &p.args(), hi, &mut scratch, split..nq);
                let same = out
                    .iter()
                    .zip(&whole)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{isa}: split at {split} of {nq}");
            }
        }
    }
}

/// FNV-1a over the output bits.
fn bits_hash(out: &[f32]) -> u64 {
    out.iter().fold(0xcbf2_9ce4_8422_2325, |h, x| {
        (h ^ x.to_bits() as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Refactoring aid, a no-op unless asked: `LEVIT_ATTENTION_BITS=FILE` writes a hash of
/// every supported path's output bits for each case of [`bit_check_cases`] (one line
/// per case and path); `LEVIT_ATTENTION_BITS_CHECK=FILE` recomputes them and fails on
/// any line that differs from the same case and path in FILE. A change that must not
/// move a single bit (a restructure of the kernels) writes the file before and checks
/// after.
#[test]
fn output_bits_dump_or_check() {
    let write = std::env::var("LEVIT_ATTENTION_BITS").ok();
    let check = std::env::var("LEVIT_ATTENTION_BITS_CHECK").ok();
    if write.is_none() && check.is_none() {
        return;
    }
    let mut rng = Rng::new(19);
    let mut lines = Vec::new();
    for (n, (heads, key_dim, val_dim, nq, nk, interleaved, act)) in
        bit_check_cases().into_iter().enumerate()
    {
        let p = Problem::new(&mut rng, heads, key_dim, val_dim, nq, nk, interleaved, act);
        for isa in Isa::supported() {
            lines.push(format!(
                "{n} {isa} H{heads} D{key_dim} Dv{val_dim} nq{nq} nk{nk} {act:?}: {:016x}",
                bits_hash(&p.run(isa))
            ));
        }
    }
    if let Some(path) = write {
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        println!("wrote {} lines to {path}", lines.len());
    }
    if let Some(path) = check {
        // Lines are matched by their label (case and path), so a file written with
        // other paths (another CPU, `LEVIT_ISA`, a new path) checks what both have.
        let text = std::fs::read_to_string(&path).unwrap();
        let want: std::collections::HashMap<&str, &str> =
            text.lines().filter_map(|l| l.split_once(": ")).collect();
        let (mut same, mut diff, mut unknown) = (0, Vec::new(), 0);
        for line in &lines {
            let (label, hash) = line.split_once(": ").unwrap();
            match want.get(label) {
                Some(&h) if h == hash => same += 1,
                Some(_) => diff.push(line.as_str()),
                None => unknown += 1,
            }
        }
        assert!(diff.is_empty(), "{} lines differ: {diff:#?}", diff.len());
        assert!(same > 0, "{path}: no line in common");
        println!("{same} lines match {path}; {unknown} not in it");
    }
}

#[test]
fn every_level_runs_its_vector_familys_attention() {
    // The levels above AVX-512 change only the GEMM kernels: attention on them must be
    // the AVX-512 kernel bit for bit, not a silent fallback to another path (whose
    // rounding differs: portable multiplies and adds where AVX-512 fuses).
    let mut rng = Rng::new(19);
    let p = Problem::new(&mut rng, 4, 16, 32, 49, 49, false, Activation::HardSwish);
    let bits = |isa: Isa| -> Vec<u32> { p.run(isa).iter().map(|x| x.to_bits()).collect() };
    for isa in Isa::supported() {
        assert!(
            bits(isa) == bits(isa.vector()),
            "{isa} does not run the {} attention",
            isa.vector()
        );
    }
    // The check can tell the paths apart on this problem.
    if Isa::Avx512.is_supported() {
        assert!(
            bits(Isa::Avx512) != bits(Isa::Portable),
            "the paths agree bitwise here"
        );
    }
}

// ---------------------------------------------------------------------------------
// Kernels by (precision, ISA): the registry, and the bf16 kernels against their
// reference.

/// bf16 rounding (to nearest even), as the bf16 kernels round q, k, v and p.
fn bf(x: f32) -> f32 {
    bf16::from_bf16(bf16::to_bf16(x))
}

impl Problem {
    fn run_kernel(&self, kernel: &AttentionKernel) -> Vec<f32> {
        let mut out = vec![f32::NAN; self.shape.out_len()];
        let mut scratch = vec![f32::NAN; self.shape.scratch_len()];
        kernel.run(&self.args(), &mut out, &mut scratch);
        out
    }

    fn reference_bf16(&self) -> Vec<f32> {
        let mut out = vec![f32::NAN; self.shape.out_len()];
        let mut scratch = vec![0.0; self.shape.scratch_len()];
        attention::reference::attention_bf16_rows(
            &self.args(),
            &mut out,
            &mut scratch,
            0..self.shape.nq,
        );
        out
    }

    /// Per (query row, head) of a bf16 kernel against [`reference_bf16`]: the
    /// absolute bound on `Σ p·v / Σ e` for every column (before the activation).
    ///
    /// Both sides round q, k, v the same way, so their products are the same exact
    /// numbers; they differ in summation order (scores: `e_s`, as in the f32 bound;
    /// `p·V` and `Σ e`: `γ_{nk+1}` each), in `exp` (the kernel's is a degree-4
    /// polynomial, 2.7e-6, evaluated as `2^(s·log2e - max·log2e)`, which rounds
    /// `max·log2e` once more), and so in `e` by a relative `ε_m`. Rounding `e` to bf16
    /// then gives both sides the same `p` unless a rounding midpoint lies within
    /// `ε_m·e` of `e`: only there may they differ, by one bf16 ulp.
    fn bound_bf16(&self, i: usize, h: usize) -> Vec<f64> {
        let s = self.shape;
        let q: Vec<f64> = self.q[self.q_view.at(i, h)..][..s.key_dim]
            .iter()
            .map(|&x| bf(x) as f64)
            .collect();
        let mut scores = Vec::with_capacity(s.nk);
        let mut e_s = Vec::with_capacity(s.nk);
        for m in 0..s.nk {
            let k = &self.kv[self.k_view.at(m, h)..][..s.key_dim];
            let b = self.bias[(h * s.nq + i) * s.nk + m] as f64;
            let dot: f64 = q.iter().zip(k).map(|(a, &b)| a * bf(b) as f64).sum();
            let mag: f64 = q
                .iter()
                .zip(k)
                .map(|(a, &b)| (a * bf(b) as f64).abs())
                .sum();
            scores.push(dot * s.scale as f64 + b);
            e_s.push(2.0 * gamma(s.key_dim + 2) * (s.scale as f64 * mag + b.abs()));
        }
        let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e_max = e_s.iter().cloned().fold(0.0, f64::max);
        let e: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        // Relative error of each side's e: the score and max errors, the exp
        // polynomial and roundings, the extra rounding of max·log2e.
        let eps: Vec<f64> = scores
            .iter()
            .zip(&e_s)
            .map(|(x, es)| es + e_max + 3e-6 + 16.0 * U + 4.0 * U * (max.abs() + (x - max).abs()))
            .collect();
        let eps_max = eps.iter().cloned().fold(0.0, f64::max);
        (0..s.val_dim)
            .map(|j| {
                let mut flips = 0.0;
                let mut a = 0.0;
                for m in 0..s.nk {
                    let v = bf(self.kv[self.v_view.at(m, h) + j]).abs() as f64;
                    a += e[m] * v;
                    if bf16_midpoint_near(e[m], 2.0 * eps[m] * e[m] + 1e-38) {
                        flips += bf16_ulp(e[m]) * v;
                    }
                }
                // Normalised; the sums' orders and exp errors; subnormal-scale slack.
                (flips + (4.0 * gamma(s.nk + 1) + 2.0 * eps_max) * a) / sum * 1.01 + 1e-30
            })
            .collect()
    }

    /// Checks a bf16 kernel's output against [`reference_bf16`]'s; returns the
    /// largest error/bound ratio.
    fn compare_bf16(&self, what: &str, got: &[f32], want: &[f32]) -> f64 {
        let s = self.shape;
        let mut worst = 0.0f64;
        for i in 0..s.nq {
            for h in 0..s.heads {
                for (j, b) in self.bound_bf16(i, h).iter().enumerate() {
                    let idx = i * s.heads * s.val_dim + h * s.val_dim + j;
                    let (g, w) = (got[idx], want[idx]);
                    let tol = 1.5 * b + 8.0 * ulp(w);
                    let err = (g as f64 - w as f64).abs();
                    assert!(
                        err <= tol,
                        "{what}: {:?} {:?}: out[{i}][h{h}][{j}] = {g}, want {w} (err {err:e} > {tol:e})",
                        s, self.act
                    );
                    worst = worst.max(err / tol);
                }
            }
        }
        worst
    }

    /// Checks a bf16 kernel's output against the f32 reference's, within what rounding
    /// q, k, v and p to bf16 allows: scores move by at most `δ = 2^-8·scale·Σ|q k|`
    /// (each of q, k by 2^-9), so each `e` by a factor `exp(±2δ_max)`, then `p` by
    /// 2^-8 and v by 2^-9.
    fn compare_to_f32(&self, what: &str, got: &[f32], want: &[f32]) {
        let s = self.shape;
        for i in 0..s.nq {
            for h in 0..s.heads {
                let (rel, a) = self.bound(i, h);
                let q = &self.q[self.q_view.at(i, h)..][..s.key_dim];
                let delta = (0..s.nk)
                    .map(|m| {
                        let k = &self.kv[self.k_view.at(m, h)..][..s.key_dim];
                        let mag: f64 = q
                            .iter()
                            .zip(k)
                            .map(|(&a, &b)| (a as f64 * b as f64).abs())
                            .sum();
                        2f64.powi(-8) * 1.01 * s.scale as f64 * mag
                    })
                    .fold(0.0, f64::max);
                let factor = (4.0 * delta).exp() - 1.0 + 2f64.powi(-7) + 2f64.powi(-8) + rel;
                for (j, a) in a.iter().enumerate() {
                    let idx = i * s.heads * s.val_dim + h * s.val_dim + j;
                    let (g, w) = (got[idx], want[idx]);
                    let tol = 1.5 * factor * a + 8.0 * ulp(w) + 1e-30;
                    let err = (g as f64 - w as f64).abs();
                    assert!(
                        err <= tol,
                        "{what} vs f32: {s:?}: out[{i}][h{h}][{j}] = {g}, f32 {w} (err {err:e} > {tol:e})"
                    );
                }
            }
        }
    }
}

/// Whether a bf16 rounding midpoint lies within `d` of `x > 0`.
fn bf16_midpoint_near(x: f64, d: f64) -> bool {
    let ulp = bf16_ulp(x);
    // Midpoints sit at (k + 1/2) ulp within x's binade (and at its edges).
    let k = (x / ulp - 0.5).round();
    let mid = (k + 0.5) * ulp;
    (x - mid).abs() <= d || x - d <= bf16_floor_pow2(x) || x + d >= 2.0 * bf16_floor_pow2(x)
}

/// The power of two at or below `x > 0`.
fn bf16_floor_pow2(x: f64) -> f64 {
    2f64.powi(x.log2().floor() as i32)
}

/// The bf16 ulp (8 significant bits) at `x > 0`.
fn bf16_ulp(x: f64) -> f64 {
    bf16_floor_pow2(x) * 2f64.powi(-7)
}

fn bf16_kernels() -> Vec<AttentionKernel> {
    AttentionKernel::all()
        .into_iter()
        .filter(|k| k.precision() == Precision::Bf16)
        .collect()
}

#[test]
fn kernel_selection_follows_precision_and_level() {
    let all = AttentionKernel::all();
    for isa in Isa::supported() {
        let f32k = AttentionKernel::select(Precision::F32, isa);
        assert_eq!(f32k.precision(), Precision::F32);
        assert_eq!(f32k.isa(), isa.vector(), "{isa}: {f32k}");
        let bf = AttentionKernel::select(Precision::Bf16, isa);
        let native = all
            .iter()
            .find(|k| k.precision() == Precision::Bf16 && isa.includes(k.isa()));
        match native {
            Some(k) => assert_eq!(bf.name(), k.name(), "{isa}"),
            // Below AMX a bf16 step keeps the f32 kernel of its level.
            None => assert_eq!(bf.name(), f32k.name(), "{isa}"),
        }
    }
    // The AMX kernel exists exactly where AMX runs, and only at its level.
    let amx: Vec<_> = bf16_kernels();
    assert_eq!(amx.len(), usize::from(Isa::Amx.is_supported()), "{amx:?}");
    if Isa::Amx.is_supported() {
        assert_eq!(
            AttentionKernel::select(Precision::Bf16, Isa::Amx).name(),
            "amx_bf16_attention_16x16"
        );
        assert_eq!(
            AttentionKernel::select(Precision::Bf16, Isa::Avx512Bf16).name(),
            "avx512_f32_attention"
        );
    }
    // Every name says its ISA and precision.
    for k in &all {
        assert!(k.name().starts_with(k.isa().name()), "{k}");
        assert!(k.name().contains(k.precision().name()), "{k}");
    }
}

/// `(heads, key_dim, val_dim, nq, nk, interleaved, act)` for the bf16 kernels: nq
/// and nk around the tile sizes (16 rows, 16-key score tiles, 32-key `p·V` blocks),
/// nk = 1, heads = 1, key_dim up to and past one 32-deep block, val_dim around the
/// 16-column panels and the LeViT widths, and LeViT's own shapes.
fn bf16_cases() -> Vec<(usize, usize, usize, usize, usize, bool, Activation)> {
    const KD: [usize; 9] = [16, 1, 8, 15, 17, 31, 32, 33, 64];
    const VD: [usize; 10] = [32, 64, 1, 8, 16, 17, 31, 48, 80, 128];
    let mut cases = Vec::new();
    let mut n = 0;
    for nk in [1, 2, 15, 16, 17, 31, 32, 33, 48, 49, 63, 64, 65, 100, 196] {
        for nq in [1, 2, 15, 16, 17, 31, 32, 33, 49] {
            for t in 0..3 {
                n += 1;
                let (kd, vd) = (KD[(n + t) % KD.len()], VD[(3 * n + t) % VD.len()]);
                let interleaved = nq == nk && n % 2 == 0;
                cases.push((1 + n % 4, kd, vd, nq, nk, interleaved, ACTS[n % 3]));
            }
        }
    }
    // LeViT: stage attention (nq = nk, interleaved qkv) and the subsample attention.
    for (heads, kd, vd, nq, nk, interleaved) in [
        (4, 16, 32, 196, 196, true),
        (8, 16, 64, 49, 196, false),
        (6, 16, 32, 49, 49, true),
        (16, 16, 64, 16, 49, false),
        (8, 16, 32, 16, 16, true),
        (6, 32, 64, 196, 196, true),
        (12, 32, 128, 49, 196, false),
    ] {
        cases.push((heads, kd, vd, nq, nk, interleaved, Activation::HardSwish));
    }
    cases
}

#[test]
fn bf16_kernels_match_the_bf16_reference() {
    let kernels = bf16_kernels();
    let mut rng = Rng::new(21);
    let (mut worst, mut n) = (0.0f64, 0);
    for (heads, kd, vd, nq, nk, interleaved, act) in bf16_cases() {
        let p = Problem::new(&mut rng, heads, kd, vd, nq, nk, interleaved, act);
        if kernels.is_empty() {
            break;
        }
        let want = p.reference_bf16();
        let f32_want = p.reference();
        for k in &kernels {
            let got = p.run_kernel(k);
            worst = worst.max(p.compare_bf16(k.name(), &got, &want));
            p.compare_to_f32(k.name(), &got, &f32_want);
            n += 1;
        }
    }
    println!("{n} runs of {kernels:?}: worst error/bound = {worst:.4}");
}

#[test]
fn bf16_kernels_handle_peaked_softmax_and_nan() {
    let mut rng = Rng::new(22);
    for k in bf16_kernels() {
        // Bias differences of hundreds: all but the winning keys underflow.
        let mut p = Problem::new(&mut rng, 2, 16, 32, 20, 49, false, Activation::None);
        for (n, b) in p.bias.iter_mut().enumerate() {
            *b = if n % 7 == 0 { 300.0 } else { -300.0 + *b };
        }
        let got = p.run_kernel(&k);
        assert!(got.iter().all(|x| x.is_finite()), "{k}");
        p.compare_bf16(k.name(), &got, &p.reference_bf16());

        let base = Problem::new(&mut rng, 2, 16, 32, 9, 9, true, Activation::HardSwish);
        let s = base.shape;
        let width = s.heads * s.val_dim;
        let fresh = || Problem {
            q: base.q.clone(),
            kv: base.kv.clone(),
            bias: base.bias.clone(),
            ..base
        };
        // NaN in q of row 3, head 1 (q and kv are one buffer here): that row's
        // head-1 output is NaN, the rest finite.
        let mut p = fresh();
        p.q[p.q_view.at(3, 1) + 2] = f32::NAN;
        p.kv = p.q.clone();
        let got = p.run_kernel(&k);
        for i in 0..s.nq {
            for h in 0..s.heads {
                let o = &got[i * width + h * s.val_dim..][..s.val_dim];
                if (i, h) == (3, 1) {
                    assert!(o.iter().all(|x| x.is_nan()), "{k}: row {i} head {h}");
                } else {
                    assert!(o.iter().all(|x| x.is_finite()), "{k}: row {i} head {h}");
                }
            }
        }
        // NaN in one bias entry poisons exactly that (row, head).
        let mut p = fresh();
        p.bias[(s.nq + 5) * s.nk + 4] = f32::NAN;
        let got = p.run_kernel(&k);
        for i in 0..s.nq {
            for h in 0..s.heads {
                let o = &got[i * width + h * s.val_dim..][..s.val_dim];
                if (i, h) == (5, 1) {
                    assert!(o.iter().all(|x| x.is_nan()), "{k}: row {i} head {h}");
                } else {
                    assert!(o.iter().all(|x| x.is_finite()), "{k}: row {i} head {h}");
                }
            }
        }
        // NaN in one v column of key 0 poisons that column of every row of the head.
        let mut p = fresh();
        p.kv[p.v_view.at(0, 0) + 7] = f32::NAN;
        p.q = p.kv.clone();
        let got = p.run_kernel(&k);
        for i in 0..s.nq {
            assert!(got[i * width + 7].is_nan(), "{k}");
            assert!(got[i * width + 6].is_finite(), "{k}");
        }
    }
}

#[test]
fn every_kernel_is_bit_identical_over_row_splits_and_threads() {
    // Threads split a call over row ranges; every split point (tile aligned or not)
    // and every thread count must give the bits of the whole call.
    let pools: Vec<SpinPool> = (1..=4).map(|t| SpinPool::new(t).unwrap()).collect();
    let mut rng = Rng::new(23);
    for (heads, key_dim, val_dim, nq, nk) in [
        (3, 16, 32, 13, 49),
        (2, 32, 64, 9, 33),
        (4, 16, 32, 49, 49),
        (2, 16, 64, 37, 196),
    ] {
        let p = Problem::new(
            &mut rng,
            heads,
            key_dim,
            val_dim,
            nq,
            nk,
            false,
            Activation::HardSwish,
        );
        let width = heads * val_dim;
        for k in AttentionKernel::all() {
            let whole = p.run_kernel(&k);
            let same = |out: &[f32]| {
                out.iter()
                    .zip(&whole)
                    .all(|(a, b)| a.to_bits() == b.to_bits())
            };
            for split in 0..=nq {
                let mut out = vec![f32::NAN; p.shape.out_len()];
                let mut scratch = vec![f32::NAN; p.shape.scratch_len()];
                let (lo, hi) = out.split_at_mut(split * width);
                k.run_rows(&p.args(), lo, &mut scratch, 0..split);
                k.run_rows(&p.args(), hi, &mut scratch, split..nq);
                assert!(same(&out), "{k}: split at {split} of {nq}");
            }
            for pool in &pools {
                let mut out = vec![f32::NAN; p.shape.out_len()];
                let mut scratch =
                    vec![f32::NAN; parallel::attention_scratch_len(&p.shape, pool.width())];
                parallel::attention(&k, &p.args(), &mut out, &mut scratch, pool);
                assert!(same(&out), "{k}: {} threads", pool.width());
            }
        }
    }
}
