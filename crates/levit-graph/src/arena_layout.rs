//! Arena offsets: every activation is a range of one f32 buffer. Buffers whose
//! lifetimes (first to last step that touches them) do not overlap share memory.

/// A range of the arena, in f32 elements; offsets are multiples of 16 (64 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufRange {
    /// First element.
    pub offset: usize,
    /// Elements.
    pub len: usize,
}

impl BufRange {
    /// One past the last element.
    pub fn end(&self) -> usize {
        self.offset + self.len
    }
    /// Whether two ranges share an element.
    pub fn overlaps(&self, other: &BufRange) -> bool {
        self.offset < other.end() && other.offset < self.end()
    }
}

/// Handle to a buffer being planned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BufId(pub usize);

#[derive(Clone, Debug)]
struct Lifetime {
    len: usize,
    first: usize,
    last: usize,
}

/// Records buffers and the steps that use them, then packs them.
#[derive(Default)]
pub(crate) struct ArenaPlanner {
    bufs: Vec<Lifetime>,
}

const ALIGN: usize = 16;

impl ArenaPlanner {
    /// A new buffer of `len` floats, first used at `step`.
    pub fn alloc(&mut self, len: usize, step: usize) -> BufId {
        self.bufs.push(Lifetime {
            len: len.max(1),
            first: step,
            last: step,
        });
        BufId(self.bufs.len() - 1)
    }

    /// Marks `buf` as used by `step` (extends its lifetime).
    pub fn touch(&mut self, buf: BufId, step: usize) {
        let b = &mut self.bufs[buf.0];
        b.first = b.first.min(step);
        b.last = b.last.max(step);
    }

    /// Assigns offsets: largest buffers first, each at the lowest aligned offset that
    /// does not collide with an already placed buffer alive at the same time.
    /// Returns the ranges (indexed by `BufId`) and the arena length.
    pub fn pack(&self) -> (Vec<BufRange>, usize) {
        let mut order: Vec<usize> = (0..self.bufs.len()).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(self.bufs[i].len), i));
        let mut placed: Vec<(usize, BufRange)> = Vec::new();
        let mut ranges = vec![BufRange { offset: 0, len: 0 }; self.bufs.len()];
        let mut total = 0;
        for i in order {
            let b = &self.bufs[i];
            let mut live: Vec<BufRange> = placed
                .iter()
                .filter(|(j, _)| {
                    let o = &self.bufs[*j];
                    o.first <= b.last && b.first <= o.last
                })
                .map(|(_, r)| *r)
                .collect();
            live.sort_by_key(|r| r.offset);
            let mut offset = 0;
            for r in &live {
                if offset + b.len <= r.offset {
                    break;
                }
                offset = offset.max(r.end().div_ceil(ALIGN) * ALIGN);
            }
            let range = BufRange { offset, len: b.len };
            total = total.max(range.end().div_ceil(ALIGN) * ALIGN);
            ranges[i] = range;
            placed.push((i, range));
        }
        (ranges, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disjoint_lifetimes_share_memory_and_live_ones_do_not() {
        let mut p = ArenaPlanner::default();
        let a = p.alloc(100, 0);
        let b = p.alloc(50, 1);
        p.touch(a, 1);
        let c = p.alloc(100, 2);
        let (r, total) = p.pack();
        assert!(!r[a.0].overlaps(&r[b.0]));
        assert!(r[c.0].overlaps(&r[a.0]), "c may reuse a's memory");
        assert!(total <= 112 + 64);
        for x in &r {
            assert_eq!(x.offset % 16, 0);
        }
    }
}
