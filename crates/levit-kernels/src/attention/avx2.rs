//! AVX2 + FMA attention.
//!
//! Same plan as `avx512.rs` with 8-lane vectors: scores in blocks of up to [`QB`] = 4
//! query rows x 16 keys (2 ymm) = 8 accumulators; `p·V` over 4 rows x up to 2 ymm of
//! `val_dim` (8 accumulators, 2 V vectors and a broadcast: 11 of the 16 ymm
//! registers, enough independent chains to cover the FMA latency). Tails use
//! `vmaskmovps`. Kernels use literal accumulator indices (see `gemm/avx512.rs`).

use core::arch::x86_64::*;

use super::{AttentionArgs, KEY_PAD, QB};
use crate::vecmath::avx2::{activate, exp_nonpositive, mask};
use crate::Activation;

/// Vectors of `val_dim` per `p·V` pass.
const JV: usize = 2;

/// Runs attention on AVX2.
///
/// # Safety
/// The CPU must support AVX2 + FMA, `args.check(out.len(), scratch.len())` must hold
/// and `args.shape.nk > 0`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn attention(
    args: &AttentionArgs,
    out: &mut [f32],
    scratch: &mut [f32],
    rows: core::ops::Range<usize>,
) {
    let s = args.shape;
    debug_assert!(s.nk > 0 && KEY_PAD.is_multiple_of(16));
    let nkp = s.nk.div_ceil(KEY_PAD) * KEY_PAD;
    let (kt, rest) = scratch.split_at_mut(s.key_dim * nkp);
    let probs = &mut rest[..QB * nkp];
    let row_width = s.heads * s.val_dim;
    let nv = s.val_dim.div_ceil(8);
    let last = s.val_dim - (nv.max(1) - 1) * 8;
    for h in 0..s.heads {
        super::transpose_keys(args, h, nkp, kt);
        let mut i0 = rows.start;
        while i0 < rows.end {
            let r = QB.min(rows.end - i0);
            let mut q = [args.q.as_ptr(); QB];
            let mut bias = [args.bias.as_ptr(); QB];
            let mut o = [out.as_mut_ptr(); QB];
            for rr in 0..r {
                let i = i0 + rr;
                // SAFETY: `check` proved q rows (key_dim floats), bias rows (nk floats)
                // and output rows (heads*val_dim floats) of every (i, h) are in bounds.
                unsafe {
                    q[rr] = args.q.as_ptr().add(args.q_view.at(i, h));
                    bias[rr] = args.bias.as_ptr().add((h * s.nq + i) * s.nk);
                    o[rr] = out
                        .as_mut_ptr()
                        .add((i - rows.start) * row_width + h * s.val_dim);
                }
            }
            let sc = Scores {
                q,
                kt: kt.as_ptr(),
                nkp,
                key_dim: s.key_dim,
                bias,
                nk: s.nk,
                scale: s.scale,
                probs: probs.as_mut_ptr(),
            };
            // SAFETY: the pointers above cover r rows; kt and probs hold key_dim*nkp
            // and QB*nkp floats.
            let max = unsafe {
                match r {
                    1 => scores_1(&sc),
                    2 => scores_2(&sc),
                    3 => scores_3(&sc),
                    _ => scores_4(&sc),
                }
            };
            let mut sums = [1.0f32; QB];
            for rr in 0..r {
                sums[rr] = softmax_row(&mut probs[rr * nkp..][..nkp], max[rr]);
            }
            let mut jv = 0;
            while jv < nv {
                let jn = JV.min(nv - jv);
                // SAFETY: V of key 0, head h, column jv*8 is in bounds by `check`.
                let v = unsafe { args.kv.as_ptr().add(args.v_view.at(0, h) + jv * 8) };
                let mut oo = o;
                for o in oo.iter_mut().take(r) {
                    *o = o.wrapping_add(jv * 8);
                }
                let pv = Pv {
                    probs: probs.as_ptr(),
                    nkp,
                    nk: s.nk,
                    v,
                    v_stride: args.v_view.row_stride,
                    last_mask: mask(if jv + jn == nv { last } else { 8 }),
                    sums,
                    act: args.act,
                    out: oo,
                };
                // SAFETY: rows < r of `oo` have `jn*8` (last vector: masked) floats of
                // this head's output; V rows m < nk have them too (`check`).
                unsafe { run_pv(r, jn, &pv) };
                jv += jn;
            }
            i0 += r;
        }
    }
}

#[inline]
#[target_feature(enable = "avx2")]
fn hmax(v: __m256) -> f32 {
    let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let m = _mm_max_ss(m, _mm_shuffle_ps::<1>(m, m));
    _mm_cvtss_f32(m)
}

#[inline]
#[target_feature(enable = "avx2")]
fn hsum(v: __m256) -> f32 {
    let m = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let m = _mm_add_ps(m, _mm_movehl_ps(m, m));
    let m = _mm_add_ss(m, _mm_shuffle_ps::<1>(m, m));
    _mm_cvtss_f32(m)
}

/// Operands of one block of score rows.
struct Scores {
    q: [*const f32; QB],
    kt: *const f32,
    nkp: usize,
    key_dim: usize,
    bias: [*const f32; QB],
    nk: usize,
    scale: f32,
    probs: *mut f32,
}

macro_rules! scores_fn {
    ($name:ident, [$($r:literal)+]) => {
        /// Scores of rows `r` into `probs[r][..nkp]` (padded keys: -inf); returns the
        /// row maxima.
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $name(s: &Scores) -> [f32; QB] {
            const R: usize = [$($r),+].len();
            let neg_inf = _mm256_set1_ps(f32::NEG_INFINITY);
            let scale = _mm256_set1_ps(s.scale);
            let mut vmax = [neg_inf; R];
            let mut c = 0;
            while c < s.nkp {
                let mut acc = [[_mm256_setzero_ps(); 2]; R];
                for d in 0..s.key_dim {
                    // SAFETY: kt holds key_dim rows of nkp floats, c + 16 <= nkp; each
                    // q row holds key_dim floats.
                    unsafe {
                        let k0 = _mm256_loadu_ps(s.kt.add(d * s.nkp + c));
                        let k1 = _mm256_loadu_ps(s.kt.add(d * s.nkp + c + 8));
                        $(
                            let qv = _mm256_set1_ps(*s.q[$r].add(d));
                            acc[$r][0] = _mm256_fmadd_ps(qv, k0, acc[$r][0]);
                            acc[$r][1] = _mm256_fmadd_ps(qv, k1, acc[$r][1]);
                        )+
                    }
                }
                // Scores are `acc * scale + bias` with one rounding (FMA); only the
                // last block has padded keys (masked bias loads, -inf scores).
                let full = c + 16 <= s.nk;
                let m0 = mask(s.nk.saturating_sub(c).min(8));
                let m1 = mask(s.nk.saturating_sub(c + 8).min(8));
                $(
                    // SAFETY: the bias loads read only keys < nk of the row (full blocks
                    // end at c + 16 <= nk; the last one is masked); probs row r holds
                    // nkp floats. Prefetches never fault.
                    unsafe {
                        // Fetch the next block's bias rows (see avx512.rs).
                        let ahead = s.bias[$r].wrapping_add(QB * s.nk + c);
                        _mm_prefetch::<_MM_HINT_T0>(ahead as *const i8);
                        let bias = s.bias[$r].wrapping_add(c);
                        let (s0, s1) = if full {
                            (
                                _mm256_fmadd_ps(acc[$r][0], scale, _mm256_loadu_ps(bias)),
                                _mm256_fmadd_ps(acc[$r][1], scale, _mm256_loadu_ps(bias.add(8))),
                            )
                        } else {
                            let b0 = _mm256_maskload_ps(bias, m0);
                            let b1 = _mm256_maskload_ps(bias.wrapping_add(8), m1);
                            let s0 = _mm256_fmadd_ps(acc[$r][0], scale, b0);
                            let s1 = _mm256_fmadd_ps(acc[$r][1], scale, b1);
                            (
                                _mm256_blendv_ps(neg_inf, s0, _mm256_castsi256_ps(m0)),
                                _mm256_blendv_ps(neg_inf, s1, _mm256_castsi256_ps(m1)),
                            )
                        };
                        _mm256_storeu_ps(s.probs.add($r * s.nkp + c), s0);
                        _mm256_storeu_ps(s.probs.add($r * s.nkp + c + 8), s1);
                        vmax[$r] = _mm256_max_ps(vmax[$r], _mm256_max_ps(s0, s1));
                    }
                )+
                c += 16;
            }
            let mut out = [f32::NEG_INFINITY; QB];
            $( out[$r] = hmax(vmax[$r]); )+
            out
        }
    };
}

scores_fn!(scores_1, [0]);
scores_fn!(scores_2, [0 1]);
scores_fn!(scores_3, [0 1 2]);
scores_fn!(scores_4, [0 1 2 3]);

/// `p = exp(s - max)` in place over one padded row; returns `Σ p`.
#[target_feature(enable = "avx2,fma")]
fn softmax_row(row: &mut [f32], max: f32) -> f32 {
    // Two named accumulators (see avx512.rs); rows are padded to a multiple of 32.
    debug_assert!(row.len().is_multiple_of(16));
    let mv = _mm256_set1_ps(max);
    let (mut sum0, mut sum1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for c in row.chunks_exact_mut(16) {
        // SAFETY: `c` holds 16 floats.
        unsafe {
            let e0 = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), mv));
            let e1 = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(c.as_ptr().add(8)), mv));
            _mm256_storeu_ps(c.as_mut_ptr(), e0);
            _mm256_storeu_ps(c.as_mut_ptr().add(8), e1);
            sum0 = _mm256_add_ps(sum0, e0);
            sum1 = _mm256_add_ps(sum1, e1);
        }
    }
    hsum(_mm256_add_ps(sum0, sum1))
}

/// Operands of one `p·V` pass over `jn` vectors of `val_dim`.
struct Pv {
    probs: *const f32,
    nkp: usize,
    nk: usize,
    v: *const f32,
    v_stride: usize,
    last_mask: __m256i,
    sums: [f32; QB],
    act: Activation,
    out: [*mut f32; QB],
}

/// # Safety
/// As the `pv_*` kernels; `1 <= r <= QB`, `1 <= jn <= JV`.
unsafe fn run_pv(r: usize, jn: usize, p: &Pv) {
    macro_rules! dispatch {
        ($(($r:literal, $j:literal, $f:ident)),* $(,)?) => {
            match (r, jn) {
                // SAFETY: forwarded from this function's contract.
                $(($r, $j) => unsafe { $f(p) },)*
                _ => unreachable!("pv {r}x{jn}"),
            }
        };
    }
    dispatch!(
        (1, 1, pv_1x1),
        (1, 2, pv_1x2),
        (2, 1, pv_2x1),
        (2, 2, pv_2x2),
        (3, 1, pv_3x1),
        (3, 2, pv_3x2),
        (4, 1, pv_4x1),
        (4, 2, pv_4x2),
    )
}

/// The `jn` V vectors of one key row (the last one masked).
macro_rules! load_v {
    ($p:ident, $row:ident, $jn:literal, [$($j:literal)+]) => {
        [$(
            if $j + 1 == $jn {
                _mm256_maskload_ps($row.wrapping_add($j * 8), $p.last_mask)
            } else {
                _mm256_loadu_ps($row.wrapping_add($j * 8))
            }
        ),+]
    };
}

/// `acc[r][j] += p * v[j]` for each vector `j`.
macro_rules! pv_fma_row {
    ($acc:ident, $vv:ident, $pr:expr, $r:literal, [$($j:literal)+]) => {{
        let pr = $pr;
        $( $acc[$r][$j] = _mm256_fmadd_ps(pr, $vv[$j], $acc[$r][$j]); )+
    }};
}

/// Divides row `r` by its sum, activates and stores it.
macro_rules! pv_store_row {
    ($p:ident, $acc:ident, $r:literal, $jn:literal, [$($j:literal)+]) => {{
        let sum = _mm256_set1_ps($p.sums[$r]);
        $(
            let o = activate($p.act, _mm256_div_ps($acc[$r][$j], sum));
            let dst = $p.out[$r].wrapping_add($j * 8);
            // SAFETY: output row r holds these (masked) columns.
            unsafe {
                if $j + 1 == $jn {
                    _mm256_maskstore_ps(dst, $p.last_mask, o);
                } else {
                    _mm256_storeu_ps(dst, o);
                }
            }
        )+
    }};
}

macro_rules! pv_fn {
    ($name:ident, $jn:literal, $js:tt, [$($r:literal)+]) => {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $name(p: &Pv) {
            const R: usize = [$($r),+].len();
            let mut acc = [[_mm256_setzero_ps(); $jn]; R];
            for m in 0..p.nk {
                let row = p.v.wrapping_add(m * p.v_stride);
                // SAFETY: V row m holds the (masked) columns; probs rows hold nkp >= nk.
                unsafe {
                    let vv = load_v!(p, row, $jn, $js);
                    $( pv_fma_row!(acc, vv, _mm256_set1_ps(*p.probs.add($r * p.nkp + m)), $r, $js); )+
                }
            }
            $( pv_store_row!(p, acc, $r, $jn, $js); )+
        }
    };
}

pv_fn!(pv_1x1, 1, [0], [0]);
pv_fn!(pv_1x2, 2, [0 1], [0]);
pv_fn!(pv_2x1, 1, [0], [0 1]);
pv_fn!(pv_2x2, 2, [0 1], [0 1]);
pv_fn!(pv_3x1, 1, [0], [0 1 2]);
pv_fn!(pv_3x2, 2, [0 1], [0 1 2]);
pv_fn!(pv_4x1, 1, [0], [0 1 2 3]);
pv_fn!(pv_4x2, 2, [0 1], [0 1 2 3]);
