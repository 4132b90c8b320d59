//! Storage for the gathered attention-bias tables: one anonymous memory mapping,
//! asked for transparent huge pages.
//!
//! Why not a `Vec<f32>`: LeViT-384's tables are 4.6 MB, and a fresh process pays
//! one page fault per 4 KiB page on first touch: ~1,150 faults, measured at ~3 µs
//! each under KVM, ~3.5 ms of a ~6.5 ms load. A mapping advised `MADV_HUGEPAGE`
//! faults once per 2 MiB where the kernel allows it (`madvise` or `always` in
//! `/sys/kernel/mm/transparent_hugepage/enabled`), and is zeroed by the kernel, so
//! the gather writes each float once (the `Vec` was zero-filled, then overwritten).
//! Where huge pages are off it is the same cost as the `Vec`. The price: up to one
//! partly used 2 MiB page per model (LeViT-384: 4.6 MB of tables in 6 MiB).

use std::ops::Deref;

use memmap2::{MmapMut, MmapOptions};

use crate::attention_bias;
use crate::config::AttnDims;
use crate::error::GraphError;

/// One planned table: the trained `[heads][row_stride]` table, its attention and
/// where its gathered `[heads][nq][nk]` floats go.
pub(crate) type BiasGather<'w> = (&'w [f32], usize, AttnDims, std::ops::Range<usize>);

/// All gathered attention-bias tables, back to back (read-only once built).
pub struct BiasTables {
    /// `None` when there are no tables (a mapping cannot be empty).
    map: Option<MmapMut>,
    len: usize,
}

impl BiasTables {
    /// Maps `len` floats (fallibly: a failed mapping is `OutOfMemory`) and gathers
    /// every planned table into it.
    pub(crate) fn gather(gathers: &[BiasGather<'_>], len: usize) -> Result<Self, GraphError> {
        let mut tables = Self::zeroed(len)?;
        if let Some(map) = &mut tables.map {
            let floats: &mut [f32] = bytemuck::cast_slice_mut(&mut map[..len * 4]);
            for (table, row_stride, a, range) in gathers {
                attention_bias::gather(a, table, *row_stride, &mut floats[range.clone()]);
            }
        }
        Ok(tables)
    }

    /// `len` zeroed floats.
    fn zeroed(len: usize) -> Result<Self, GraphError> {
        if len == 0 {
            return Ok(BiasTables { map: None, len });
        }
        let oom = || GraphError::OutOfMemory {
            what: "attention-bias tables",
            mib: (len as u64 * 4).div_ceil(1 << 20),
        };
        let bytes = len.checked_mul(4).ok_or_else(oom)?;
        let map = MmapOptions::new()
            .len(bytes)
            .map_anon()
            .map_err(|_| oom())?;
        #[cfg(target_os = "linux")]
        {
            // Only a hint: without THP the mapping works with 4 KiB pages.
            let _ = map.advise(memmap2::Advice::HugePage);
        }
        Ok(BiasTables {
            map: Some(map),
            len,
        })
    }
}

impl Deref for BiasTables {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match &self.map {
            // The mapping is page-aligned, so the cast cannot fail.
            Some(map) => bytemuck::cast_slice(&map[..self.len * 4]),
            None => &[],
        }
    }
}

impl std::fmt::Debug for BiasTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BiasTables({} floats)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_tables_are_an_empty_slice() {
        let t = BiasTables::gather(&[], 0).unwrap();
        assert!(t.is_empty());
    }

    #[test]
    fn gathered_tables_match_the_gather_into_a_vec() {
        let a = AttnDims {
            heads: 2,
            key_dim: 1,
            val_dim: 1,
            r_in: 7,
            r_out: 4,
            stride: 2,
            dim_in: 1,
            dim_out: 1,
        };
        let table: Vec<f32> = (0..2 * 49).map(|i| i as f32 * 0.5 - 3.0).collect();
        let n = 2 * a.nq() * a.nk();
        let gathers = [(&table[..], 49, a, 5..5 + n)];
        let t = BiasTables::gather(&gathers, 5 + n + 3).unwrap();
        let mut want = vec![0.0; n];
        attention_bias::gather(&a, &table, 49, &mut want);
        assert_eq!(t.len(), 5 + n + 3);
        assert_eq!(&t[5..5 + n], &want[..]);
        assert!(t[..5].iter().chain(&t[5 + n..]).all(|&v| v == 0.0));
    }
}
