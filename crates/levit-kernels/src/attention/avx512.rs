//! AVX-512 attention.
//!
//! Per head, K is transposed once into scratch (`kt[d][m]`, keys padded with zeros to
//! a multiple of 32) so scores are a small register-tiled GEMM: blocks of up to
//! [`QB`] = 4 query rows x 32 keys (2 zmm) = 8 accumulators, `key_dim` FMA steps.
//! Scores are `acc * scale + bias` in one FMA (the reference rounds twice; the
//! difference is within the tests' bound), padded keys become `-inf`, and the row
//! max is kept on the fly. The bias rows of the next block are prefetched: the table
//! is read once per inference, so it streams from L3 or memory. The softmax exponentiates in place with
//! the vectorised `exp`; then `p·V` runs over the 4 rows x up to 4 zmm of `val_dim`
//! (16 accumulators; V rows are read in place, the last vector of a row with a lane
//! mask), divides by the sum, applies the activation and stores head-major.
//!
//! Every kernel is generated with literal accumulator indices so LLVM keeps the
//! accumulators in registers (see `gemm/avx512.rs`).

use core::arch::x86_64::*;

use super::{AttentionArgs, KEY_PAD, QB};
use crate::vecmath::avx512::{activate, exp_nonpositive, mask};
use crate::Activation;

/// Vectors of `val_dim` per `p·V` pass.
const JV: usize = 4;

/// Runs attention on AVX-512.
///
/// # Safety
/// The CPU must support AVX-512F/VL/DQ/BW + FMA, `args.check(out.len(),
/// scratch.len())` must hold and `args.shape.nk > 0`.
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,fma")]
pub(super) unsafe fn attention(
    args: &AttentionArgs,
    out: &mut [f32],
    scratch: &mut [f32],
    rows: core::ops::Range<usize>,
) {
    let s = args.shape;
    debug_assert!(s.nk > 0 && KEY_PAD.is_multiple_of(32));
    let nkp = s.nk.div_ceil(KEY_PAD) * KEY_PAD;
    let (kt, rest) = scratch.split_at_mut(s.key_dim * nkp);
    let probs = &mut rest[..QB * nkp];
    let row_width = s.heads * s.val_dim;
    let nv = s.val_dim.div_ceil(16);
    let last_mask = mask(s.val_dim - (nv.max(1) - 1) * 16);
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
                // V of key 0, head h, column jv*16: in bounds by `check`.
                // SAFETY: see above.
                let v = unsafe { args.kv.as_ptr().add(args.v_view.at(0, h) + jv * 16) };
                let mut oo = o;
                for o in oo.iter_mut().take(r) {
                    *o = o.wrapping_add(jv * 16);
                }
                let pv = Pv {
                    probs: probs.as_ptr(),
                    nkp,
                    nk: s.nk,
                    v,
                    v_stride: args.v_view.row_stride,
                    last_mask: if jv + jn == nv { last_mask } else { 0xffff },
                    sums,
                    act: args.act,
                    out: oo,
                };
                // SAFETY: rows < r of `oo` have `jn*16` (last vector: masked) floats of
                // this head's output; V rows m < nk have them too (`check`).
                unsafe { run_pv(r, jn, &pv) };
                jv += jn;
            }
            i0 += r;
        }
    }
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
        #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,fma")]
        unsafe fn $name(s: &Scores) -> [f32; QB] {
            const R: usize = [$($r),+].len();
            let neg_inf = _mm512_set1_ps(f32::NEG_INFINITY);
            let scale = _mm512_set1_ps(s.scale);
            let mut vmax = [neg_inf; R];
            let mut c = 0;
            while c < s.nkp {
                let mut acc = [[_mm512_setzero_ps(); 2]; R];
                for d in 0..s.key_dim {
                    // SAFETY: kt holds key_dim rows of nkp floats, c + 32 <= nkp; each
                    // q row holds key_dim floats.
                    unsafe {
                        let k0 = _mm512_loadu_ps(s.kt.add(d * s.nkp + c));
                        let k1 = _mm512_loadu_ps(s.kt.add(d * s.nkp + c + 16));
                        $(
                            let qv = _mm512_set1_ps(*s.q[$r].add(d));
                            acc[$r][0] = _mm512_fmadd_ps(qv, k0, acc[$r][0]);
                            acc[$r][1] = _mm512_fmadd_ps(qv, k1, acc[$r][1]);
                        )+
                    }
                }
                // Scores are `acc * scale + bias` with one rounding (FMA). Only the
                // last block has padded keys: it masks the bias loads and sets those
                // scores to -inf.
                let full = c + 32 <= s.nk;
                let m0 = mask(s.nk.saturating_sub(c).min(16));
                let m1 = mask(s.nk.saturating_sub(c + 16).min(16));
                $(
                    // SAFETY: the bias loads read only keys < nk of the row (full blocks
                    // end at c + 32 <= nk; the last one is masked); probs row r holds
                    // nkp floats. Prefetches never fault.
                    unsafe {
                        // The bias table is read once per inference, so it comes from
                        // L3 or memory: fetch the next block's rows (the following QB*nk
                        // floats of the table) while this block computes.
                        let ahead = s.bias[$r].wrapping_add(QB * s.nk + c);
                        _mm_prefetch::<_MM_HINT_T0>(ahead as *const i8);
                        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(16) as *const i8);
                        let bias = s.bias[$r].wrapping_add(c);
                        let (s0, s1) = if full {
                            (
                                _mm512_fmadd_ps(acc[$r][0], scale, _mm512_loadu_ps(bias)),
                                _mm512_fmadd_ps(acc[$r][1], scale, _mm512_loadu_ps(bias.add(16))),
                            )
                        } else {
                            let b0 = _mm512_maskz_loadu_ps(m0, bias);
                            let b1 = _mm512_maskz_loadu_ps(m1, bias.wrapping_add(16));
                            (
                                _mm512_mask_blend_ps(m0, neg_inf, _mm512_fmadd_ps(acc[$r][0], scale, b0)),
                                _mm512_mask_blend_ps(m1, neg_inf, _mm512_fmadd_ps(acc[$r][1], scale, b1)),
                            )
                        };
                        _mm512_storeu_ps(s.probs.add($r * s.nkp + c), s0);
                        _mm512_storeu_ps(s.probs.add($r * s.nkp + c + 16), s1);
                        vmax[$r] = _mm512_max_ps(vmax[$r], _mm512_max_ps(s0, s1));
                    }
                )+
                c += 32;
            }
            let mut out = [f32::NEG_INFINITY; QB];
            $( out[$r] = _mm512_reduce_max_ps(vmax[$r]); )+
            out
        }
    };
}

scores_fn!(scores_1, [0]);
scores_fn!(scores_2, [0 1]);
scores_fn!(scores_3, [0 1 2]);
scores_fn!(scores_4, [0 1 2 3]);

/// `p = exp(s - max)` in place over one padded row (a multiple of 32 floats); returns
/// `Σ p`. Two named accumulators, not an array indexed by parity: LLVM keeps such an
/// array on the stack, one store-to-load round trip per vector.
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,fma")]
fn softmax_row(row: &mut [f32], max: f32) -> f32 {
    debug_assert!(row.len().is_multiple_of(32));
    let mv = _mm512_set1_ps(max);
    let (mut sum0, mut sum1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    for c in row.chunks_exact_mut(32) {
        // SAFETY: `c` holds 32 floats.
        unsafe {
            let e0 = exp_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(c.as_ptr()), mv));
            let e1 = exp_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(c.as_ptr().add(16)), mv));
            _mm512_storeu_ps(c.as_mut_ptr(), e0);
            _mm512_storeu_ps(c.as_mut_ptr().add(16), e1);
            sum0 = _mm512_add_ps(sum0, e0);
            sum1 = _mm512_add_ps(sum1, e1);
        }
    }
    _mm512_reduce_add_ps(_mm512_add_ps(sum0, sum1))
}

/// Operands of one `p·V` pass over `jn` vectors of `val_dim`.
struct Pv {
    probs: *const f32,
    nkp: usize,
    nk: usize,
    v: *const f32,
    v_stride: usize,
    last_mask: __mmask16,
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
        (1, 3, pv_1x3),
        (1, 4, pv_1x4),
        (2, 1, pv_2x1),
        (2, 2, pv_2x2),
        (2, 3, pv_2x3),
        (2, 4, pv_2x4),
        (3, 1, pv_3x1),
        (3, 2, pv_3x2),
        (3, 3, pv_3x3),
        (3, 4, pv_3x4),
        (4, 1, pv_4x1),
        (4, 2, pv_4x2),
        (4, 3, pv_4x3),
        (4, 4, pv_4x4),
    )
}

/// The `jn` V vectors of one key row (the last one masked).
macro_rules! load_v {
    ($p:ident, $row:ident, $jn:literal, [$($j:literal)+]) => {
        [$(
            if $j + 1 == $jn {
                _mm512_maskz_loadu_ps($p.last_mask, $row.wrapping_add($j * 16))
            } else {
                _mm512_loadu_ps($row.wrapping_add($j * 16))
            }
        ),+]
    };
}

/// `acc[r][j] += p * v[j]` for each vector `j`.
macro_rules! pv_fma_row {
    ($acc:ident, $vv:ident, $pr:expr, $r:literal, [$($j:literal)+]) => {{
        let pr = $pr;
        $( $acc[$r][$j] = _mm512_fmadd_ps(pr, $vv[$j], $acc[$r][$j]); )+
    }};
}

/// Divides row `r` by its sum, activates and stores it.
macro_rules! pv_store_row {
    ($p:ident, $acc:ident, $r:literal, $jn:literal, [$($j:literal)+]) => {{
        let sum = _mm512_set1_ps($p.sums[$r]);
        $(
            let o = activate($p.act, _mm512_div_ps($acc[$r][$j], sum));
            let m = if $j + 1 == $jn { $p.last_mask } else { 0xffff };
            // SAFETY: output row r holds these (masked) columns.
            unsafe { _mm512_mask_storeu_ps($p.out[$r].wrapping_add($j * 16), m, o) };
        )+
    }};
}

macro_rules! pv_fn {
    ($name:ident, $jn:literal, $js:tt, [$($r:literal)+]) => {
        #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,fma")]
        unsafe fn $name(p: &Pv) {
            const R: usize = [$($r),+].len();
            let mut acc = [[_mm512_setzero_ps(); $jn]; R];
            for m in 0..p.nk {
                let row = p.v.wrapping_add(m * p.v_stride);
                // SAFETY: V row m holds the (masked) columns; probs rows hold nkp >= nk.
                unsafe {
                    let vv = load_v!(p, row, $jn, $js);
                    $( pv_fma_row!(acc, vv, _mm512_set1_ps(*p.probs.add($r * p.nkp + m)), $r, $js); )+
                }
            }
            $( pv_store_row!(p, acc, $r, $jn, $js); )+
        }
    };
}

pv_fn!(pv_1x1, 1, [0], [0]);
pv_fn!(pv_1x2, 2, [0 1], [0]);
pv_fn!(pv_1x3, 3, [0 1 2], [0]);
pv_fn!(pv_1x4, 4, [0 1 2 3], [0]);
pv_fn!(pv_2x1, 1, [0], [0 1]);
pv_fn!(pv_2x2, 2, [0 1], [0 1]);
pv_fn!(pv_2x3, 3, [0 1 2], [0 1]);
pv_fn!(pv_2x4, 4, [0 1 2 3], [0 1]);
pv_fn!(pv_3x1, 1, [0], [0 1 2]);
pv_fn!(pv_3x2, 2, [0 1], [0 1 2]);
pv_fn!(pv_3x3, 3, [0 1 2], [0 1 2]);
pv_fn!(pv_3x4, 4, [0 1 2 3], [0 1 2]);
pv_fn!(pv_4x1, 1, [0], [0 1 2 3]);
pv_fn!(pv_4x2, 2, [0 1], [0 1 2 3]);
pv_fn!(pv_4x3, 3, [0 1 2], [0 1 2 3]);
pv_fn!(pv_4x4, 4, [0 1 2 3], [0 1 2 3]);
