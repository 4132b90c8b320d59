//! Arena offsets: every activation is a range of one f32 buffer. Buffers whose
//! lifetimes (first to last step that touches them) do not overlap share memory.
//!
//! A batch of images gets one arena: a *batched* buffer (token activations) holds
//! every image's copy back to back, so a token-wise GEMM runs over all of them at once;
//! a *per-image* buffer (the stem's column blocks and intermediate images) is one copy
//! reused image after image, because the stem runs image by image.

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
    /// Floats of one image's copy.
    len: usize,
    first: usize,
    last: usize,
    /// One copy per image of the batch (else one copy for all).
    batched: bool,
}

/// Records buffers and the steps that use them, then packs them.
#[derive(Clone, Debug, Default)]
pub(crate) struct ArenaPlanner {
    bufs: Vec<Lifetime>,
}

const ALIGN: usize = 16;

impl ArenaPlanner {
    /// A new buffer of `len` floats per image, first used at `step`; `batched`: one
    /// copy per image of the batch, else one copy reused by every image.
    pub fn alloc(&mut self, len: usize, step: usize, batched: bool) -> BufId {
        self.bufs.push(Lifetime {
            len: len.max(1),
            first: step,
            last: step,
            batched,
        });
        BufId(self.bufs.len() - 1)
    }

    /// Floats of one image's copy of `buf`.
    pub fn image_len(&self, buf: BufId) -> usize {
        self.bufs[buf.0].len
    }

    /// Whether `buf` holds one copy per image.
    pub fn is_batched(&self, buf: BufId) -> bool {
        self.bufs[buf.0].batched
    }

    /// Marks `buf` as used by `step` (extends its lifetime).
    pub fn touch(&mut self, buf: BufId, step: usize) {
        let b = &mut self.bufs[buf.0];
        b.first = b.first.min(step);
        b.last = b.last.max(step);
    }

    /// Assigns offsets for a batch of `images` (batched buffers are `images` copies
    /// long): largest buffers first, each at the lowest aligned offset that does not
    /// collide with an already placed buffer alive at the same time. With more than
    /// one image, steps `0..per_image_steps` run once per image in turn, so every
    /// buffer they touch is alive across all of them (image 1's first step must not
    /// overwrite what image 0's last one wrote). Returns the ranges (indexed by
    /// `BufId`) and the arena length, or `None` if the sizes overflow.
    pub fn pack(&self, images: usize, per_image_steps: usize) -> Option<(Vec<BufRange>, usize)> {
        let mut bufs = self.bufs.clone();
        for b in &mut bufs {
            if b.batched {
                b.len = b.len.checked_mul(images)?;
            }
            if images > 1 && b.first < per_image_steps {
                b.first = 0;
                b.last = b.last.max(per_image_steps - 1);
            }
        }
        let (ranges, total) = Self::pack_lifetimes(&bufs);
        total.checked_mul(4)?;
        Some((ranges, total))
    }

    fn pack_lifetimes(bufs: &[Lifetime]) -> (Vec<BufRange>, usize) {
        let mut order: Vec<usize> = (0..bufs.len()).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(bufs[i].len), i));
        let mut placed: Vec<(usize, BufRange)> = Vec::new();
        let mut ranges = vec![BufRange { offset: 0, len: 0 }; bufs.len()];
        let mut total = 0;
        for i in order {
            let b = &bufs[i];
            let mut live: Vec<BufRange> = placed
                .iter()
                .filter(|(j, _)| {
                    let o = &bufs[*j];
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
        let a = p.alloc(100, 0, true);
        let b = p.alloc(50, 1, true);
        p.touch(a, 1);
        let c = p.alloc(100, 2, true);
        let (r, total) = p.pack(1, 0).unwrap();
        assert!(!r[a.0].overlaps(&r[b.0]));
        assert!(r[c.0].overlaps(&r[a.0]), "c may reuse a's memory");
        assert!(total <= 112 + 64);
        for x in &r {
            assert_eq!(x.offset % 16, 0);
        }
    }

    #[test]
    fn batched_buffers_hold_every_image_and_per_image_steps_keep_theirs_alive() {
        let mut p = ArenaPlanner::default();
        // Steps 0-1 run image by image: `cols` (step 0 only) and `out` (from step 1)
        // would share memory for one image, but not for a batch.
        let cols = p.alloc(64, 0, false);
        let out = p.alloc(32, 1, true);
        p.touch(out, 2);
        let later = p.alloc(64, 2, true);
        let (one, _) = p.pack(1, 2).unwrap();
        assert!(one[cols.0].overlaps(&one[later.0]));
        let (four, total) = p.pack(4, 2).unwrap();
        assert_eq!(four[cols.0].len, 64);
        assert_eq!(four[out.0].len, 4 * 32);
        assert_eq!(four[later.0].len, 4 * 64);
        assert!(!four[cols.0].overlaps(&four[out.0]));
        assert!(four.iter().all(|r| r.end() <= total));
        assert!(p.pack(usize::MAX / 8, 2).is_none());
    }
}
