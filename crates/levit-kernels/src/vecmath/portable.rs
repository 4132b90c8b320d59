//! Portable `exp`, hardswish and SiLU on `wide::f32x8` (what aarch64 runs).

use wide::f32x8;

use super::{EXP_HI, EXP_LO, LN2_HI, LN2_LO, LOG2E, P0, P1, P2, P3, P4, P5};
use crate::Activation;

/// `exp` of 8 lanes (see the module doc of `vecmath`).
#[inline]
pub(crate) fn exp(x: f32x8) -> f32x8 {
    let xs = x.to_array();
    // `wide`'s min/max drop NaN lanes: clamp lane-wise with f32::clamp, which keeps NaN.
    let xc = f32x8::new(xs.map(|v| v.clamp(EXP_LO, EXP_HI)));
    let n = (xc * f32x8::splat(LOG2E)).round();
    let r = (-n).mul_add(f32x8::splat(LN2_HI), xc);
    let r = (-n).mul_add(f32x8::splat(LN2_LO), r);
    let mut p = f32x8::splat(P0);
    p = p.mul_add(r, f32x8::splat(P1));
    p = p.mul_add(r, f32x8::splat(P2));
    p = p.mul_add(r, f32x8::splat(P3));
    p = p.mul_add(r, f32x8::splat(P4));
    p = p.mul_add(r, f32x8::splat(P5));
    let y = p.mul_add(r * r, r) + f32x8::splat(1.0);
    // 2^n as two normal powers of two (n in [-150, 128]); NaN lanes keep y = NaN.
    let ns = n.to_array();
    let s1 = ns.map(|v| pow2((v as i32) >> 1));
    let s2 = ns.map(|v| pow2(v as i32 - ((v as i32) >> 1)));
    y * f32x8::new(s1) * f32x8::new(s2)
}

/// `2^e` for `e` in `[-126, 127]` (other values, only reached for NaN lanes, give
/// some finite power of two).
#[inline]
fn pow2(e: i32) -> f32 {
    f32::from_bits((((e + 127) as u32) & 0xff) << 23)
}

/// `x * clamp(x + 3, 0, 6) / 6`, bit-identical to [`crate::activation::hardswish`].
#[inline]
pub(crate) fn hardswish(x: f32x8) -> f32x8 {
    let t = (x + f32x8::splat(3.0))
        .to_array()
        .map(|v| v.clamp(0.0, 6.0));
    x * f32x8::new(t) / f32x8::splat(6.0)
}

/// `x / (1 + exp(-x))`.
#[inline]
pub(crate) fn silu(x: f32x8) -> f32x8 {
    x / (f32x8::splat(1.0) + exp(-x))
}

/// Applies `act` to 8 lanes.
#[inline]
pub(crate) fn activate(act: Activation, x: f32x8) -> f32x8 {
    match act {
        Activation::None => x,
        Activation::HardSwish => hardswish(x),
        Activation::Silu => silu(x),
    }
}

/// Loads `n <= 8` floats from `src`, zero-filling the rest.
#[inline]
pub(crate) fn load_partial(src: &[f32], n: usize) -> f32x8 {
    let mut a = [0.0f32; 8];
    a[..n].copy_from_slice(&src[..n]);
    f32x8::new(a)
}

/// [`exp`] over a slice.
pub(crate) fn exp_slice(x: &mut [f32]) {
    for c in x.chunks_mut(8) {
        let n = c.len();
        let e = exp(load_partial(c, n)).to_array();
        c.copy_from_slice(&e[..n]);
    }
}
