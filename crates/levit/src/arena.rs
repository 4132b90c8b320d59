//! The engine's one activation buffer and disjoint views into it.

use levit_graph::BufRange;

/// 16 floats, so that a `Vec` of them is 64-byte aligned.
#[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
#[repr(C, align(64))]
struct Lane([f32; 16]);

/// A zeroed, 64-byte aligned f32 buffer allocated once per engine.
pub(crate) struct Arena {
    lanes: Vec<Lane>,
}

impl Arena {
    /// A zeroed arena of at least `len` floats, or `None` if the memory cannot be
    /// allocated (the sizes come from a weight file's config: an error, not an abort).
    pub fn try_new(len: usize) -> Option<Arena> {
        let lanes_len = len.div_ceil(16);
        let mut lanes = Vec::new();
        lanes.try_reserve_exact(lanes_len).ok()?;
        lanes.resize(lanes_len, Lane([0.0; 16]));
        Some(Arena { lanes })
    }

    pub fn as_slice(&self) -> &[f32] {
        bytemuck::cast_slice(&self.lanes)
    }

    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        bytemuck::cast_slice_mut(&mut self.lanes)
    }
}

/// Splits `arena` into `N` mutable views at the given ranges, which must not overlap
/// (the planner guarantees it for buffers used by one step). No allocation.
///
/// # Panics
/// If two ranges overlap or one runs past the arena: a planner bug.
pub(crate) fn disjoint<const N: usize>(
    arena: &mut [f32],
    ranges: [BufRange; N],
) -> [&mut [f32]; N] {
    let mut order: [usize; N] = std::array::from_fn(|i| i);
    order.sort_unstable_by_key(|&i| ranges[i].offset);
    let mut out: [Option<&mut [f32]>; N] = std::array::from_fn(|_| None);
    let mut rest = arena;
    let mut cursor = 0;
    for i in order {
        let r = ranges[i];
        assert!(r.offset >= cursor, "arena ranges overlap");
        let tail = std::mem::take(&mut rest);
        let (_, tail) = tail.split_at_mut(r.offset - cursor);
        let (mine, tail) = tail.split_at_mut(r.len);
        out[i] = Some(mine);
        rest = tail;
        cursor = r.end();
    }
    out.map(|s| s.expect("every range was assigned"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disjoint_returns_views_in_request_order() {
        let mut a: Vec<f32> = (0..64).map(|i| i as f32).collect();
        let r = |offset, len| BufRange { offset, len };
        let [x, y, z] = disjoint(&mut a, [r(32, 4), r(0, 2), r(16, 16)]);
        assert_eq!(x[0], 32.0);
        assert_eq!(y, &[0.0, 1.0]);
        assert_eq!(z.len(), 16);
    }

    #[test]
    #[should_panic(expected = "overlap")]
    fn overlapping_ranges_are_refused() {
        let mut a = vec![0.0; 64];
        let r = |offset, len| BufRange { offset, len };
        let _ = disjoint(&mut a, [r(0, 8), r(4, 8)]);
    }
}
