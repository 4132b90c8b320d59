//! A cap on the memory that image decodes in flight may hold together.
//!
//! Each worker decodes one image at a time, and one image within the pixel limit can
//! need over a gigabyte (`DECODE_BYTES_PER_PIXEL` x 89.5 Mpx); twelve workers on twelve
//! such files would need more memory than the machine has. Before decoding, a worker
//! reserves the image's bound from this budget (from its header, before any pixel is
//! allocated) and waits while other workers hold too much of it; an image that alone
//! needs more than the whole budget fails on its own, and the rest of the batch runs.

use std::sync::{Condvar, Mutex, MutexGuard};

/// Bytes of decodes in flight across all workers of one `levit classify` run: room for
/// the largest image the pixel limit admits, alone (1.4 GB), or many ordinary photos at
/// once (a 12 Mpx photo reserves about 190 MB).
pub const DEFAULT_DECODE_BUDGET: u64 = 2 << 30;

/// Memory shared by the workers' decodes.
#[derive(Debug)]
pub struct DecodeBudget {
    total: u64,
    free: Mutex<u64>,
    freed: Condvar,
}

/// Bytes held from a [`DecodeBudget`] until dropped.
#[derive(Debug)]
pub struct Reservation<'a> {
    budget: &'a DecodeBudget,
    bytes: u64,
}

impl DecodeBudget {
    /// A budget of `total` bytes.
    pub fn new(total: u64) -> DecodeBudget {
        DecodeBudget {
            total,
            free: Mutex::new(total),
            freed: Condvar::new(),
        }
    }

    /// The whole budget.
    pub fn total(&self) -> u64 {
        self.total
    }

    fn lock(&self) -> MutexGuard<'_, u64> {
        // A worker that panicked while holding the lock left a valid count behind.
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `bytes` are free and holds them; `None` if `bytes` is more than the
    /// whole budget (it would wait forever).
    pub fn reserve(&self, bytes: u64) -> Option<Reservation<'_>> {
        if bytes > self.total {
            return None;
        }
        let mut free = self.lock();
        while *free < bytes {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= bytes;
        Some(Reservation {
            budget: self,
            bytes,
        })
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        *self.budget.lock() += self.bytes;
        self.budget.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn reservations_never_exceed_the_budget_and_oversized_ones_fail() {
        let budget = DecodeBudget::new(100);
        assert!(budget.reserve(101).is_none());
        let held = AtomicU64::new(0);
        let peak = AtomicU64::new(0);
        std::thread::scope(|s| {
            for i in 0..8u64 {
                let (budget, held, peak) = (&budget, &held, &peak);
                s.spawn(move || {
                    for _ in 0..50 {
                        let bytes = 30 + (i * 7) % 40;
                        let r = budget.reserve(bytes).unwrap();
                        let now = held.fetch_add(bytes, Ordering::SeqCst) + bytes;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        held.fetch_sub(bytes, Ordering::SeqCst);
                        drop(r);
                    }
                });
            }
        });
        assert!(peak.load(Ordering::SeqCst) <= 100);
        assert_eq!(*budget.lock(), 100, "everything was given back");
    }
}
