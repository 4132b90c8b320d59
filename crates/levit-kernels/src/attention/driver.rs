//! The attention algorithm, written once over the vector primitives of [`AttnVec`].
//!
//! Per head, K is transposed into scratch (`kt[d][m]`, keys zero-padded to a multiple
//! of [`KEY_PAD`]) so that the scores of a block of up to [`AttnVec::ROWS`] query rows
//! are a small register-tiled GEMM: `R` rows x 2 vectors of keys = `2R` accumulators,
//! `key_dim` FMA steps. The block's epilogue is [`AttnVec::scale_bias`]; padded keys
//! become `-inf` and the row max is kept on the fly. The bias rows of the next block
//! are prefetched: the table is read once per inference, so it streams from L3 or
//! memory. The softmax exponentiates in place; then `p·V` runs over the `R` rows x up
//! to [`AttnVec::JV`] vectors of `val_dim` (V rows are read in place; a partial last
//! vector gets a pass of its own, with a lane mask), divides by the sum, applies the
//! activation and stores head-major.
//!
//! Each path computes every output element with the same operations, in the same
//! order, as the hand-written kernel this driver replaced, so no path's bits changed
//! (`LEVIT_ATTENTION_BITS` in `tests/attention.rs` checks such a change); that is why
//! the paths still differ in [`AttnVec::scale_bias`] and [`AttnVec::SUM_CHAINS`].
//!
//! Register tiling: the block sizes are const generics (`R` rows, `JN` vectors), so
//! every accumulator index is a constant after LLVM unrolls the `0..R` and `0..JN`
//! loops, and the accumulator arrays live in registers. Each `(R, JN)` pair is its
//! own loop, picked once per block by [`run_pv`].
//!
//! Everything here is `#[inline(always)]`, and so are the primitives: a path's entry
//! (`avx512::attention`, ...) is a `#[target_feature]` function that calls
//! [`attention`], so LLVM compiles the whole driver, primitives inlined, with that
//! path's instruction set.

use core::ops::Range;

use super::{AttentionArgs, KEY_PAD, QB};
use crate::Activation;

/// The vector primitives the driver is written in; `avx512.rs`, `avx2.rs` and
/// `portable.rs` each implement them, and nothing else.
///
/// # Safety
/// For implementors: the pointer methods must touch exactly the lanes their docs name
/// (the driver only guarantees those are in bounds), and `prefetch` must never fault.
///
/// For callers, every method: the CPU must support the path (callers are inlined
/// into the path's `#[target_feature]` entry, whose contract says so); pointer
/// methods also need the lanes they touch to be in bounds.
pub(super) unsafe trait AttnVec {
    /// A vector of [`Self::LANES`] floats.
    type F: Copy;
    /// Which lanes of a vector a masked operation keeps (see [`Self::mask`]).
    type Mask: Copy;
    /// Floats per vector.
    const LANES: usize;
    /// Query rows per block (1 to [`QB`]): `2 x ROWS` score accumulators.
    const ROWS: usize;
    /// Vectors of `val_dim` per `p·V` pass: `ROWS x JV` accumulators, as many as the
    /// register file holds next to the V vectors and a broadcast (1 to 4).
    const JV: usize;
    /// Independent sum chains in the softmax (1 or 2), each over every
    /// `SUM_CHAINS`-th vector of the row; the chains are added in order at the end.
    const SUM_CHAINS: usize;

    /// All lanes 0.
    unsafe fn zero() -> Self::F;
    /// All lanes `x`.
    unsafe fn splat(x: f32) -> Self::F;
    /// Lanes `p[0..LANES]`.
    unsafe fn load(p: *const f32) -> Self::F;
    /// Stores all lanes at `p[0..LANES]`.
    unsafe fn store(p: *mut f32, v: Self::F);
    /// Lanes `0..n` (`n <= LANES`).
    unsafe fn mask(n: usize) -> Self::Mask;
    /// Lanes of `m` from `p` (only those are read), 0 elsewhere.
    unsafe fn load_masked(p: *const f32, m: Self::Mask) -> Self::F;
    /// Stores the lanes of `m` (only those are written).
    unsafe fn store_masked(p: *mut f32, m: Self::Mask, v: Self::F);
    /// `a` in the lanes of `m`, `b` elsewhere.
    unsafe fn select(m: Self::Mask, a: Self::F, b: Self::F) -> Self::F;
    /// `a * b + c`.
    unsafe fn fmadd(a: Self::F, b: Self::F, c: Self::F) -> Self::F;
    /// A score from its dot product: `acc * scale + bias`, rounded as the path always
    /// has (once, FMA, on x86; twice on the portable path).
    unsafe fn scale_bias(acc: Self::F, scale: Self::F, bias: Self::F) -> Self::F;
    /// `a + b`.
    unsafe fn add(a: Self::F, b: Self::F) -> Self::F;
    /// `a - b`.
    unsafe fn sub(a: Self::F, b: Self::F) -> Self::F;
    /// `a / b`.
    unsafe fn div(a: Self::F, b: Self::F) -> Self::F;
    /// Lane-wise maximum (a NaN lane gives either operand: a NaN score makes its whole
    /// row NaN through the softmax's sum anyway).
    unsafe fn max(a: Self::F, b: Self::F) -> Self::F;
    /// `exp` of lanes that are `<= 0` or NaN (the softmax's `s - max`).
    unsafe fn exp_nonpositive(x: Self::F) -> Self::F;
    /// Applies `act` lane-wise.
    unsafe fn activate(act: Activation, x: Self::F) -> Self::F;
    /// Sum of the lanes.
    unsafe fn reduce_add(x: Self::F) -> f32;
    /// Maximum of the lanes.
    unsafe fn reduce_max(x: Self::F) -> f32;
    /// Hints that the cache line holding `p` is needed soon (any address).
    unsafe fn prefetch(p: *const f32);
}

/// Runs attention for query rows `rows` (all heads) with `V`'s primitives.
///
/// # Safety
/// The CPU must support `V`'s path, `args.check(full out, scratch.len())` must hold,
/// `out` must hold the rows' `rows.len() * heads * val_dim` floats, `rows` must lie
/// in `0..nq` and `args.shape.nk > 0`.
#[inline(always)]
pub(super) unsafe fn attention<V: AttnVec>(
    args: &AttentionArgs,
    out: &mut [f32],
    scratch: &mut [f32],
    rows: Range<usize>,
) {
    const {
        assert!(KEY_PAD.is_multiple_of(2 * V::LANES));
        assert!(V::JV >= 1 && V::JV <= 4);
        assert!(V::ROWS >= 1 && V::ROWS <= QB);
        assert!(V::SUM_CHAINS == 1 || V::SUM_CHAINS == 2);
    }
    let s = args.shape;
    debug_assert!(s.nk > 0);
    let nkp = s.nk.div_ceil(KEY_PAD) * KEY_PAD;
    let (kt, rest) = scratch.split_at_mut(s.key_dim * nkp);
    let probs = &mut rest[..QB * nkp];
    let row_width = s.heads * s.val_dim;
    // `p·V` runs over the whole vectors of `val_dim`, up to JV per pass, then over a
    // last, partial vector alone: only that pass needs a lane mask. With a mask in
    // every pass, LLVM reloaded it from the stack once per key in the AVX2 4x2 loop.
    let whole = s.val_dim / V::LANES;
    let nv = s.val_dim.div_ceil(V::LANES);
    // SAFETY: the CPU runs V (this function's contract); the count is < LANES.
    let tail_mask = unsafe { V::mask(s.val_dim % V::LANES) };
    for h in 0..s.heads {
        super::transpose_keys(args, h, nkp, kt);
        let mut i0 = rows.start;
        while i0 < rows.end {
            let r = V::ROWS.min(rows.end - i0);
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
            // and QB*nkp floats; the CPU runs V (this function's contract). The guards
            // are constants: a path with 4 rows has no 5- to 8-row kernels at all.
            let max = unsafe {
                match r {
                    1 => scores::<V, 1>(&sc),
                    2 => scores::<V, 2>(&sc),
                    3 => scores::<V, 3>(&sc),
                    4 => scores::<V, 4>(&sc),
                    5 if V::ROWS >= 5 => scores::<V, 5>(&sc),
                    6 if V::ROWS >= 6 => scores::<V, 6>(&sc),
                    7 if V::ROWS >= 7 => scores::<V, 7>(&sc),
                    8 if V::ROWS >= 8 => scores::<V, 8>(&sc),
                    _ => unreachable!("scores of {r} rows"),
                }
            };
            let mut sums = [1.0f32; QB];
            for rr in 0..r {
                let row = &mut probs[rr * nkp..][..nkp];
                // SAFETY: the CPU runs V; the row is a multiple of 2*LANES floats.
                sums[rr] = unsafe {
                    match V::SUM_CHAINS {
                        1 => softmax_row::<V, 1>(row, s.nk, max[rr]),
                        _ => softmax_row::<V, 2>(row, s.nk, max[rr]),
                    }
                };
            }
            let mut jv = 0;
            while jv < nv {
                let tail = jv == whole;
                let jn = if tail { 1 } else { V::JV.min(whole - jv) };
                // SAFETY: V of key 0, head h, column jv*LANES is in bounds by `check`.
                let v = unsafe { args.kv.as_ptr().add(args.v_view.at(0, h) + jv * V::LANES) };
                let mut oo = o;
                for o in oo.iter_mut().take(r) {
                    *o = o.wrapping_add(jv * V::LANES);
                }
                let pv = Pv::<V> {
                    probs: probs.as_ptr(),
                    nkp,
                    nk: s.nk,
                    v,
                    v_stride: args.v_view.row_stride,
                    tail_mask,
                    sums,
                    act: args.act,
                    out: oo,
                };
                // SAFETY: rows < r of `oo` have `jn*LANES` floats (the tail: the mask's
                // lanes) of this head's output; V rows m < nk have them too (`check`).
                unsafe { run_pv(r, jn, tail, &pv) };
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

/// Scores of rows `0..R` into `probs[r][..nkp]` (padded keys: -inf); returns the row
/// maxima.
///
/// # Safety
/// The CPU runs V; `s.q[..R]` hold key_dim floats, `s.bias[..R]` nk floats, `s.kt`
/// key_dim rows of nkp floats and `s.probs` R rows of nkp floats.
#[inline(always)]
unsafe fn scores<V: AttnVec, const R: usize>(s: &Scores) -> [f32; QB] {
    let l = V::LANES;
    // SAFETY (whole body): the CPU runs V, and the pointer accesses are inside the
    // regions of this function's contract, as noted at each.
    unsafe {
        let neg_inf = V::splat(f32::NEG_INFINITY);
        let scale = V::splat(s.scale);
        let mut vmax = [neg_inf; R];
        let mut c = 0;
        while c < s.nkp {
            let mut acc = [[V::zero(); 2]; R];
            for d in 0..s.key_dim {
                // kt holds key_dim rows of nkp floats and c + 2*LANES <= nkp; each q
                // row holds key_dim floats.
                let k0 = V::load(s.kt.add(d * s.nkp + c));
                let k1 = V::load(s.kt.add(d * s.nkp + c + l));
                for (acc, q) in acc.iter_mut().zip(&s.q) {
                    let qv = V::splat(*q.add(d));
                    acc[0] = V::fmadd(qv, k0, acc[0]);
                    acc[1] = V::fmadd(qv, k1, acc[1]);
                }
            }
            for &row in &s.bias[..R] {
                // The bias table is read once per inference, so it comes from L3 or
                // memory: fetch the next block's rows (the following ROWS*nk floats of
                // the table), one prefetch per 64-byte line, while this block computes.
                let ahead = row.wrapping_add(V::ROWS * s.nk + c);
                let mut line = 0;
                while line < 2 * l {
                    V::prefetch(ahead.wrapping_add(line));
                    line += 16;
                }
            }
            // Stores a row's scores (probs row r holds nkp floats) and folds them into
            // its max.
            let mut finish = |r: usize, s0: V::F, s1: V::F| {
                V::store(s.probs.add(r * s.nkp + c), s0);
                V::store(s.probs.add(r * s.nkp + c + l), s1);
                vmax[r] = V::max(vmax[r], V::max(s0, s1));
            };
            // Full blocks end at c + 2*LANES <= nk. The last block may hold padded
            // keys: its bias loads are masked to keys < nk and the padded scores set to
            // -inf. Two loops, not a test per row: LLVM then computed the masks for
            // every block, a fifth of the AVX2 epilogue.
            if c + 2 * l <= s.nk {
                for (r, acc) in acc.iter().enumerate() {
                    let bias = s.bias[r].add(c);
                    let s0 = V::scale_bias(acc[0], scale, V::load(bias));
                    let s1 = V::scale_bias(acc[1], scale, V::load(bias.add(l)));
                    finish(r, s0, s1);
                }
            } else {
                let m0 = V::mask(s.nk.saturating_sub(c).min(l));
                let m1 = V::mask(s.nk.saturating_sub(c + l).min(l));
                for (r, acc) in acc.iter().enumerate() {
                    let bias = s.bias[r].wrapping_add(c);
                    let b0 = V::load_masked(bias, m0);
                    let b1 = V::load_masked(bias.wrapping_add(l), m1);
                    let s0 = V::select(m0, V::scale_bias(acc[0], scale, b0), neg_inf);
                    let s1 = V::select(m1, V::scale_bias(acc[1], scale, b1), neg_inf);
                    finish(r, s0, s1);
                }
            }
            c += 2 * l;
        }
        let mut out = [f32::NEG_INFINITY; QB];
        for r in 0..R {
            out[r] = V::reduce_max(vmax[r]);
        }
        out
    }
}

/// `p = exp(s - max)` in place over one padded row (a multiple of `C*LANES` floats,
/// the keys `nk..` padding); returns `Σ p`, summed in `C` chains (vector `n` into
/// chain `n % C`). The chains are an array indexed by the unrolled `0..C`, never by a
/// runtime parity: LLVM keeps an array indexed at run time on the stack, one
/// store-to-load round trip per vector.
///
/// Padded keys get `p = 0` without an exponential: their scores are `-inf`, and
/// `exp(-inf)` underflows through a subnormal, which costs an x86 core a microcode
/// assist per vector (FTZ is off). One such vector per row made a third of the f32
/// AVX-512 attention time on LeViT's 196-key rows (Sapphire Rapids: 6 heads, 196 x
/// 196, 758 µs against 450 µs for 192 keys, which need no padding).
///
/// # Safety
/// The CPU runs V; `0 < nk <= row.len()`.
#[inline(always)]
unsafe fn softmax_row<V: AttnVec, const C: usize>(row: &mut [f32], nk: usize, max: f32) -> f32 {
    debug_assert!(row.len().is_multiple_of(C * V::LANES) && nk <= row.len());
    let l = V::LANES;
    // SAFETY (whole body): the CPU runs V; each chunk holds C*LANES floats.
    unsafe {
        let mv = V::splat(max);
        let zero = V::zero();
        let mut sum = [zero; C];
        for (n, chunk) in row.chunks_exact_mut(C * l).enumerate() {
            let p = chunk.as_mut_ptr();
            let base = n * C * l;
            if base + C * l <= nk {
                for (j, sum) in sum.iter_mut().enumerate() {
                    let p = p.add(j * l);
                    let e = V::exp_nonpositive(V::sub(V::load(p), mv));
                    V::store(p, e);
                    *sum = V::add(*sum, e);
                }
            } else {
                for (j, sum) in sum.iter_mut().enumerate() {
                    let p = p.add(j * l);
                    let keys = V::mask(nk.saturating_sub(base + j * l).min(l));
                    let x = V::select(keys, V::sub(V::load(p), mv), zero);
                    let e = V::select(keys, V::exp_nonpositive(x), zero);
                    V::store(p, e);
                    *sum = V::add(*sum, e);
                }
            }
        }
        let mut total = sum[0];
        for &s in &sum[1..] {
            total = V::add(total, s);
        }
        V::reduce_add(total)
    }
}

/// Operands of one `p·V` pass over `jn` vectors of `val_dim`, or over its last,
/// partial vector.
struct Pv<V: AttnVec> {
    probs: *const f32,
    nkp: usize,
    nk: usize,
    v: *const f32,
    v_stride: usize,
    /// Lanes of `val_dim`'s partial vector, for the tail pass.
    tail_mask: V::Mask,
    sums: [f32; QB],
    act: Activation,
    out: [*mut f32; QB],
}

/// Runs the `r x jn` kernel, or the `r`-row tail kernel.
///
/// # Safety
/// As [`pv`]; `1 <= r <= V::ROWS`, `1 <= jn <= V::JV`, and `jn = 1` for the tail.
#[inline(always)]
unsafe fn run_pv<V: AttnVec>(r: usize, jn: usize, tail: bool, p: &Pv<V>) {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        match r {
            1 => run_pv_rows::<V, 1>(jn, tail, p),
            2 => run_pv_rows::<V, 2>(jn, tail, p),
            3 => run_pv_rows::<V, 3>(jn, tail, p),
            4 => run_pv_rows::<V, 4>(jn, tail, p),
            5 if V::ROWS >= 5 => run_pv_rows::<V, 5>(jn, tail, p),
            6 if V::ROWS >= 6 => run_pv_rows::<V, 6>(jn, tail, p),
            7 if V::ROWS >= 7 => run_pv_rows::<V, 7>(jn, tail, p),
            8 if V::ROWS >= 8 => run_pv_rows::<V, 8>(jn, tail, p),
            _ => unreachable!("p·V of {r} rows"),
        }
    }
}

/// # Safety
/// As [`run_pv`].
#[inline(always)]
unsafe fn run_pv_rows<V: AttnVec, const R: usize>(jn: usize, tail: bool, p: &Pv<V>) {
    // SAFETY: forwarded from this function's contract. The guards are constants, so
    // a path with JV = 2 has no 3- or 4-vector kernels at all.
    unsafe {
        match jn {
            _ if tail => pv::<V, R, 1, true>(p),
            1 => pv::<V, R, 1, false>(p),
            2 if V::JV >= 2 => pv::<V, R, 2, false>(p),
            3 if V::JV >= 3 => pv::<V, R, 3, false>(p),
            4 if V::JV >= 4 => pv::<V, R, 4, false>(p),
            _ => unreachable!("pv {R}x{jn}"),
        }
    }
}

/// `out[r][..JN*LANES] = act(Σ_m p[r][m] v[m][..] / sums[r])` for rows `0..R`; with
/// `TAIL` (and `JN = 1`), only the lanes of `tail_mask` are read and written.
///
/// # Safety
/// The CPU runs V; `p.out[..R]` hold `JN` vectors (`TAIL`: the mask's lanes), and so
/// do the V rows `p.v + m*v_stride`, `m < nk`; `p.probs` holds R rows of `nkp >= nk`
/// floats.
#[inline(always)]
unsafe fn pv<V: AttnVec, const R: usize, const JN: usize, const TAIL: bool>(p: &Pv<V>) {
    const { assert!(!TAIL || JN == 1) };
    let l = V::LANES;
    // SAFETY (whole body): the CPU runs V; the accesses are those of the contract.
    unsafe {
        let mut acc = [[V::zero(); JN]; R];
        for m in 0..p.nk {
            let row = p.v.wrapping_add(m * p.v_stride);
            let mut vv = [V::zero(); JN];
            for (j, vv) in vv.iter_mut().enumerate() {
                *vv = if TAIL {
                    V::load_masked(row, p.tail_mask)
                } else {
                    V::load(row.wrapping_add(j * l))
                };
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let pr = V::splat(*p.probs.add(r * p.nkp + m));
                for (a, &v) in acc.iter_mut().zip(&vv) {
                    *a = V::fmadd(pr, v, *a);
                }
            }
        }
        // One epilogue per activation: with all three in one loop body, LLVM did not
        // unroll the row loop and the accumulators went through the stack.
        match p.act {
            Activation::None => store_rows::<V, R, JN, TAIL>(&acc, p, Activation::None),
            Activation::HardSwish => store_rows::<V, R, JN, TAIL>(&acc, p, Activation::HardSwish),
            Activation::Silu => store_rows::<V, R, JN, TAIL>(&acc, p, Activation::Silu),
        }
    }
}

/// The epilogue of [`pv`]: `out[r][..] = act(acc[r][..] / sums[r])`.
///
/// # Safety
/// As [`pv`].
#[inline(always)]
unsafe fn store_rows<V: AttnVec, const R: usize, const JN: usize, const TAIL: bool>(
    acc: &[[V::F; JN]; R],
    p: &Pv<V>,
    act: Activation,
) {
    // SAFETY: the CPU runs V; `p.out[..R]` hold the stored lanes (this function's
    // contract).
    unsafe {
        for (r, acc) in acc.iter().enumerate() {
            let sum = V::splat(p.sums[r]);
            for (j, &a) in acc.iter().enumerate() {
                let o = V::activate(act, V::div(a, sum));
                let dst = p.out[r].wrapping_add(j * V::LANES);
                if TAIL {
                    V::store_masked(dst, p.tail_mask, o);
                } else {
                    V::store(dst, o);
                }
            }
        }
    }
}
