//! A small pool of spinning worker threads for splitting one inference's kernels.
//!
//! Why not rayon: a LeViT kernel call takes 10-300 µs, and waking a sleeping thread
//! costs 15-30 µs here, so workers must spin between the steps of one inference; and
//! rayon's `install` from outside the pool pushes onto a global injector queue that
//! allocates a block every 63 jobs, which breaks the zero-allocation guarantee. This
//! pool allocates only when it is created, spins for a while after each job, then
//! parks on a condition variable.
//!
//! Protocol: the caller publishes a job (a borrowed `Fn(usize)` and a task count)
//! under a new epoch in `state = epoch << 32 | next_task`. Every thread, the caller
//! included, claims task indices with a compare-and-swap that only succeeds while the
//! epoch is unchanged, runs them, and counts them done. `run` returns once all tasks
//! are done, so the borrowed closure outlives every use of it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Executor;

/// How long an idle worker spins before parking.
const SPIN: Duration = Duration::from_micros(300);

/// The job being run: a type-erased pointer to the caller's closure.
type Job = dyn Fn(usize) + Sync;

struct JobSlot {
    /// Points at a `&Job` living on the caller's stack during `run`.
    job: AtomicPtr<&'static Job>,
    tasks: AtomicUsize,
}

struct Shared {
    /// `epoch << 32 | next task index`.
    state: AtomicU64,
    slot: JobSlot,
    done: AtomicUsize,
    panicked: AtomicBool,
    shutdown: AtomicBool,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

impl Shared {
    /// Claims and runs tasks of `epoch` until none are left.
    fn work(&self, epoch: u64) {
        loop {
            let s = self.state.load(SeqCst);
            if s >> 32 != epoch {
                return;
            }
            let index = (s & 0xffff_ffff) as usize;
            let tasks = self.slot.tasks.load(Acquire);
            if index >= tasks {
                return;
            }
            if self
                .state
                .compare_exchange_weak(s, s + 1, SeqCst, Relaxed)
                .is_err()
            {
                continue;
            }
            // SAFETY: we hold a claim on task `index < tasks` of the current epoch, so
            // the caller of `run` is still waiting for it: the `&Job` it published for
            // this epoch (and the closure behind it) is alive and unchanged.
            let job: &Job = unsafe { *self.slot.job.load(Acquire) };
            if catch_unwind(AssertUnwindSafe(|| job(index))).is_err() {
                self.panicked.store(true, SeqCst);
            }
            self.done.fetch_add(1, Release);
        }
    }
}

/// A fixed set of spinning worker threads; the thread calling [`Executor::run`]
/// works too, so `threads` counts it.
pub struct SpinPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    threads: usize,
}

impl std::fmt::Debug for SpinPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpinPool")
            .field("threads", &self.threads)
            .finish()
    }
}

impl SpinPool {
    /// Starts `threads - 1` workers (none for `threads <= 1`).
    pub fn new(threads: usize) -> std::io::Result<SpinPool> {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            state: AtomicU64::new(0),
            slot: JobSlot {
                job: AtomicPtr::new(std::ptr::null_mut()),
                tasks: AtomicUsize::new(0),
            },
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let mut workers = Vec::with_capacity(threads - 1);
        for i in 1..threads {
            let worker_shared = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("levit-worker-{i}"))
                .spawn(move || worker(&worker_shared));
            match handle {
                Ok(h) => workers.push(h),
                Err(e) => {
                    shutdown(&shared, workers);
                    return Err(e);
                }
            }
        }
        Ok(SpinPool {
            shared,
            workers,
            threads,
        })
    }
}

fn worker(shared: &Shared) {
    let mut seen = 0u64;
    loop {
        // Spin for new work, then park.
        let started = Instant::now();
        let mut spins = 0u32;
        let epoch = loop {
            let e = shared.state.load(SeqCst) >> 32;
            if e != seen || shared.shutdown.load(Relaxed) {
                break e;
            }
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(256) && started.elapsed() > SPIN {
                let guard = shared.lock.lock().unwrap_or_else(|p| p.into_inner());
                shared.sleepers.fetch_add(1, SeqCst);
                let mut guard = guard;
                while shared.state.load(SeqCst) >> 32 == seen && !shared.shutdown.load(SeqCst) {
                    guard = shared.wake.wait(guard).unwrap_or_else(|p| p.into_inner());
                }
                shared.sleepers.fetch_sub(1, SeqCst);
                drop(guard);
            }
        };
        if shared.shutdown.load(SeqCst) {
            return;
        }
        seen = epoch;
        shared.work(epoch);
    }
}

fn shutdown(shared: &Shared, workers: Vec<JoinHandle<()>>) {
    shared.shutdown.store(true, SeqCst);
    {
        let _guard = shared.lock.lock().unwrap_or_else(|p| p.into_inner());
        shared.wake.notify_all();
    }
    for w in workers {
        let _ = w.join();
    }
}

impl Drop for SpinPool {
    fn drop(&mut self) {
        shutdown(&self.shared, std::mem::take(&mut self.workers));
    }
}

impl Executor for SpinPool {
    fn width(&self) -> usize {
        self.threads
    }

    fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        if tasks == 0 {
            return;
        }
        if self.workers.is_empty() || tasks == 1 {
            (0..tasks).for_each(f);
            return;
        }
        assert!(tasks < u32::MAX as usize, "too many tasks");
        let s = &self.shared;
        // SAFETY: erases the closure's lifetime. Workers dereference the pointer only
        // while holding a claim on a task of this epoch, and this function does not
        // return before every such task is done (`done == tasks` below).
        let job: &'static Job =
            unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync + '_), &'static Job>(f) };
        let job_ref: &&'static Job = &job;
        s.slot.job.store(job_ref as *const _ as *mut _, Release);
        s.slot.tasks.store(tasks, Release);
        s.done.store(0, Release);
        let epoch = (s.state.load(SeqCst) >> 32) + 1;
        s.state.store(epoch << 32, SeqCst);
        if s.sleepers.load(SeqCst) > 0 {
            let _guard = s.lock.lock().unwrap_or_else(|p| p.into_inner());
            s.wake.notify_all();
        }
        s.work(epoch);
        while s.done.load(Acquire) < tasks {
            std::hint::spin_loop();
        }
        if s.panicked.swap(false, SeqCst) {
            panic!("a levit worker thread panicked while running a kernel");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn every_task_runs_exactly_once_across_many_jobs() {
        let pool = SpinPool::new(3).unwrap();
        for tasks in [1usize, 2, 3, 7, 64] {
            for _ in 0..200 {
                let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
                pool.run(tasks, &|i| {
                    hits[i].fetch_add(1, Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Relaxed) == 1));
            }
        }
    }

    #[test]
    fn parked_workers_wake_up() {
        let pool = SpinPool::new(2).unwrap();
        std::thread::sleep(Duration::from_millis(5)); // let the worker park
        let hits = AtomicUsize::new(0);
        pool.run(16, &|_| {
            hits.fetch_add(1, Relaxed);
        });
        assert_eq!(hits.load(Relaxed), 16);
    }

    #[test]
    fn a_panicking_task_is_reported_not_hung() {
        let pool = SpinPool::new(2).unwrap();
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
            pool.run(8, &|i| assert!(i != 5, "task 5 fails"));
        }));
        assert!(r.is_err());
        // The pool still works afterwards.
        let hits = AtomicUsize::new(0);
        pool.run(4, &|_| {
            hits.fetch_add(1, Relaxed);
        });
        assert_eq!(hits.load(Relaxed), 4);
    }
}
