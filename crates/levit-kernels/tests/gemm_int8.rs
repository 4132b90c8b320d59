//! Every int8 GEMM kernel this CPU runs (AMX, AVX512_VNNI, AVX2, portable; a forced
//! `LEVIT_ISA` keeps those its level includes) against the scalar int8 reference
//! (`reference::gemm_int8`), **bit for bit**: the integer sums are exact and every
//! kernel evaluates the same float operations after them (SiLU aside, whose vector
//! `exp` is each family's: within a few ulp). Also: any split of rows and panels,
//! between threads or not, gives the same bits; and the int8 result is within the
//! quantization error bound of the f32 product, so the scheme itself is right.

mod common;

use common::{ulp, Rng};
use levit_kernels::gemm::{self, reference, Epilogue, GemmArgs, GemmKernel, PackedB};
use levit_kernels::{int8, panels, Activation, Isa, Precision};

const EXACT_EPILOGUES: [Epilogue; 3] = [
    Epilogue::BiasAct(Activation::None),
    Epilogue::BiasAct(Activation::HardSwish),
    Epilogue::BiasResidual,
];

/// What the kernels may not write (padding past `n`, the tail).
const SENTINEL: f32 = f32::from_bits(0x7FC0_BEEF);

/// Every int8 kernel this CPU runs under the forced level (if any).
fn kernels() -> Vec<GemmKernel> {
    let levels = Isa::supported();
    let all: Vec<GemmKernel> = GemmKernel::all()
        .into_iter()
        .filter(|k| k.precision() == Precision::Int8)
        .filter(|k| levels.iter().any(|level| level.includes(k.isa())))
        .collect();
    assert!(!all.is_empty(), "no int8 kernel");
    all
}

struct Problem {
    m: usize,
    k: usize,
    n: usize,
    a: Vec<f32>,
    lda: usize,
    rows: Option<Vec<u32>>,
    b: Vec<f32>,
    w: int8::Weights,
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
        let (a_rows, rows) = if gather {
            let src = 2 * m + 1;
            let rows: Vec<u32> = (0..m).map(|_| rng.below(src) as u32).collect();
            (src, Some(rows))
        } else {
            (m, None)
        };
        // Rows of very different ranges, as tokens have: per-row scales matter.
        let mut a = rng.vec(a_rows * lda, 1.0);
        for (r, row) in a.chunks_mut(lda.max(1)).enumerate() {
            let s = [1.0, 30.0, 0.01, 3.0][r % 4];
            row.iter_mut().for_each(|x| *x *= s);
        }
        let b = rng.vec(k * n, 0.5);
        let w = int8::pack_b(&b, k, n);
        let bias = rng.vec(n, 1.0);
        let ldc = n + ldc_pad;
        let mut c0 = vec![SENTINEL; m * ldc + 16];
        for i in 0..m {
            for j in 0..n {
                c0[i * ldc + j] = rng.uniform() * 4.0 - 2.0;
            }
        }
        Problem {
            m,
            k,
            n,
            a,
            lda,
            rows,
            b,
            w,
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
            b: PackedB::Int8(self.w.view()),
            bias: &self.bias,
            ldc: self.ldc,
            epilogue: self.epilogue,
        }
    }

    fn run(&self, kernel: &GemmKernel) -> Vec<f32> {
        let mut c = self.c0.clone();
        kernel.run(&self.args(), &mut c);
        c
    }

    fn reference(&self) -> Vec<f32> {
        let mut c = self.c0.clone();
        reference::gemm_int8(&self.args(), &mut c);
        c
    }

    fn a_row(&self, i: usize) -> &[f32] {
        let r = self.rows.as_ref().map_or(i, |rows| rows[i] as usize);
        &self.a[r * self.lda..][..self.k]
    }
}

fn assert_same_bits(what: &str, got: &[f32], want: &[f32]) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits(),
            "{what}: element {i}: {g} ({:#x}) != {w} ({:#x})",
            g.to_bits(),
            w.to_bits()
        );
    }
}

#[test]
fn every_kernel_is_bit_identical_to_the_reference_on_edge_shapes() {
    let mut rng = Rng::new(1);
    let kernels = kernels();
    let ms = [1, 15, 16, 17, 33, 196];
    let small_k = [1, 3, 4, 27, 64, 100];
    let ns = [1, 15, 16, 17, 1000];
    let mut shapes = Vec::new();
    for &m in &ms {
        for &k in &small_k {
            for &n in &ns {
                shapes.push((m, k, n));
            }
        }
    }
    // Long K (2048: one chunk; 2100: two, the sums carried between them) on fewer
    // shapes, the scalar reference being slow.
    for &(m, n) in &[(1, 1000), (17, 17), (33, 40), (196, 16)] {
        shapes.push((m, 2048, n));
        shapes.push((m, 2100, n));
    }
    for (s, &(m, k, n)) in shapes.iter().enumerate() {
        let epilogue = EXACT_EPILOGUES[s % 3];
        let p = Problem::new(&mut rng, m, k, n, s % 2 == 1, s % 3, (s / 2) % 3, epilogue);
        let want = p.reference();
        for kernel in &kernels {
            let what = format!("{kernel:?} m {m} k {k} n {n} {epilogue:?}");
            assert_same_bits(&what, &p.run(kernel), &want);
        }
    }
}

#[test]
fn silu_is_within_a_few_ulp_of_the_reference() {
    let mut rng = Rng::new(2);
    let p = Problem::new(
        &mut rng,
        33,
        70,
        40,
        true,
        1,
        2,
        Epilogue::BiasAct(Activation::Silu),
    );
    let want = p.reference();
    for kernel in kernels() {
        let got = p.run(&kernel);
        for (g, w) in got.iter().zip(&want) {
            if w.to_bits() == SENTINEL.to_bits() {
                assert_eq!(g.to_bits(), w.to_bits(), "{kernel:?} wrote padding");
            } else {
                assert!(
                    f64::from((g - w).abs()) <= 8.0 * ulp(*w),
                    "{kernel:?}: {g} vs {w}"
                );
            }
        }
    }
}

#[test]
fn any_split_between_threads_gives_the_same_bits() {
    let mut rng = Rng::new(3);
    for &(m, k, n) in &[
        (196, 128, 256),
        (49, 2100, 40),
        (16, 27, 17),
        (50, 300, 1000),
    ] {
        let p = Problem::new(&mut rng, m, k, n, true, 2, 1, Epilogue::BiasResidual);
        let np = panels(n);
        for kernel in kernels() {
            let whole = p.run(&kernel);
            for _ in 0..4 {
                // Cut rows and panels at random points (not the kernel's tile sizes),
                // and run the blocks on two threads at once.
                let r = 1 + rng.below(m.max(2) - 1).min(m - 1);
                let q = rng.below(np + 1);
                let mut c = p.c0.clone();
                let len = c.len();
                let ptr = SendPtr(c.as_mut_ptr());
                let args = p.args();
                let blocks = [(0..r, 0..q), (0..r, q..np), (r..m, 0..q), (r..m, q..np)];
                std::thread::scope(|s| {
                    for half in blocks.chunks(2) {
                        let (args, ptr) = (&args, &ptr);
                        s.spawn(move || {
                            for (rows, panels) in half.iter().cloned() {
                                // SAFETY: the four blocks are disjoint, so the two
                                // threads never touch the same element; `c` outlives
                                // the scope and is not otherwise used meanwhile.
                                unsafe { kernel.run_block_raw(args, ptr.0, len, rows, panels) };
                            }
                        });
                    }
                });
                assert_same_bits(&format!("{kernel:?} split {r} {q}"), &c, &whole);
            }
        }
    }
}

struct SendPtr(*mut f32);
// SAFETY: only used to hand disjoint blocks of one output to scoped threads.
unsafe impl Sync for SendPtr {}

#[test]
fn int8_is_within_the_quantization_bound_of_the_f32_product() {
    // |Σ a w - Σ a' w'| <= Σ |a| dw + |w'| da with da <= sa/2, dw <= sw/2, per
    // element (a', w' the dequantized values); plus f32 rounding of the epilogue.
    let mut rng = Rng::new(4);
    for &(m, k, n) in &[(17, 64, 33), (5, 300, 20), (3, 27, 16)] {
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
        let got = p.reference();
        for i in 0..m {
            let a = p.a_row(i);
            let sa = f64::from(int8::max_abs(a)) / 127.0;
            for j in 0..n {
                let sw = f64::from(int8::max_abs(
                    &(0..k).map(|kk| p.b[kk * n + j]).collect::<Vec<_>>(),
                )) / 127.0;
                let (mut exact, mut bound) = (f64::from(p.bias[j]), 0.0);
                for (kk, &x) in a.iter().enumerate() {
                    let (x, w) = (f64::from(x), f64::from(p.b[kk * n + j]));
                    exact += x * w;
                    bound += x.abs() * sw * 0.5 + (w.abs() + sw * 0.5) * sa * 0.5;
                }
                let err = (f64::from(got[i * p.ldc + j]) - exact).abs();
                assert!(
                    err <= bound * 1.001 + 4.0 * ulp(got[i * p.ldc + j]),
                    "({i},{j}): {err} > {bound}"
                );
            }
        }
    }
}

#[test]
fn selection_gives_each_level_its_kernel() {
    for level in Isa::supported() {
        let kernel = GemmKernel::select(Precision::Int8, level).expect("an int8 kernel");
        assert_eq!(kernel.precision(), Precision::Int8);
        assert!(level.includes(kernel.isa()), "{level}: {kernel:?}");
        let vnni = has_vnni();
        let want = match level {
            Isa::Amx if kernel.name().starts_with("amx") => "amx_int8_32x32",
            Isa::Amx | Isa::Avx512Bf16 | Isa::Avx512 if vnni => "avx512_vnni_int8_12x32",
            Isa::Amx | Isa::Avx512Bf16 | Isa::Avx512 | Isa::Avx2 => "avx2_int8_4x16",
            Isa::Portable => "portable_int8_12x32",
        };
        assert_eq!(kernel.name(), want, "{level}");
    }
}

fn has_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[test]
fn other_weights_are_refused_and_short_scales_too() {
    let mut rng = Rng::new(5);
    let p = Problem::new(&mut rng, 3, 5, 20, false, 0, 0, Epilogue::BiasResidual);
    let f32_panels = gemm::pack_b(&p.b, 5, 20);
    for kernel in kernels() {
        let mut args = p.args();
        args.b = PackedB::F32(&f32_panels);
        assert!(kernel.check(&args, p.c0.len()).is_err(), "{kernel:?}");
        let short = int8::WeightsRef {
            scale: &p.w.scale[..20],
            ..p.w.view()
        };
        args.b = PackedB::Int8(short);
        assert!(
            kernel.check(&args, p.c0.len()).is_err(),
            "{kernel:?} short scales"
        );
        let mut c = p.c0.clone();
        let refused = std::panic::catch_unwind(move || kernel.run(&args, &mut c));
        assert!(refused.is_err(), "{kernel:?} ran with short scales");
    }
}

#[test]
fn zero_k_zero_rows_and_non_finite_rows() {
    let mut rng = Rng::new(6);
    for kernel in kernels() {
        // K = 0: the epilogue of the bias.
        let w = int8::pack_b(&[], 0, 20);
        let bias: Vec<f32> = (0..20).map(|j| j as f32 - 10.0).collect();
        let args = GemmArgs {
            m: 3,
            k: 0,
            n: 20,
            a: &[],
            lda: 0,
            a_rows: None,
            b: PackedB::Int8(w.view()),
            bias: &bias,
            ldc: 20,
            epilogue: Epilogue::BiasAct(Activation::HardSwish),
        };
        let mut got = vec![1.0; 60];
        kernel.run(&args, &mut got);
        for (i, g) in got.iter().enumerate() {
            assert_eq!(*g, Activation::HardSwish.apply(bias[i % 20]), "{kernel:?}");
        }
        // A zero row gives the bias; a row with a NaN or an infinity gives NaN.
        let mut p = Problem::new(
            &mut rng,
            4,
            40,
            20,
            false,
            0,
            0,
            Epilogue::BiasAct(Activation::None),
        );
        p.a[..40].fill(0.0);
        p.a[40 + 7] = f32::NAN;
        p.a[80 + 3] = f32::INFINITY;
        let got = p.run(&kernel);
        assert_same_bits(&format!("{kernel:?}"), &got, &p.reference());
        for j in 0..20 {
            assert_eq!(got[j], p.bias[j]);
            assert!(got[20 + j].is_nan() && got[40 + j].is_nan());
            assert!(got[60 + j].is_finite());
        }
    }
}
